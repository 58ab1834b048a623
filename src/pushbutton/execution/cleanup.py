"""`pb clean`: delete an experiment's data, or only its bundles' folders and kept logs.

Deleting 10^7 task rows one by one (with two indexes) took minutes and left a database file of
the same size. When the experiment owns every task of the store, its rows go with SQLite's
truncate optimisation (`DELETE FROM t` without a WHERE frees whole pages); otherwise they are
deleted by experiment. Either way the database is then compacted (VACUUM: a fresh file, swapped
in by SQLite itself, safe against a crash) and its WAL truncated. Each step is reported to
`progress(step, done, total)`.
"""
from __future__ import annotations

import shutil
import sqlite3

from pushbutton.core.errors import PushbuttonError
from pushbutton.store import bundlelogs
from pushbutton.store.database import Store
from pushbutton.store.lock import ExperimentLock

# task_counts: the kept counts by state (store/counts.py) go with the task rows
_TABLES = (("bundles", "exp"), ("runs", "exp"), ("events", "exp"), ("task_counts", "exp"),
           ("experiments", "id"))


def _quiet(step, done=None, total=None):
    pass


def clean(store: Store, eid: int, name: str, bundles_only: bool = False, progress=None) -> int:
    """Returns how many bundles were removed."""
    say = progress or _quiet
    if bundles_only:
        rows = store.db.execute("SELECT id FROM bundles WHERE exp=? AND state IN "
                                "('finished','failed','interrupted','cancelled')",
                                (eid,)).fetchall()
        _remove_bundles(store, [r[0] for r in rows], say)
        return len(rows)
    if ExperimentLock(store, eid, name).held_by_other():
        raise PushbuttonError(f"'{name}' is running; `pb cancel {name}` first")
    db = store.db
    bids = [b for (b,) in db.execute("SELECT id FROM bundles WHERE exp=?", (eid,))]
    alone = db.execute("SELECT 1 FROM tasks WHERE exp != ? LIMIT 1", (eid,)).fetchone() is None
    # files first, rows last: a clean cut short leaves the experiment listed (run it again),
    # never files that a later experiment of the same name or id would take for its own
    _remove_bundles(store, bids, say)
    for sub in ("results", "series", "tasks"):
        say(f"removing {sub}/{name}")
        shutil.rmtree(store.dir / sub / name, ignore_errors=True)
    (n,) = db.execute("SELECT count(*) FROM tasks WHERE exp=?", (eid,)).fetchone()
    say(f"deleting {n:,} task rows")
    with store.tx():
        if alone:  # every task is this experiment's: whole pages go, not row by row
            db.execute("DELETE FROM attempts")
            db.execute("DELETE FROM tasks")
        else:
            db.execute("DELETE FROM attempts WHERE task IN (SELECT rowid FROM tasks "
                       "WHERE exp=?)", (eid,))
            db.execute("DELETE FROM tasks NOT INDEXED WHERE exp=?", (eid,))
        for table, col in _TABLES:
            db.execute(f"DELETE FROM {table} WHERE {col}=?", (eid,))
    say("compacting the state database")
    compact_database(store)
    return len(bids)


def _remove_bundles(store: Store, bids: list[str], say) -> None:
    total = len(bids)
    for i, bid in enumerate(bids, 1):
        bundlelogs.remove(store.dir, bid)
        if i == total or i % 200 == 0:
            say("removing bundle folders and logs", i, total)


def compact_database(store: Store) -> bool:
    """VACUUM (SQLite writes a fresh file and swaps it in) and truncate the WAL; False when
    another process kept it from running (the file stays as it is, correct but larger)."""
    try:
        # (a store made before incremental auto_vacuum gets it with the fresh file: its later
        # runs hand freed pages back too, store/database.Store.release)
        store.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        store.db.execute("VACUUM")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True
    except sqlite3.OperationalError:
        return False
