"""Task counts by state, kept in the small table `task_counts` so `pb status` reads a handful of
rows instead of counting 10^7 task rows.

Every write that changes task states (or takes tasks in or out of the schedule) keeps the
counts in the same transaction: by the difference of the touched rowid ranges' states before
and after the change (`counted(db, exp, ranges=...)`: two range scans of rows the update reads
anyway), or, for a statement over a whole experiment, by counting it again (`counted(db, exp)`,
`recount`). No trigger: one per task row tripled the cost of the run's state updates. The
ingest of successes (`moved`) needs no scan at all when every row it marks done was running:
its UPDATE changes only those rows and the number it changed is the move.
`verified` is what a reader trusts: the counts sum to the experiment's registered tasks, and
every small count agrees with the indexes (store/stateindex.py; integrity.check_state falls back
to counting the table when they do not).
"""
from __future__ import annotations

import contextlib

from pushbutton.store import stateindex

TABLE = ("CREATE TABLE IF NOT EXISTS task_counts (exp INTEGER NOT NULL, state TEXT NOT NULL, "
         "n INTEGER NOT NULL, PRIMARY KEY (exp, state)) WITHOUT ROWID")
VERIFY_MAX = 100_000  # counts up to this size are checked against the index on every read
# a done count up to VERIFY_MAX is checked (through the (exp, id) index, one pass over the
# experiment's entries) in experiments of up to this many tasks
DONE_CHECK_MAX = 1_000_000
_RANGE = ("SELECT state, count(*) FROM tasks NOT INDEXED WHERE rowid BETWEEN ? AND ? AND exp=? AND "
          "idx IS NOT NULL GROUP BY state")


def have_table(db) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name='task_counts'").fetchone() \
        is not None


def add_table(db) -> None:
    """A store made before the table existed: make it and count every experiment once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if not have_table(db):
            db.execute(TABLE)
            for (exp,) in db.execute("SELECT id FROM experiments").fetchall():
                recount(db, exp)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def recount(db, exp: int) -> dict:
    """Count the experiment's scheduled tasks by state (through the indexes) and keep that;
    inside the caller's transaction."""
    c = stateindex.index_counts(db, exp)
    db.execute("DELETE FROM task_counts WHERE exp=?", (exp,))
    db.executemany("INSERT INTO task_counts(exp, state, n) VALUES (?,?,?)",
                   ((exp, s, n) for s, n in c.items()))
    return c


def ranges_of(rowids) -> list[tuple[int, int]]:
    """Consecutive runs of integers: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]."""
    out = []
    ids = sorted(rowids)
    if not ids:
        return out
    start = prev = ids[0]
    for r in ids[1:]:
        if r != prev + 1:
            out.append((start, prev))
            start = r
        prev = r
    out.append((start, prev))
    return out


def _states(db, exp: int, ranges) -> dict:
    c: dict = {}
    for a, z in ranges:
        for s, n in db.execute(_RANGE, (a, z, exp)):
            c[s] = c.get(s, 0) + n
    return c


@contextlib.contextmanager
def counted(db, exp: int, ranges=None, rowids=None, becomes: str | None = None):
    """Around a write (inside its transaction) that changes the states of the tasks in rowid
    `ranges` [(first, last)] or `rowids`, or of any of the experiment's tasks (neither given):
    the kept counts move with it. `becomes`: the write sets this state on every row of the
    ranges (an UPDATE by the ranges themselves), so the rows counted before are all in it after,
    and the second scan is left out (it was a third of the commit of an ingest)."""
    if rowids is not None:
        ranges = ranges_of(rowids)
    if ranges is None or not have_table(db):
        yield
        if have_table(db):
            recount(db, exp)
        return
    ranges = list(ranges)
    before = _states(db, exp, ranges)
    yield
    after = {becomes: sum(before.values())} if becomes else _states(db, exp, ranges)
    delta = {s: after.get(s, 0) - before.get(s, 0) for s in set(before) | set(after)}
    shift(db, exp, delta)


def moved(db, exp: int, spans, sql: str, rows, frm: str, to: str) -> None:
    """Run `sql`, an UPDATE that sets state `to` on the rows of rowid ranges (`rows`: its
    parameters, one tuple per range ending in (first, last); `spans`: those ranges merged), and
    move the counts with it (inside the caller's transaction). First only the experiment's
    scheduled rows in state `frm` are changed, so the number changed is the whole move when it
    is every row of the spans (the usual ingest: each task of a bundle was running) and no row
    is read twice. Otherwise the rest (a task requeued or done meanwhile, one off the schedule)
    is counted by state and updated too, as `counted` would."""
    if not have_table(db):
        db.executemany(sql, rows)
        return
    cur = db.executemany(only_in(sql), (r + (frm, exp) for r in rows))
    n = cur.rowcount
    delta = {frm: -n, to: n}
    if n < sum(z - a + 1 for a, z in spans):
        rest = {s: k for s, k in _states(db, exp, spans).items() if s != to}
        db.executemany(sql, rows)
        for s, k in rest.items():
            delta[s] = delta.get(s, 0) - k
            delta[to] += k
    shift(db, exp, delta)


def only_in(sql: str) -> str:
    """`sql` (ending in its WHERE on the rowid) for the experiment's scheduled rows in one state
    (two more parameters: the state, the experiment). The unary + keeps SQLite on the rowid
    range: with a plain `exp=?` it walks the experiment's whole (exp, id) index instead."""
    return f"{sql} AND +state=? AND +exp=? AND idx IS NOT NULL"


def shift(db, exp: int, delta: dict) -> None:
    rows = [(exp, s, d, d) for s, d in delta.items() if d]
    if rows:
        db.executemany("INSERT INTO task_counts(exp, state, n) VALUES (?,?,?) ON CONFLICT "
                       "(exp, state) DO UPDATE SET n = n + ?", rows)


def verified(db, exp: int, states) -> dict | None:
    """The kept counts if they hold up, read in one snapshot: they sum to the registered tasks,
    none is negative, and each count up to VERIFY_MAX equals what the state index says (a
    damaged page of either would show here); None if not, or where the store has no such table
    (made by an earlier version and opened read-only): the caller counts the table. `states`:
    every task state (those with no kept row are checked to be none)."""
    if not have_table(db):
        return None
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        c = dict(db.execute("SELECT state, n FROM task_counts WHERE exp=?", (exp,)).fetchall())
        row = db.execute("SELECT n_tasks FROM experiments WHERE id=?", (exp,)).fetchone()
        if row is None or any(v < 0 for v in c.values()) or sum(c.values()) != row[0]:
            return None
        for s in set(states) | set(c):
            k = c.get(s, 0)
            if k > VERIFY_MAX or s == "done":
                continue
            # LIMIT: a state with far more tasks than kept stops early (and differs)
            m = db.execute("SELECT count(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_state "
                           f"WHERE exp=? AND state=? AND idx IS NOT NULL AND "
                           f"{stateindex.NOT_DONE} LIMIT ?)", (exp, s, k + 1)).fetchone()[0]
            if m != k:
                return None
        # done tasks are not in the state index (store/stateindex.py): a small done count is
        # checked through both indexes where the (exp, id) one is cheap to count
        if c.get("done", 0) <= VERIFY_MAX and row[0] <= DONE_CHECK_MAX and \
                stateindex.index_counts(db, exp).get("done", 0) != c.get("done", 0):
            return None
        return c
    finally:
        if own:
            db.execute("COMMIT")
