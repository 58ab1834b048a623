"""The local backend's workers run below the driver's priority (backends/local.py: the driver
hands out bundles and ingests, the run's critical path); PB_WORKER_NICE sets how far, and a
bad value is a clear error before anything runs."""
import json
import os
import sys

from .conftest import pb, write

SPEC = """
name = "nice"
function = "nicetasks:f"
[space]
grid = { i = { range = [0, 4] } }
[run]
workers = 2
"""
CMD_SPEC = """
name = "nicecmd"
command = ["{py}", "nicecmd.py"]
[space]
grid = {{ i = {{ range = [0, 2] }} }}
"""


def _setup(project):
    write(project / "nicetasks.py", "import os\ndef f(i):\n    return {'niceness': os.nice(0)}\n")
    write(project / "nicecmd.py", "import json, os\nprint(json.dumps({'niceness': os.nice(0)}))\n")
    write(project / "experiment.toml", SPEC)
    write(project / "cmd.toml", CMD_SPEC.format(py=sys.executable))


def _niceness(exp):
    rows = pb("results", exp, "--format", "json").stdout.split()
    return {json.loads(r)["niceness"] for r in rows}


def test_workers_run_below_the_drivers_priority(project):
    _setup(project)
    base = os.nice(0)  # the driver inherits this
    pb("run", "experiment.toml", "--quiet")
    assert _niceness("nice") == {min(19, base + 10)}
    pb("run", "cmd.toml", "--quiet")  # a command task inherits its worker's
    assert _niceness("nicecmd") == {min(19, base + 10)}
    pb("run", "experiment.toml", "--rerun", "--quiet", env={"PB_WORKER_NICE": "0"})
    assert _niceness("nice") == {base}


def test_a_bad_worker_niceness_is_a_clear_error(project):
    _setup(project)
    for bad in ("high", "-5", "40"):
        r = pb("run", "experiment.toml", check=False, env={"PB_WORKER_NICE": bad})
        assert r.returncode != 0
        text = r.stdout + r.stderr
        assert "PB_WORKER_NICE" in text and "0 to 19" in text and "fix:" in text, text
        assert "Traceback" not in text
    st = json.loads(pb("status", "nice", "--json").stdout)
    assert st["counts"]["done"] == 0 and st["last_run"] is None  # nothing ran
