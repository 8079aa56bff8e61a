#!/usr/bin/env bash
# The HTML docs site (make docs) into .cache/docs-site/build/html, or into the directory given: antsibull-docs renders the modules, the
# role's entry points, the filter, the callback and docs/docsite/ from the collection as ansible-doc sees it
# (through ansible.cfg's collections_path), then Sphinx builds it, every warning an error.
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
site="$(realpath -m "${1:-$FLEETDB_ROOT/.cache/docs-site}")"
rm -rf "$site" && mkdir -p "$site"
export ANSIBLE_CONFIG="$FLEETDB_ROOT/ansible.cfg"
"$FLEETDB_ROOT/.venv/bin/antsibull-docs" sphinx-init --use-current --fail-on-error --dest-dir "$site" \
  --project fleetdb.online_upgrade --copyright "fleetdb contributors" \
  --title "fleetdb.online_upgrade" --html-short-title "fleetdb.online_upgrade" \
  fleetdb.online_upgrade >/dev/null
sed -i 's/^Welcome to my Ansible collection documentation$/fleetdb.online_upgrade documentation/' \
  "$site/rst/index.rst"
# The build runs offline: no intersphinx inventories, and the few labels antsibull-docs points at in Ansible's
# own documentation link there directly.
cat >> "$site/conf.py" <<'PY'

intersphinx_mapping = {}
ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'
ANSIBLE_LABELS = {
    'common_return_values': 'reference_appendices/common_return_values.html',
    'ansible_configuration_settings': 'reference_appendices/config.html',
    'callback_plugins': 'plugins/callback.html',
}


def link_to_ansible_docs(app, env, node, contnode):
    from docutils import nodes
    target = node.get('reftarget', '')
    page = ANSIBLE_LABELS.get(target)
    if target.startswith('ansible_collections.ansible.builtin.'):
        page = 'collections/ansible/builtin/%s.html' % target.rsplit('.', 1)[1]
    if page is None:
        return None
    link = nodes.reference('', '', internal=False, refuri=ANSIBLE_DOCS + page)
    link.append(contnode)
    return link


def setup(app):
    app.connect('missing-reference', link_to_ansible_docs)
PY
cd "$site"
PATH="$FLEETDB_ROOT/.venv/bin:$PATH" ./build.sh
log "the docs site: $site/build/html/index.html"
