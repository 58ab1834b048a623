"""A second `pb run` of a running experiment changes nothing before it says so (issue 9, item
14): the experiment's lock is taken before the spec or the schedule is written."""
import json
import sqlite3
import subprocess
import sys
import time

from .conftest import pb, write

SPEC = """
name = "locked"
function = "gate_tasks:wait"
[space]
grid = {{ i = {{ range = [0, {n}] }}, gate = ["{gate}"] }}
[run]
workers = 2
"""
# the first run's tasks wait for the gate file, so that run holds the lock for as long as the
# test needs it (however slow the machine), then ends at once
GATE_TASKS = """
import time
from pathlib import Path


def wait(i, gate, **_):
    deadline = time.time() + 120
    while not Path(gate).exists() and time.time() < deadline:
        time.sleep(0.02)
    return {"i2": i * i}
"""


def _stored(project):
    con = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        spec, key, n = con.execute("SELECT spec, space_key, n_tasks FROM experiments").fetchone()
        sched = con.execute("SELECT id, idx FROM tasks ORDER BY rowid").fetchall()
        return json.loads(spec), key, n, sched
    finally:
        con.close()


def test_second_run_with_an_edited_spec_changes_nothing(project):
    gate = project / "gate"
    write(project / "gate_tasks.py", GATE_TASKS)
    write(project / "e.toml", SPEC.format(n=40, gate=gate))
    first = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "e.toml", "--quiet"],
                             cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # until the first driver holds the lock
            r = pb("status", "--json", check=False)
            # ... and has registered the whole space (registration streams while it runs)
            st = json.loads(r.stdout) if r.returncode == 0 else {}
            if st.get("active") and st.get("total") == 40 and not st.get("registering"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the first run never started")
        before = _stored(project)
        write(project / "e.toml", SPEC.format(n=7, gate=gate))  # a different grid
        r = pb("run", "e.toml", check=False)
        assert r.returncode == 2 and "already being run" in r.stderr, r.stderr
        assert _stored(project) == before  # spec, space key, n_tasks and schedule untouched
        r = pb("run", "e.toml", "--detach", check=False)
        assert r.returncode == 2 and "already being run" in r.stderr, r.stderr
        assert _stored(project) == before
        gate.touch()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert "locked: 40 done, 0 failed, 0 not run" in out
    spec, _, n, sched = _stored(project)
    assert n == 40 and spec["space"]["grid"]["i"] == {"range": [0, 40]}
    assert len(sched) == 40 and all(idx is not None for _, idx in sched)
