"""The project store `.pushbutton/` (like .git): SQLite in WAL mode for state, Parquet for results.

Every state change is one transaction, so killing any process at any moment loses nothing and
duplicates nothing. Layout:
    state.sqlite   experiments, runs, tasks, attempts (failed ones; the successful one is the task
                   row itself), bundles, events
    results/<experiment>/*.parquet   one row per successful task attempt (parameters + metrics)
    series/<experiment>/*.parquet    per-step metrics from pushbutton.log
    bundles/<id>/  the worker's file contract (bundle.json, outcomes.jsonl, logs, done.json)
    tasks/<experiment>/<ab>/<task id>[.<gen>]/  per-task folder (checkpoints, artifacts)
    locks/         one lock file per experiment held by its running driver
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import urllib.parse
from pathlib import Path

from pushbutton.core.errors import StoreError
from pushbutton.store import counts as _counts
from pushbutton.store import walbound as _walbound
from pushbutton.store import stateindex as _stateindex

DIRNAME = ".pushbutton"

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, spec TEXT NOT NULL, space_key TEXT,
  n_tasks INTEGER DEFAULT 0, created REAL NOT NULL, reg_key TEXT, reg_next INTEGER,
  reg_total INTEGER);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, exp INTEGER NOT NULL, started REAL NOT NULL, ended REAL,
  message TEXT, target TEXT, code_version TEXT, provenance TEXT, status TEXT, pid INTEGER,
  host TEXT);
CREATE TABLE IF NOT EXISTS tasks (
  rowid INTEGER PRIMARY KEY, exp INTEGER NOT NULL, id TEXT NOT NULL, idx INTEGER,
  params TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER DEFAULT 0,
  bundle TEXT, run INTEGER, error_kind TEXT, error TEXT, t0 REAL, t1 REAL, host TEXT, log TEXT,
  attempt0 INTEGER DEFAULT 0, gen INTEGER DEFAULT 0, node TEXT, cause TEXT, room BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_id ON tasks(exp, id);
""" + _stateindex.STATE_INDEX + """;
CREATE TABLE IF NOT EXISTS attempts (
  task INTEGER NOT NULL, n INTEGER NOT NULL, run INTEGER, bundle TEXT, kind TEXT, error TEXT,
  traceback TEXT, t0 REAL, t1 REAL, host TEXT, log TEXT, node TEXT);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task);
CREATE TABLE IF NOT EXISTS bundles (
  id TEXT PRIMARY KEY, exp INTEGER NOT NULL, run INTEGER, backend TEXT, handle TEXT,
  state TEXT NOT NULL, n_tasks INTEGER, submitted REAL, ended REAL, ingested INTEGER DEFAULT 0,
  series_ingested INTEGER DEFAULT 0, cause TEXT, dir TEXT, target TEXT, job TEXT);
CREATE INDEX IF NOT EXISTS bundles_state ON bundles(exp, state);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, t REAL NOT NULL, exp INTEGER, run INTEGER, kind TEXT, data TEXT);
""" + _counts.TABLE + ";\n"

# task states
PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
STATES = (PENDING, RUNNING, DONE, FAILED, CANCELLED)


