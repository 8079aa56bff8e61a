"""Running one Molecule scenario whole (create, converge, idempotence, verify, destroy), for the test files."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")


def run_scenario(scenario):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    proc = subprocess.run([os.path.join(BIN, "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "Found installed collection" not in line]
    assert proc.returncode == 0, "\n".join(lines[-150:])
