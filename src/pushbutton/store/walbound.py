"""The write-ahead log kept small while a run writes (issue: a long `pb run` grew
state.sqlite-wal to gigabytes).

SQLite's automatic checkpoint is PASSIVE: it copies what it can and never waits, and the log is
rewound (written again from its start) only when a checkpoint has copied everything and no reader
is still using it. With the driver's connection reading and writing between the registration
thread's commits, that moment rarely comes while the space registers, so the log grows by every
chunk. `bound` is called by each writer after its commits: once the file is over LIMIT it runs a
TRUNCATE checkpoint, which waits (a short time) for the readers to finish, copies the log into
the database and empties the file. Nothing about crash-safety changes: the checkpoint is
SQLite's own, run between transactions; a busy one is simply tried again after a later commit.
`journal_size_limit` makes SQLite cut the file back itself whenever it does rewind the log.

While a run ingests, its checkpoints run in a thread of their own (`Checkpointer`, as SQLite's
WAL documentation suggests for a busy writer): SQLite's automatic one runs inside the COMMIT that
crosses 1,000 pages, and with synchronous=NORMAL it syncs the log and the database file there,
so the ingest of 10^6 results spent two of its eight seconds waiting for the disk in COMMIT.
The writer's own automatic checkpoint stays as a backstop, at LIMIT.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time

LIMIT = 64 << 20  # bytes of -wal after which a writer forces a checkpoint
WAIT_MS = 2000    # how long the checkpoint waits for readers/the other writer
EVERY_S = 0.5     # the file's size is looked at no more often than this per connection
AUTO_PAGES = 1000  # SQLite's automatic checkpoint (its default), restored after a Checkpointer
BACKGROUND_BYTES = 4 << 20  # the thread checkpoints once the log is over this (AUTO_PAGES)
BACKGROUND_S = 0.25  # how often it looks


def limit() -> int:
    try:
        return max(1, int(os.environ.get("PB_WAL_LIMIT") or LIMIT))
    except ValueError:
        return LIMIT


def setup(db) -> None:
    """Per connection: SQLite truncates the log to this size whenever it rewinds it."""
    db.execute(f"PRAGMA journal_size_limit={limit()}")


class Bound:
    """One writer's check: `check()` after a commit (outside any transaction)."""

    def __init__(self, db, path, every: float = EVERY_S):
        """every: seconds between looks at the file's size (0: at each check)."""
        self.db, self.wal, self.t, self.every = db, str(path) + "-wal", 0.0, every
        self.forced = 0

    def check(self) -> bool:
        now = time.monotonic()
        if now - self.t < self.every:
            return False
        self.t = now
        try:
            if os.path.getsize(self.wal) <= limit():
                return False
        except OSError:
            return False
        if self.db.in_transaction:
            return False
        busy = self.db.execute("PRAGMA busy_timeout").fetchone()[0]
        try:
            self.db.execute(f"PRAGMA busy_timeout={WAIT_MS}")
            row = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self.forced += 1
            return bool(row) and row[0] == 0
        except sqlite3.Error:
            return False  # busy: tried again after a later commit
        finally:
            self.db.execute(f"PRAGMA busy_timeout={busy}")


class Checkpointer:
    """`with Checkpointer(db, path):` the log of the database at `path` is checkpointed
    (PASSIVE: it never blocks the writer or a reader) by a thread with its own connection, and
    `db`, the writer, checkpoints in its commits only past LIMIT. Errors are the next try's:
    a busy or failed checkpoint only leaves the log for the next one (or the writer's)."""

    def __init__(self, db, path, every: float = BACKGROUND_S):
        self.db, self.path, self.every = db, str(path), every
        self.stopping = threading.Event()
        self.thread = None
        self.done = 0  # checkpoints run (tests)

    def start(self) -> "Checkpointer":
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        self.db.execute(f"PRAGMA wal_autocheckpoint={max(AUTO_PAGES, limit() // page)}")
        self.thread = threading.Thread(target=self._run, name="pb-checkpoint", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
            self.thread = None
            self.db.execute(f"PRAGMA wal_autocheckpoint={AUTO_PAGES}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _run(self) -> None:
        try:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=1)
        except sqlite3.Error:
            return  # the writer's own checkpoints go on
        try:
            while not self.stopping.wait(self.every):
                try:
                    if os.path.getsize(self.path + "-wal") > BACKGROUND_BYTES:
                        con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        self.done += 1
                except (OSError, sqlite3.Error):
                    pass
        finally:
            con.close()
