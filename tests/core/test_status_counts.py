"""`pb status` reads kept counts (store/counts.py) instead of counting every task row (issue 14,
goal 6): the counts agree with the task table and across every view after runs, retries,
--rerun, cancel and a kill -9; at scale status trusts them only when they verify."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pushbutton.execution import overview
from pushbutton.store import integrity
from pushbutton.store.database import STATES, Store

from .conftest import pb, write

FAULTY = """
name = "cnt"
function = "tasks:faulty"
[space]
grid = {{ kind = ["ok", "raise", "exit"], i = {{ range = [0, {n}] }} }}
[run]
workers = 2
"""
SLOW = """
name = "cnt"
function = "tasks:slow"
[space]
grid = {{ i = {{ range = [0, {n}] }}, t = [{t}] }}
[run]
workers = 2
"""


def _table(project, exp="cnt"):
    """Counts by state counted from the task table itself, and the kept ones."""
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        eid = db.execute("SELECT id FROM experiments WHERE name=?", (exp,)).fetchone()[0]
        real = dict(db.execute("SELECT state, count(*) FROM tasks NOT INDEXED WHERE exp=? AND "
                               "idx IS NOT NULL GROUP BY state", (eid,)).fetchall())
        kept = {s: n for s, n in db.execute("SELECT state, n FROM task_counts WHERE exp=?",
                                            (eid,)) if n}
        return real, kept
    finally:
        db.close()


def _agree(project, exp="cnt"):
    """Every view says the same counts as the table: the kept table, pb status (at scale too),
    pb results, pb sql and the report's counts."""
    real, kept = _table(project, exp)
    assert kept == real, (kept, real)
    st = json.loads(pb("status", exp, "--json").stdout)
    assert {k: v for k, v in st["counts"].items() if v} == real, (st["counts"], real)
    assert st["total"] == sum(real.values())
    store = Store(project, create=False)
    try:
        eid = store.experiment(exp)
        old = integrity.FULL_CHECK_MAX
        integrity.FULL_CHECK_MAX = 0  # the path of an experiment of 10^7 tasks
        try:
            big = overview.status(store, eid, exp)["counts"]
        finally:
            integrity.FULL_CHECK_MAX = old
        assert {k: v for k, v in big.items() if v} == real
    finally:
        store.close()
    rows = json.loads("[" + ",".join(pb("results", exp, "--format", "json").stdout.splitlines())
                      + "]") if real else []
    by = {}
    for r in rows:
        by[r["pb_status"]] = by.get(r["pb_status"], 0) + 1
    assert by == real, (by, real)
    q = pb("sql", "SELECT pb_status, count(*) AS n FROM results GROUP BY pb_status",
           "-e", exp, "--format", "json").stdout.splitlines()
    assert {json.loads(x)["pb_status"]: json.loads(x)["n"] for x in q} == real
    return real


def test_counts_agree_after_runs_retries_rerun_and_cancel(project):
    write(project / "experiment.toml", FAULTY.format(n=6))
    pb("run", "experiment.toml", "--quiet", check=False)
    assert _agree(project) == {"done": 6, "failed": 12}
    pb("retry", "cnt", "--no-run")  # the failed ones back to pending
    assert _agree(project) == {"done": 6, "pending": 12}
    pb("run", "experiment.toml", "--quiet", check=False)
    assert _agree(project) == {"done": 6, "failed": 12}
    pb("retry", "cnt", check=False)  # and run again (they fail again)
    assert _agree(project) == {"done": 6, "failed": 12}
    pb("run", "experiment.toml", "--quiet", "--rerun", check=False)
    assert _agree(project) == {"done": 6, "failed": 12}
    # a bigger space: the new tasks are pending, then cancelled
    write(project / "experiment.toml", FAULTY.format(n=9))
    from pushbutton.experiment import load
    load(project / "experiment.toml").register(yes=True)
    assert _agree(project) == {"done": 6, "failed": 12, "pending": 9}
    pb("cancel", "cnt")
    assert _agree(project) == {"done": 6, "failed": 12, "cancelled": 9}


def test_counts_agree_after_kill9_of_a_run_and_its_resume(project):
    write(project / "experiment.toml", SLOW.format(n=40, t=0.1))
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                          "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if _table(project)[0].get("done", 0) >= 4:
                break
        except (sqlite3.OperationalError, TypeError):  # not registered yet
            pass
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    real = _agree(project)
    assert real.get("done", 0) >= 4 and sum(real.values()) == 40, real
    pb("run", "experiment.toml", "--quiet")  # the next driver requeues and finishes
    assert _agree(project) == {"done": 40}


def test_status_at_scale_reads_kept_counts_and_distrusts_bad_ones(project, monkeypatch):
    write(project / "experiment.toml", FAULTY.format(n=5))
    pb("run", "experiment.toml", "--quiet", check=False)
    store = Store(project, create=False)
    eid = store.experiment("cnt")
    monkeypatch.setattr(integrity, "FULL_CHECK_MAX", 0)
    calls = []
    full = integrity._state_counts
    monkeypatch.setattr(integrity, "_state_counts",
                        lambda *a: calls.append(1) or full(*a))
    # the kept counts verify: no count of the whole table (what took 1.9 s at 10^7)
    assert overview.status(store, eid, "cnt")["counts"] == \
        {**dict.fromkeys(STATES, 0), "done": 5, "failed": 10}
    assert calls == []
    # kept counts that do not verify (a damaged page, a write that missed them) are not shown:
    # the table is counted instead, against its index
    for bad in ("UPDATE task_counts SET n = n - 3 WHERE state = 'done'",  # sum off
                "INSERT OR REPLACE INTO task_counts VALUES (1, 'pending', 3)",  # sum off too
                # the sum still right, the small counts disagree with the index
                "UPDATE task_counts SET n = n + (CASE state WHEN 'done' THEN -3 ELSE 3 END) "
                "WHERE state IN ('done', 'failed')"):
        with store.tx():
            store.db.execute(bad)
        assert overview.status(store, eid, "cnt")["counts"] == \
            {**dict.fromkeys(STATES, 0), "done": 5, "failed": 10}, bad
        assert calls, bad
        calls.clear()
        with store.tx():
            store.recount(eid)
    # a table and an index that disagree are still said, at any size
    monkeypatch.setattr(integrity, "_state_counts",
                        lambda *a: ({"done": 5}, {"done": 4}, 15))
    with store.tx():
        store.db.execute("UPDATE task_counts SET n = 0 WHERE state = 'failed'")
    with pytest.raises(integrity.StoreError, match="state.sqlite"):
        overview.status(store, eid, "cnt")
    store.close()