def find_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above `start` holding a .pushbutton store."""
    p = Path(start or os.getcwd()).resolve()
    for d in (p, *p.parents):
        if (d / DIRNAME / "state.sqlite").exists():
            return d
    return None


OPENED: list[Path] = []  # state databases this process opened (named in error messages)


def _writable(*paths: Path) -> bool:
    return all(os.access(p, os.W_OK) for p in paths)


class Store:
    def __init__(self, root: str | os.PathLike, create: bool = True, peek: bool = False):
        """peek: read without writing anything, not even SQLite's -wal/-shm files or the store's
        folders (`pb run --dry-run`)."""
        self.root = Path(root).resolve()
        self.dir = self.root / DIRNAME
        path = self.dir / "state.sqlite"
        if not path.exists() and not create:
            raise StoreError(f"no pushbutton project at {self.root}; "
                             "run `pb init` there, or `pb run` with a spec to create one")
        OPENED.append(path)
        # a store on a read-only disk (or someone else's) is opened for reading: status, results,
        # sql, logs and reports work; a command that writes fails with a clear message
        self.readonly = path.exists() and (peek or not _writable(self.dir, path))
        if self.readonly:
            self.db = _open_peek(path) if peek else _open_readonly(path)
            return
        for sub in ("results", "series", "bundles", "tasks", "locks", "snapshots", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=60000")
        if self.db.execute("PRAGMA page_count").fetchone()[0] == 0:
            # a new file: pages freed (the state index's, once its tasks are done) can be handed
            # back to the file system (`release`); set before the first table, as SQLite asks
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        # switching to WAL needs a moment alone with the file, so only the first opener does it
        # (asking again while another process writes would fail with "database is locked");
        # only that is waited for, and not for long: any other error is the user's to see
        deadline = time.monotonic() + 10
        attempt = 0
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or time.monotonic() > deadline:
                    raise
                attempt += 1
                time.sleep(min(0.05 * attempt, 0.5))
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL: safe against process crashes
        _walbound.setup(self.db)
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name='tasks'").fetchone():
            self.db.executescript(SCHEMA)
        else:  # a store made by an earlier version: the columns added since
            _add_columns(self.db)
            if not _counts.have_table(self.db):  # and the kept counts (counted once)
                _counts.add_table(self.db)
            _stateindex.partial_state_index(self.db)  # done tasks out of the state index

    # -- transactions -------------------------------------------------------------------
    def tx(self):
        return _Tx(self.db)

    def checkpointing(self):
        """`with store.checkpointing():` the log is checkpointed by a thread of its own while
        the block writes (a run: store/walbound.Checkpointer)."""
        return _walbound.Checkpointer(self.db, self.dir / "state.sqlite")

    def release(self) -> None:
        """Give the file's free pages back to the file system (the end of a run: the state
        index shrinks as tasks finish; 10^7 tasks: ~50,000 pages, ~50 us each). A store made
        before auto_vacuum keeps them for reuse."""
        if not self.db.execute("PRAGMA auto_vacuum").fetchone()[0]:
            return
        with self.tx():
            # (one page per step, and Python's sqlite3 steps a pragma without columns once)
            for _ in range(self.db.execute("PRAGMA freelist_count").fetchone()[0]):
                self.db.execute("PRAGMA incremental_vacuum")

    def close(self):
        self.db.close()

    def column_or_null(self, table: str, col: str) -> str:
        """`col` for a SELECT on `table`, or NULL where the table lacks it (a read-only store
        made by an earlier version, which cannot be given the columns added since)."""
        have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
        return col if col in have else "NULL"

    # -- experiments --------------------------------------------------------------------
    def experiment(self, name: str, spec: dict | None = None, update: bool = True) -> int | None:
        """The experiment's id; with `spec`, a new one is created, and an existing one's spec
        is replaced unless update=False."""
        row = self.db.execute("SELECT id FROM experiments WHERE name=?", (name,)).fetchone()
        if row:
            if spec is not None and update:
                self.db.execute("UPDATE experiments SET spec=? WHERE id=?",
                                (json.dumps(spec, default=str), row[0]))
            return row[0]
        if spec is None:
            return None
        with self.tx():  # OR IGNORE: another process may have created it a moment ago
            self.db.execute("INSERT OR IGNORE INTO experiments(name, spec, created) "
                            "VALUES (?,?,?)", (name, json.dumps(spec, default=str), time.time()))
        return self.db.execute("SELECT id FROM experiments WHERE name=?", (name,)).fetchone()[0]

    def experiments(self) -> list[dict]:
        # ordered by last activity: the last one is what `pb status` etc. mean by default
        rows = self.db.execute("SELECT e.id, e.name, e.n_tasks, e.created, e.spec FROM "
                               "experiments e LEFT JOIN (SELECT exp, max(started) AS t FROM runs "
                               "GROUP BY exp) r ON r.exp = e.id "
                               "ORDER BY coalesce(r.t, e.created), e.id").fetchall()
        return [dict(id=r[0], name=r[1], n_tasks=r[2], created=r[3], spec=json.loads(r[4]))
                for r in rows]

    def register_space(self, exp: int, rows, space_key: str | None) -> int:
        """rows: iterable of (id, idx, params_json) for the whole current space. One transaction:
        a kill leaves either all of them or none. Tasks of an earlier space that are not in this
        one keep their results but leave the schedule (idx NULL)."""
        db = self.db
        # a big page cache keeps the unique index's B-tree in memory: 10^6 inserts 6 s -> 3.6 s
        db.execute("PRAGMA cache_size=-300000")
        with self.tx():
            fresh = db.execute("SELECT 1 FROM tasks WHERE exp=? LIMIT 1", (exp,)).fetchone() is None
            room = _stateindex.room(db, exp)  # (rows that do not grow when first bundled)
            if fresh:
                db.executemany("INSERT OR IGNORE INTO tasks(exp, id, idx, params, room) "
                               f"VALUES (?,?,?,?,zeroblob({room}))",
                               ((exp, tid, i, p) for tid, i, p in rows))
            else:
                db.execute("UPDATE tasks NOT INDEXED SET idx=NULL WHERE exp=?", (exp,))
                db.executemany("INSERT INTO tasks(exp, id, idx, params, room) VALUES "
                               f"(?,?,?,?,zeroblob({room})) "
                               "ON CONFLICT(exp, id) DO UPDATE SET idx=excluded.idx",
                               ((exp, tid, i, p) for tid, i, p in rows))
            n = sum(_counts.recount(db, exp).values())  # the kept counts (store/counts.py)
            db.execute("UPDATE experiments SET space_key=?, n_tasks=?, reg_key=NULL, "
                       "reg_next=NULL, reg_total=NULL WHERE id=?", (space_key, n, exp))
        db.execute("PRAGMA cache_size=-2000")
        return n

    def space_key(self, exp: int) -> str | None:
        r = self.db.execute("SELECT space_key FROM experiments WHERE id=?", (exp,)).fetchone()
        return r[0] if r else None

    # -- runs ---------------------------------------------------------------------------
    def new_run(self, exp: int, message: str | None, target: str, provenance: dict) -> int:
        with self.tx():
            cur = self.db.execute(
                "INSERT INTO runs(exp, started, message, target, code_version, provenance, "
                "status, pid, host) VALUES (?,?,?,?,?,?,?,?,?)",
                (exp, time.time(), message, target, provenance.get("code_version"),
                 json.dumps(provenance, default=str), "running", os.getpid(),
                 provenance.get("host")))
        return cur.lastrowid

    def run_numbers(self, exp: int) -> dict:
        """{run id: its number among the experiment's runs (1, 2, ...)}."""
        ids = [r for (r,) in self.db.execute("SELECT id FROM runs WHERE exp=? ORDER BY id",
                                             (exp,))]
        return {rid: i for i, rid in enumerate(ids, 1)}

    def end_run(self, run: int, status: str):
        with self.tx():
            self.db.execute("UPDATE runs SET ended=?, status=? WHERE id=?",
                            (time.time(), status, run))

    def runs(self, exp: int | None = None) -> list[dict]:
        """Runs in order, each with its `number` among its experiment's runs (1, 2, ...: what
        `pb history`, the results' pb_run_id and `--run N` say) and its store-wide `id`."""
        q = ("SELECT r.id, e.name, r.started, r.ended, r.message, r.target, r.code_version, "
             "r.status, r.host, r.provenance, (SELECT count(*) FROM runs r2 WHERE "
             "r2.exp = r.exp AND r2.id <= r.id) FROM runs r JOIN experiments e ON e.id=r.exp")
        args = ()
        if exp is not None:
            q += " WHERE r.exp=?"
            args = (exp,)
        keys = ("id", "experiment", "started", "ended", "message", "target", "code_version",
                "status", "host", "provenance", "number")
        out = []
        for r in self.db.execute(q + " ORDER BY r.id", args):
            d = dict(zip(keys, r))
            d["provenance"] = json.loads(d["provenance"] or "{}")
            out.append(d)
        from pushbutton.store.liveness import shown  # a 'running' run whose driver is gone reads `interrupted`
        return shown(self, out)

    # -- counts -------------------------------------------------------------------------
    def counted(self, exp: int, ranges=None, rowids=None, becomes=None):
        """Around a write inside a transaction that changes task states: keeps the counts
        (store/counts.py) right; `ranges`/`rowids`: the only task rows it touches; `becomes`:
        the state it sets on every one of them."""
        return _counts.counted(self.db, exp, ranges=ranges, rowids=rowids, becomes=becomes)

    def moved(self, exp: int, spans, sql: str, rows, frm: str, to: str) -> None:
        """Run the UPDATE `sql` (state `to` on the rowid ranges of `rows`) and move the counts
        with it, reading no row twice where each was in state `frm` (store/counts.py)."""
        _counts.moved(self.db, exp, spans, sql, rows, frm, to)

    def recount(self, exp: int) -> dict:
        """Count the experiment's tasks by state again and keep that (inside a transaction)."""
        return _counts.recount(self.db, exp)

    def kept_counts(self, exp: int) -> dict | None:
        """Counts by state from the kept table, if they verify (store/counts.verified)."""
        c = _counts.verified(self.db, exp, STATES)
        return None if c is None else {**dict.fromkeys(STATES, 0), **c}

    def counts(self, exp: int) -> dict:
        """Scheduled tasks by state: the kept counts where they verify (a few rows), else
        through the indexes (store/stateindex.index_counts: a pass over the (exp, id) one)."""
        kept = self.kept_counts(exp)
        return kept if kept is not None else self.index_counts(exp)

    def index_counts(self, exp: int) -> dict:
        """Scheduled tasks by state through the indexes alone (what the trust check compares
        with the table)."""
        own = not self.db.in_transaction  # the two indexes read in one snapshot
        if own:
            self.db.execute("BEGIN")
        try:
            return {**dict.fromkeys(STATES, 0), **_stateindex.index_counts(self.db, exp)}
        finally:
            if own:
                self.db.execute("COMMIT")

    def event(self, exp: int | None, run: int | None, kind: str, data=None):
        self.db.execute("INSERT INTO events(t, exp, run, kind, data) VALUES (?,?,?,?,?)",
                        (time.time(), exp, run, kind, json.dumps(data, default=str)))

    def find_task(self, exp: int | None, prefix: str):
        """A task by id prefix (like git's short hashes); ambiguous prefixes are an error."""
        q = "SELECT rowid, exp, id, params, state, attempts, bundle, error_kind, error, log " \
            "FROM tasks WHERE id >= ? AND id < ?"
        args = [prefix, prefix + "\uffff"]
        if exp is not None:
            q += " AND exp=?"
            args.append(exp)
        rows = self.db.execute(q + " LIMIT 3", args).fetchall()
        if not rows:
            raise StoreError(f"no task with id {prefix!r}; `pb results` lists task ids")
        if len(rows) > 1:
            raise StoreError(f"task id {prefix!r} is ambiguous; give more characters")
        keys = ("rowid", "exp", "id", "params", "state", "attempts", "bundle", "error_kind",
                "error", "log")
        return dict(zip(keys, rows[0]))


# columns added after the first release: (table, column, declaration)
_LATER_COLUMNS = (
    ("bundles", "job", "TEXT"),  # the SLURM job name recorded before sbatch
    # attempts before the task's current retry budget (set by `pb retry` / --rerun: attempt
    # numbers run on, each lineage gets `retries` again)
    ("tasks", "attempt0", "INTEGER DEFAULT 0"),
    # the task folder's generation: one more after each --rerun (a fresh, empty folder)
    ("tasks", "gen", "INTEGER DEFAULT 0"),
    # the node a failed attempt ran on (pb_node; a done task's is in its Parquet row)
    ("tasks", "node", "TEXT"),
    ("attempts", "node", "TEXT"),
    # what the last failure was, for grouping (core/causes.py: exception type and place)
    ("tasks", "cause", "TEXT"),
    # a registration streamed in chunks (store/registration.py): the space it is of, the
    # points registered so far (in space order), the space's size (NULL: not known yet)
    ("experiments", "reg_key", "TEXT"),
    ("experiments", "reg_next", "INTEGER"),
    ("experiments", "reg_total", "INTEGER"),
    # room a pending row keeps for the bundle name it gets (store/counts.room): a row that
    # grew when first bundled split its page, leaving a tenth of the task table unused
    ("tasks", "room", "BLOB"),
)


def _add_columns(db) -> None:
    have = {}
    for table, col, decl in _LATER_COLUMNS:
        if table not in have:
            have[table] = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if col not in have[table]:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
            except sqlite3.OperationalError:
                pass  # another process added it first (or the store is read-only)


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. WAL needs its -shm file: where it cannot be created (a read-only
    folder and no writer left one), the database is opened as immutable, which is exact unless a
    driver was killed and left a write-ahead log behind (then said on stderr)."""
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    wal = Path(str(path) + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        sys.stderr.write(f"warning: {path} is read-only and has a write-ahead log ({wal}) that "
                         "cannot be applied here; the last changes before a crash may be "
                         "missing from what is shown\n")
    db = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None,
                         check_same_thread=False)
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return db


def _open_peek(path: Path) -> sqlite3.Connection:
    """A connection that creates no file: a plain read-only one where a live writer keeps the
    write-ahead log and its index (-wal, -shm), else the file as it is (immutable; with no -wal
    left, the file holds every committed change)."""
    wal, shm = Path(str(path) + "-wal"), Path(str(path) + "-shm")
    if wal.exists() and shm.exists():
        return _open_readonly(path)
    if wal.exists() and wal.stat().st_size > 0:
        sys.stderr.write(f"warning: {wal} holds changes that are not read here; what is shown "
                         "may miss the last ones\n")
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, et, ev, tb):
        if et is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False
