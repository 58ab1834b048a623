"""The state index leaves out done tasks (store/stateindex.py; issue 14, goal 5: the store of a
10^7-task sweep <= 1.5 GB): after a run it holds only the tasks not done (and the first points'
and those off the schedule), every view's counts still agree with the table through runs,
retries, --rerun, cancel and kill -9, the queries that look tasks up by state still use it,
and a store made by the earlier schema is migrated once, safely under kill -9."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pushbutton.store import stateindex
from pushbutton.store.database import Store

from .conftest import pb, write
from .test_status_counts import SLOW, _agree, _table

N_OK = 700  # with as many failing: 1,400 tasks, past the index's first HEAD points
SPEC = """
name = "cnt"
function = "tasks:faulty"
[space]
grid = {{ i = {{ range = [0, {n}] }}, kind = ["ok", "raise"] }}
[run]
workers = 2
"""


def _db(project):
    return sqlite3.connect(project / ".pushbutton" / "state.sqlite")


def _index_holds_only_what_it_should(project, exp="cnt"):
    """The rows the state index holds are exactly the tasks not done, those off the schedule
    and the done ones among the first HEAD points; returns how many done tasks it left out."""
    db = _db(project)
    try:
        eid = db.execute("SELECT id FROM experiments WHERE name=?", (exp,)).fetchone()[0]
        held = {r for (r,) in db.execute(
            "SELECT rowid FROM tasks INDEXED BY tasks_state WHERE exp=? AND "
            f"{stateindex.IN_INDEX}", (eid,))}
        rows = db.execute("SELECT rowid, state, idx FROM tasks NOT INDEXED WHERE exp=?",
                          (eid,)).fetchall()
        want = {r for r, s, i in rows if s != "done" or i is None or i < stateindex.HEAD}
        assert held == want, (len(held), len(want))
        # and the index's own entries (not only what a query through it returns)
        (entries,) = db.execute("SELECT count(*) FROM tasks INDEXED BY tasks_state WHERE "
                                f"exp=? AND {stateindex.IN_INDEX}", (eid,)).fetchone()
        assert entries == len(want)
        assert stateindex.is_partial(db)
        return sum(1 for _, s, i in rows if s == "done" and i is not None
                   and i >= stateindex.HEAD)
    finally:
        db.close()


def test_state_index_holds_only_tasks_not_done_and_counts_agree(project):
    write(project / "experiment.toml", SPEC.format(n=N_OK))
    pb("run", "experiment.toml", "--quiet", check=False)
    assert _agree(project) == {"done": N_OK, "failed": N_OK}
    left_out = _index_holds_only_what_it_should(project)
    assert left_out > 0  # done tasks past the first HEAD points are not in it
    pb("retry", "cnt", "--no-run")
    assert _agree(project) == {"done": N_OK, "pending": N_OK}
    _index_holds_only_what_it_should(project)
    pb("run", "experiment.toml", "--quiet", check=False)
    assert _agree(project) == {"done": N_OK, "failed": N_OK}
    pb("run", "experiment.toml", "--quiet", "--rerun", check=False)
    assert _agree(project) == {"done": N_OK, "failed": N_OK}
    assert _index_holds_only_what_it_should(project) == left_out
    # a bigger space: the new tasks pending, then cancelled; a smaller one: tasks off the
    # schedule (idx NULL), done ones among them, stay countable
    write(project / "experiment.toml", SPEC.format(n=N_OK + 20))
    from pushbutton.experiment import load
    load(project / "experiment.toml").register(yes=True)
    assert _agree(project) == {"done": N_OK, "failed": N_OK, "pending": 40}
    pb("cancel", "cnt")
    assert _agree(project) == {"done": N_OK, "failed": N_OK, "cancelled": 40}
    _index_holds_only_what_it_should(project)
    write(project / "experiment.toml", SPEC.format(n=N_OK - 100))
    load(project / "experiment.toml").register(yes=True)
    assert _agree(project) == {"done": N_OK - 100, "failed": N_OK - 100}
    _index_holds_only_what_it_should(project)
    # the first rows of `pb results --limit` come through the index and match the table's
    head = pb("results", "cnt", "--limit", "5", "--format", "json").stdout.splitlines()
    whole = pb("results", "cnt", "--format", "json").stdout.splitlines()[:5]
    assert head == whole


def test_counts_agree_after_kill9_with_done_tasks_out_of_the_index(project):
    n = stateindex.HEAD + 300
    write(project / "experiment.toml", SLOW.format(n=n, t=0.002))
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                          "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline and p.poll() is None:
        try:
            if _table(project)[0].get("done", 0) >= stateindex.HEAD + 20:
                break
        except (sqlite3.OperationalError, TypeError):  # not registered yet
            pass
        time.sleep(0.02)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    real = _agree(project)
    assert real.get("done", 0) >= stateindex.HEAD + 20 and sum(real.values()) == n, real
    _index_holds_only_what_it_should(project)
    pb("run", "experiment.toml", "--quiet")  # the next driver requeues and finishes
    assert _agree(project) == {"done": n}
    assert _index_holds_only_what_it_should(project) == n - stateindex.HEAD


def test_queries_by_state_use_the_state_index(project, monkeypatch):
    """Every statement over the task table that a run, its retry, results, sql and status
    make (traced): one that picks an experiment's tasks by a state other than done goes
    through the state index, and none walks the whole (exp, id) index to read rows (one random
    lookup per task, in id order: what the state index did before for `exp=?` alone)."""
    write(project / "experiment.toml", SPEC.format(n=30))
    seen = []
    real = sqlite3.connect

    def connect(*a, **kw):
        con = real(*a, **kw)
        con.set_trace_callback(seen.append)
        return con
    monkeypatch.setattr(sqlite3, "connect", connect)
    from pushbutton.execution import overview
    from pushbutton.experiment import load
    exp = load(project / "experiment.toml")
    exp.run(yes=True)
    exp.retry(yes=True)  # the failed ones again (they fail again)
    exp.cancel()
    exp.results()
    exp.sql("SELECT count(*) FROM results")
    store = Store(project, create=False)
    overview.status(store, store.experiment("cnt"), "cnt")
    store.close()
    monkeypatch.setattr(sqlite3, "connect", real)
    db = _db(project)
    checked = by_state = 0
    for q in set(seen):
        low = " ".join(q.lower().split())
        if " tasks" not in low or not low.startswith(("select", "update", "delete")):
            continue
        try:
            plan = " | ".join(r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + q))
        except sqlite3.Error:
            continue  # (a statement with parameters left unbound, or of a temporary table)
        checked += 1
        assert "USING INDEX tasks_id (exp=?)" not in plan, (q, plan)
        where = low.split(" where ", 1)[-1].replace(" ", "")
        if "exp=" in where and "rowid" not in where and "idin" not in where and \
                any(f"state={s}" in where or f"state_in({s}" in where.replace("in(", "_in(")
                    for s in ("'pending'", "'running'", "'failed'", "'cancelled'")):
            by_state += 1
            assert "tasks_state" in plan, (q, plan)
    db.close()
    assert checked > 10 and by_state >= 2, (checked, by_state)


def _old_schema(project):
    """The store as the earlier schema made it: a full state index, no room column, no
    auto_vacuum."""
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite", isolation_level=None)
    db.execute("DROP INDEX tasks_state")
    db.execute("CREATE INDEX tasks_state ON tasks(exp, state, idx)")
    db.execute("ALTER TABLE tasks DROP COLUMN room")
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("VACUUM")
    assert not stateindex.is_partial(db)
    db.close()


def test_a_store_of_the_earlier_schema_is_migrated_once_and_safely(project):
    write(project / "experiment.toml", SPEC.format(n=N_OK))
    pb("run", "experiment.toml", "--quiet", check=False)
    _old_schema(project)
    # readers that cannot migrate (the earlier index) count the same
    db = _db(project)
    assert stateindex.index_counts(db, 1) == {"done": N_OK, "failed": N_OK}
    db.close()
    # killed in the middle of the migration: the earlier index is intact, nothing half-done
    code = "from pushbutton.store.database import Store; Store('.', create=False)"
    r = subprocess.run([sys.executable, "-c", code], cwd=project,
                       env=dict(os.environ, PB_TEST_DIE_IN_MIGRATION="1"))
    assert r.returncode == -signal.SIGKILL
    db = _db(project)
    assert not stateindex.is_partial(db)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    # the next open migrates (once: a second open finds nothing to do)
    store = Store(project, create=False)
    assert stateindex.is_partial(store.db)
    assert stateindex.partial_state_index(store.db) is False
    assert "room" in {r[1] for r in store.db.execute("PRAGMA table_info(tasks)")}
    store.close()
    assert _agree(project) == {"done": N_OK, "failed": N_OK}
    _index_holds_only_what_it_should(project)
    pb("retry", "cnt", check=False)  # and it runs on
    assert _agree(project) == {"done": N_OK, "failed": N_OK}
    _index_holds_only_what_it_should(project)
    # its freed pages stay for reuse; `pb clean` (VACUUM) gives it auto_vacuum as a new store
    pb("clean", "cnt", "--yes")
    db = _db(project)
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    db.close()


def test_rows_do_not_grow_and_free_pages_are_released(project):
    """After a run the task table's pages are nearly full (new rows kept room for their
    bundle name) and the file holds no free pages (the state index's, released)."""
    write(project / "experiment.toml", SLOW.format(n=3000, t=0))
    pb("run", "experiment.toml", "--quiet")
    db = _db(project)
    try:
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        try:
            size, unused, n = db.execute("SELECT sum(pgsize), sum(unused), count(*) FROM "
                                         "dbstat WHERE name='tasks'").fetchone()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
        # rows that grew when first bundled left 12.7% of these pages unused here (11.3% at
        # 10^5 tasks of p3_scale.py); with room kept 7.1% (3.5%: the 3 bytes 'running' ->
        # 'done' frees, more of a row this small)
        assert unused / size < 0.09, (unused, size)
        assert db.execute("SELECT count(*) FROM tasks WHERE room IS NOT NULL").fetchone()[0] \
            == 0
    finally:
        db.close()
