"""Runs never stay 'running' without a driver: kill -9, cancel counts, watch after --detach."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from .conftest import pb, write

SLOW = """
name = "{name}"
function = "tasks:slow"
[space]
grid = {{ i = {{ range = [0, {n}] }}, t = [{t}] }}
[run]
workers = 2
"""


def _db(project):
    return sqlite3.connect(project / ".pushbutton" / "state.sqlite")


def _wait_for(cond, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _n_done(project):
    try:
        return _db(project).execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill9_driver_status_and_history_say_interrupted(project):
    write(project / "k.toml", SLOW.format(name="killed", n=40, t=0.2))
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "k.toml", "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    _wait_for(lambda: _n_done(project) >= 2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    st = pb("status", "killed")
    assert "[interrupted]" in st.stdout and "[running]" not in st.stdout, st.stdout
    assert "pb run" in st.stdout  # says how to go on
    assert json.loads(pb("status", "killed", "--json").stdout)["last_run_status"] == \
        "interrupted"
    hist = pb("history", "killed").stdout
    assert "interrupted" in hist and "running" not in hist, hist
    # the store itself still says 'running' until the next driver records it
    assert _db(project).execute("SELECT status FROM runs").fetchall() == [("running",)]
    pb("run", "k.toml", "--quiet")
    assert _db(project).execute("SELECT status FROM runs ORDER BY id").fetchall() == \
        [("interrupted",), ("finished",)]
    hist = pb("history", "killed").stdout.splitlines()[1:]  # (under its header)
    assert "interrupted" in hist[0] and "finished" in hist[1], hist


def test_cancel_reports_the_tasks_it_cancelled(project):
    write(project / "c.toml", SLOW.format(name="cancelme", n=60, t=0.2))
    pb("run", "c.toml", "--detach")
    _wait_for(lambda: _n_done(project) >= 2)
    r = pb("cancel", "cancelme")
    db = _db(project)
    n_cancelled = db.execute("SELECT count(*) FROM tasks WHERE state='cancelled'").fetchone()[0]
    n_done = db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0]
    assert n_cancelled > 0 and n_cancelled + n_done == 60
    assert f"cancelme: {n_cancelled} tasks cancelled" in r.stdout, (r.stdout, n_cancelled)
    assert db.execute("SELECT status FROM runs").fetchall() == [("cancelled",)]
    assert "[cancelled]" in pb("status", "cancelme").stdout


def test_watch_after_detached_rerun_waits_for_the_new_run(project):
    """The counts of the finished first run must not end the watch of the rerun at once."""
    write(project / "w.toml", SLOW.format(name="rewatched", n=30, t=0.05))
    pb("run", "w.toml", "--quiet")
    pb("run", "w.toml", "--rerun", "--detach")
    r = pb("watch", "rewatched", "--interval", "0.1", timeout=120)
    assert "30 tasks, 100.0% finished" in r.stdout, r.stdout
    db = _db(project)
    assert db.execute("SELECT id, status FROM runs ORDER BY id").fetchall() == \
        [(1, "finished"), (2, "finished")]
    assert db.execute("SELECT count(*) FROM tasks WHERE run=2 AND state='done'").fetchone()[0] \
        == 30
