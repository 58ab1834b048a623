"""The state index `tasks_state` holds the tasks a scheduler or a reader looks for by state:
every task that is not done, every task off the schedule (idx NULL) and the done tasks among
the first HEAD points of the space (what `pb results --limit N` shows first). After a run
nearly every task is done, so the index is a few pages instead of a fifth of the database.

SQLite uses a partial index only for a query whose WHERE clause contains one of the index's
OR-terms word for word: a query over states other than done carries `AND state != 'done'`
(NOT_DONE), one over the first done tasks `AND idx < HEAD` (IN_HEAD).

Counts through the indexes (`index_counts`, what the trust check compares with the table):
each state but done from this index, done as the experiment's tasks through the (exp, id)
index less those this index holds off the schedule or not done — two structures independent
of the table, so a damaged page of the table, of either index or of the kept counts shows.
"""
from __future__ import annotations

import os

HEAD = 1000  # done tasks with idx below this stay in the index (the first rows of a table)
NOT_DONE = "state != 'done'"
IN_HEAD = f"idx < {HEAD}"
WHERE = f"{NOT_DONE} OR idx IS NULL OR {IN_HEAD}"
STATE_INDEX = f"CREATE INDEX IF NOT EXISTS tasks_state ON tasks(exp, state, idx) WHERE {WHERE}"
# a term that makes any query over the experiment's tasks able to use the index
IN_INDEX = f"({WHERE})"


def is_partial(db) -> bool:
    row = db.execute("SELECT sql FROM sqlite_master WHERE type='index' AND "
                     "name='tasks_state'").fetchone()
    return row is not None and " WHERE " in (row[0] or "").upper()


def partial_state_index(db) -> bool:
    """A store made before: its full state index replaced by the partial one, in one
    transaction (a kill -9 leaves the old index or the new one; the new one is built by one
    pass over the table). True if it was replaced here."""
    if is_partial(db):
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        if is_partial(db):  # another process did it meanwhile
            db.execute("ROLLBACK")
            return False
        db.execute("DROP INDEX IF EXISTS tasks_state")
        db.execute(STATE_INDEX)
        if os.environ.get("PB_TEST_DIE_IN_MIGRATION"):  # fault injection, tests only: kill -9
            os.kill(os.getpid(), 9)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return True


def index_counts(db, exp: int) -> dict:
    """The experiment's scheduled tasks (idx not NULL) by state, through the indexes alone
    (inside the caller's snapshot): the states but done from tasks_state, done as all the
    experiment's tasks (tasks_id) less those tasks_state holds off the schedule or not done.
    Exact with the full index of an earlier version too (read-only stores keep it)."""
    c: dict = {}
    off = 0
    for state, unscheduled, n in db.execute(
            f"SELECT state, idx IS NULL, count(*) FROM tasks INDEXED BY tasks_state WHERE "
            f"exp=? AND {IN_INDEX} GROUP BY state, idx IS NULL", (exp,)):
        if unscheduled:
            off += n
        elif state != "done":
            c[state] = n
    (every,) = db.execute("SELECT count(*) FROM tasks INDEXED BY tasks_id WHERE exp=?",
                          (exp,)).fetchone()
    done = every - off - sum(c.values())
    if done:
        c["done"] = done
    return c


def room(db, exp: int) -> int:
    """Bytes a new pending row keeps for what its first bundling writes into it (the bundle
    name, the run number): a row that grows on a full page splits the page, and the rows of
    a whole sweep growing at once left a tenth of the task table's pages unused. The name is
    `e<exp>-r<run>-NNNNNN` (SLURM's `-sNNNNNN`: one byte more, which a page's slack absorbs;
    two bytes more do not), the run the next one (registration comes before it); a guess one
    byte too big costs a byte per task (measured: exact 3.5 B/task unused, 2 over 5.6, 2 short
    11.3)."""
    (last,) = db.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()
    run = last + 1
    run_bytes = 0 if run <= 1 else 1 if run < 128 else 2 if run < 32768 else 3
    # (the state then goes from 'pending' to 'running': the same length)
    return len(f"e{exp}-r{run}-000000") + run_bytes