def test_a_store_made_before_the_kept_counts_gets_them(project):
    write(project / "experiment.toml", FAULTY.format(n=5))
    pb("run", "experiment.toml", "--quiet", check=False)
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    db.execute("DROP TABLE task_counts")
    db.commit()
    db.close()
    # read-only (an earlier version's store on a read-only disk): the table is counted
    if os.geteuid() != 0:  # (root can write anyway)
        os.chmod(project / ".pushbutton", 0o555)
        os.chmod(project / ".pushbutton" / "state.sqlite", 0o444)
        try:
            st = json.loads(pb("status", "cnt", "--json").stdout)
            assert (st["counts"]["done"], st["counts"]["failed"]) == (5, 10)
        finally:
            os.chmod(project / ".pushbutton", 0o755)
            os.chmod(project / ".pushbutton" / "state.sqlite", 0o644)
    Store(project, create=False).close()  # a writable open adds and fills the table
    real, kept = _table(project)
    assert kept == real == {"done": 5, "failed": 10}


def test_results_head_reads_only_the_tasks_it_shows(project, monkeypatch):
    """`pb results --limit N` (no --where/--run): the first N tasks' relation alone, the same
    rows the whole table starts with, and still checked (a shown done task's missing row)."""
    from pushbutton.store import views
    write(project / "experiment.toml", FAULTY.format(n=8))
    pb("run", "experiment.toml", "--quiet", check=False)
    store = Store(project, create=False)
    eid = store.experiment("cnt")
    whole = views.results(store, eid, "cnt")
    asked, every = [], []
    real, real_put = views._state, views.H.put_state
    monkeypatch.setattr(views, "_state", lambda s, e, only=None: every.append(only) or
                        real(s, e, only))
    monkeypatch.setattr(views.H, "put_state", lambda con, s, e, only: asked.append(only) or
                        real_put(con, s, e, only))
    for all_tasks in (True, False):
        full = whole if all_tasks else whole[whole["pb_status"] == "done"]
        head = views.results(store, eid, "cnt", all_tasks=all_tasks, limit=5)
        assert every == []  # not every task's state ...
        assert asked[-1] is not None and len(asked[-1]) == 5  # ... the five shown
        assert list(head["pb_task_id"]) == list(full["pb_task_id"][:5])
        assert head.astype(str).values.tolist() == \
            full.head(5)[head.columns].astype(str).values.tolist()
    # a shown done task whose row is gone: an error, not a half table
    first = whole[whole["pb_status"] == "done"]["pb_task_id"].iloc[0]
    with store.tx():
        store.db.execute("UPDATE tasks SET bundle='elsewhere' WHERE id=?", (first,))
    with pytest.raises(integrity.StoreError, match="no result row"):
        views.results(store, eid, "cnt", all_tasks=False, limit=5)
    store.close()


STREAM = """
name = "cnt"
function = "start_tasks:stamp"
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = 2
"""


def _kept_verify(project, exp="cnt"):
    store = Store(project, create=False)
    try:
        return store.kept_counts(store.experiment(exp))
    finally:
        store.close()


def test_counts_right_through_a_streamed_registration_killed_and_resumed(project):
    """The registration's chunks (inserted by its own connection) add their rows as pending in
    their own transactions: after a kill -9 mid-way the kept counts equal the table's and
    verify; the resumed run and a `pb clean` + run again keep them right."""
    write(project / "e.toml", STREAM.format(n=6000))
    small = {"PB_REGISTER_FIRST": "500", "PB_REGISTER_CHUNK": "500"}
    r = pb("run", "e.toml", "--quiet", check=False,
           env=dict(small, PB_TEST_DIE_AFTER_CHUNKS="2", PB_TEST_REGISTER_PAUSE="0.2"))
    assert r.returncode == -9
    real, kept = _table(project)
    assert sum(real.values()) == 2000 and kept == real, (kept, real)
    assert _kept_verify(project) is not None  # trusted as they are: no recount needed
    st = json.loads(pb("status", "--json").stdout)
    assert st["registering"]["points"] == 2000 and st["total"] == 6000
    assert {k: v for k, v in st["counts"].items() if v} == real
    pb("run", "e.toml", "--quiet", env=small)
    assert _agree(project) == {"done": 6000}
    assert _kept_verify(project) == {**dict.fromkeys(STATES, 0), "done": 6000}
    # pb clean deletes the kept counts with the rows (an experiment id may be reused)
    pb("clean", "cnt", "--yes")
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM task_counts").fetchone()[0] == 0
    finally:
        db.close()
    write(project / "e.toml", STREAM.format(n=1500))
    pb("run", "e.toml", "--quiet", env=small)
    assert _agree(project) == {"done": 1500}
