# fleetdb.online_upgrade: every command a contributor or CI needs. See README.md and docs/DEVELOPING.md.
SHELL := /bin/bash
VENV := .venv/bin
PYTEST := $(VENV)/pytest
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup lint sanity unit integration molecule test docs demo bench clean

## setup: Debian packages, Docker engine, virtualenv, PostgreSQL builds, test-host image (cached)
setup:
	@bash scripts/setup-host.sh
	@bash scripts/ensure-docker.sh
	@bash scripts/venv.sh
	@bash scripts/fetch-postgres.sh >/dev/null
	@bash scripts/build-images.sh >/dev/null

## lint: ansible-lint (production profile) and ansible-test sanity
lint: setup
	$(VENV)/ansible-lint --profile production --offline
	bash scripts/sanity.sh

unit: setup
	$(PYTEST) -q tests/unit

integration: setup
	$(PYTEST) -q tests/integration

molecule: setup
	$(PYTEST) -q tests/molecule

## test: everything, ending with pytest's summary
test: setup
	$(PYTEST) -n 2 --dist loadfile --no-loadscope-reorder -p no:cacheprovider -q --durations=20 tests/unit tests/quality tests/integration tests/molecule

## docs: the HTML docs site (modules, role entry points, filter, callback, playbooks) into .cache/docs-site/build/html
docs: setup
	bash scripts/docs.sh

## demo: a PostgreSQL 16 host with live writers, upgraded to 18 on the same port
demo: setup
	bash scripts/demo.sh

## bench: figures (initial copy rate, client-visible write gap, the wave plan of a 500-host fleet) printed and drawn into docs/
bench: setup
	@echo "make bench: 1 and 5 GB, 1,000 and 10,000 tables: expect about 50 minutes on 2 cores (docs/bench.md)"
	$(VENV)/python bench/initial_copy.py --sizes 1000,5000
	$(VENV)/python bench/gap.py --sizes 100,1000,5000 --tables 1000,10000
	$(VENV)/python bench/gap.py --archive --sizes 1000 --tables-size 0 --methods online,pgbouncer,pg_upgrade \
	    --out .cache/bench/gap-archive.json --chart ''
	$(VENV)/python bench/gap.py --sizes 1000 --tables-size 0 --methods online,standby \
	    --out .cache/bench/gap-standby.json --chart ''
	@if [ -f .cache/fleet/summary.json ]; then \
	  echo "wave plan for 500 hosts from the ten-host run (tests/integration/test_fleet_runner.py):"; \
	  $(VENV)/python tools/fleetdb_waves.py plan --summary .cache/fleet/summary.json --fleet 400x20GB,90x200GB,10x1TB \
	    --copy-rate-from .cache/bench/initial_copy.json; \
	else echo "no wave plan: run the ten-host test first (make test, or pytest tests/integration/test_fleet_runner.py)"; fi

clean:
	-docker ps -aq --filter label=fleetdb-test=1 | xargs -r docker rm -f
	rm -rf .cache tests/output
