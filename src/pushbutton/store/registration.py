"""Registering a space's points as task rows in chunks, while its first tasks already run.

A space is never expanded into a list: its points are read lazily, `CHUNK` at a time, and each
chunk is committed together with how far the registration got (`experiments.reg_next`: points
of the space registered so far, in space order; `reg_key`: the space it is of; `reg_total`:
the space's size, NULL while a `where` filter has not been counted). A kill at any moment
leaves a prefix of the space registered; the next run of the same space (same `reg_key`)
continues after it, so every point is registered once and none is skipped. The space's
identity (`space_key`) is written with the last chunk only, so an interrupted registration is
never taken for a finished one, and `n_tasks` always counts the rows registered so far (what
the integrity check compares the task table with).

The first chunk is registered by the caller (the run starts on it); the rest by a thread with
its own SQLite connection. From `FORK_FROM` points on, a forked child computes the points'
canonical JSON and ids and hands the rows over a pipe to the process that inserts them: the
hashing and SQLite's inserts use two cores, and the driver's thread is left the GIL.
"""
from __future__ import annotations

import hashlib
import itertools
import marshal
import os
import sqlite3
import struct
import threading
import time
import traceback

from pushbutton.core import ids, memory
from pushbutton.core.errors import PushbuttonError, SpecError
from pushbutton.store import counts, stateindex, walbound

FIRST = 2_000        # points registered before the run starts (a few ms)
CHUNK = 10_000       # the first streamed chunk; chunks double up to MAX_CHUNK
MAX_CHUNK = 100_000  # rows per transaction at most (a commit holds the driver's writes back)
FORK_FROM = 50_000   # from this many points left on, a child process hashes them
BIG_SPACE = 50_000   # from this many points on, registering a space reports its progress
_FRAME = struct.Struct("<cI")


def big(reg) -> bool:
    """Whether the registration is worth following (a space of BIG_SPACE points or more)."""
    return (reg.total if reg.total is not None else reg.bound) >= BIG_SPACE


def ticker(reg, progress):
    """progress(done, total) now and then after each chunk, for a big space; else None."""
    if progress is None or not big(reg):
        return None
    progress(reg.next, reg.total)
    return lambda: progress(reg.next, reg.total)


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def state(db, eid: int) -> tuple | None:
    """(reg_key, reg_next, reg_total) of a registration in progress (or cut short), or None."""
    try:
        row = db.execute("SELECT reg_key, reg_next, reg_total FROM experiments WHERE id=?",
                         (eid,)).fetchone()
    except sqlite3.OperationalError:  # a read-only store of an earlier version
        return None
    return row if row and row[0] is not None else None


class _BadPoint(Exception):
    def __init__(self, i, why):
        super().__init__(i, why)
        self.i, self.why = i, why


def _points(space, start: int):
    """The points from the `start`-th on: the space's own (fast) iteration, skipping a few;
    computed by index after a long prefix (a resumed registration), unless filtered."""
    if start == 0:
        return iter(space)
    if start > 200_000 and not space._pending():
        return map(space._get, range(start, space.size))
    return itertools.islice(iter(space), start, None)


def _rows(points, start: int, size: int):
    """Lists of (id, idx, canonical JSON), `size` points each (the last one shorter)."""
    canon, blake = ids.canonical, hashlib.blake2b
    i = start
    while True:
        chunk = list(itertools.islice(points, size))
        if not chunk:
            return
        rows = []
        add = rows.append
        for p in chunk:
            try:
                c = canon(p)
            except (TypeError, ValueError) as e:
                raise _BadPoint(i, str(e)) from None
            add((blake(c.encode(), digest_size=10).hexdigest(), i, c))
            i += 1
        yield rows
        size = min(size * 2, MAX_CHUNK)


def _forked(space, start: int, size: int):
    """_rows computed in a forked child, read back over a pipe (the child ends with the pipe:
    a parent that dies takes it along at its next write)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no file of the parent's stays open (the experiment's lock!)
        code = 0
        try:
            os.close(r)
            os.closerange(3, w)
            os.closerange(w + 1, 1 << 16)
            out = os.fdopen(w, "wb", buffering=1 << 20)
            try:
                for rows in _rows(_points(space, start), start, size):
                    data = marshal.dumps(rows)
                    out.write(_FRAME.pack(b"R", len(data)) + data)
                out.write(_FRAME.pack(b"D", 0))
            except _BadPoint as e:
                data = marshal.dumps((e.i, e.why))
                out.write(_FRAME.pack(b"B", len(data)) + data)
            except Exception:  # noqa: BLE001 - e.g. a where callable that raises
                data = traceback.format_exc().encode()
                out.write(_FRAME.pack(b"X", len(data)) + data)
            out.flush()
        except BaseException:  # noqa: BLE001 - the parent is gone (broken pipe), Ctrl-C
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    src = os.fdopen(r, "rb", buffering=1 << 20)
    try:
        while True:
            head = src.read(_FRAME.size)
            if len(head) < _FRAME.size:
                raise PushbuttonError("the process hashing the parameter points ended early")
            kind, n = _FRAME.unpack(head)
            data = src.read(n) if n else b""
            if kind == b"R":
                yield marshal.loads(data)
            elif kind == b"D":
                return
            elif kind == b"B":
                raise _BadPoint(*marshal.loads(data))
            else:
                raise PushbuttonError("registering the space failed:\n" + data.decode())
    finally:
        src.close()
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


class Registration:
    """The registration of one space into one experiment, from where an earlier one stopped."""

    def __init__(self, store, eid: int, space, key: str | None, start: int = 0,
                 file: str | None = None):
        self.path = store.dir / "state.sqlite"
        self.store, self.eid, self.space, self.file = store, eid, space, file
        self.key = key or "-"  # "-": a space without a written form (never resumed)
        self.hash = key
        self.next = start                  # points of the space registered
        self._fresh = start == 0           # n_tasks counts from 0 (a store after pb clean)
        self._room: int | None = None      # bytes a pending row keeps (stateindex.room)
        self._next, self._added = start, 0  # the same, in the transaction not yet committed
        self.inserted = 0                  # task rows this registration added
        self.bound = space._bound
        self.total = None if space._pending() else space.size
        self.t0 = time.time()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._stop = False
        self._thread = None
        self._source = None

    # -- what the driver and the progress read ---------------------------------------------
    @property
    def expected(self) -> int | None:
        """The space's size where it is known (a where filter: once it is counted)."""
        return self.total

    def progress(self) -> tuple[int, int | None]:
        return self.next, self.total

    # -- registering -------------------------------------------------------------------------
    def first(self, n: int | None = None) -> bool:
        """Register the first `n` points here and now; True once the whole space is in."""
        n = n or _env_int("PB_REGISTER_FIRST", FIRST)
        points = _points(self.space, self.next)
        rows = next(_rows(itertools.islice(points, n), self.next, n), [])
        if not rows and self.next == 0:
            f, k = self.space._origin
            raise SpecError("empty space: the where filter matches no point", file=f,
                            key=k or "space", fix="loosen the where expression")
        self._commit(self.store.db, rows, end=len(rows) < n)
        return self.finished.is_set()

    def stream(self, on_chunk=None) -> None:
        """Register the rest in a thread of its own (its own SQLite connection)."""
        memory.tame(arrow=False)  # before the thread: it shares the driver's arenas
        self._thread = threading.Thread(target=self._run, args=(on_chunk,), daemon=True,
                                        name="pb-register")
        self._thread.start()

    def run_all(self, on_chunk=None) -> None:
        """Register the rest in this thread (nothing runs meanwhile), a chunk per transaction as
        the streaming thread does: one transaction of the whole space made the write-ahead log
        as big as the new rows and their indexes (10^6 points: 143 MB; 10^7: ~1.4 GB), which
        the log's bound cannot cut inside a transaction. A kill leaves the chunks committed,
        and the next run resumes after them."""
        db = self.store.db
        db.execute("PRAGMA cache_size=-64000")
        wal = walbound.Bound(db, self.path, every=0)
        try:
            for rows in self._chunks():
                self._commit(db, rows)
                wal.check()
                if on_chunk is not None:
                    on_chunk()
            self._commit(db, [], end=True)
        finally:
            db.execute("PRAGMA cache_size=-2000")

    def close(self) -> None:
        """Stop after the chunk being inserted (what is committed stays: a later run resumes)."""
        self._stop = True
        if self._thread is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def check(self) -> None:
        """Raise what stopped the registration thread, if anything did."""
        if self.error is not None:
            raise self.error

    # -- inside ------------------------------------------------------------------------------
    def _chunks(self):
        size = _env_int("PB_REGISTER_CHUNK", CHUNK)
        left = (self.total if self.total is not None else self.bound) - self.next
        try:
            if left >= FORK_FROM and hasattr(os, "fork"):
                self._source = _forked(self.space, self.next, size)
            else:
                self._source = _rows(_points(self.space, self.next), self.next, size)
            yield from self._source
        except _BadPoint as e:
            raise SpecError(f"parameter point {e.i} cannot be written as JSON: {e.why}",
                            file=self.file, key="space",
                            fix="use numbers, strings, bools or lists of them") from None

    def _run(self, on_chunk) -> None:
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-64000")  # the id index's pages, not the table's
            walbound.setup(db)
            wal = walbound.Bound(db, self.path, every=0)  # (one stat per chunk)
            pause = float(os.environ.get("PB_TEST_REGISTER_PAUSE") or 0)
            die = int(os.environ.get("PB_TEST_DIE_AFTER_CHUNKS") or 0)
            chunks = 0
            gen = self._chunks()
            for rows in gen:
                if self._stop:
                    gen.close()
                    return
                self._commit(db, rows)
                wal.check()  # the log kept small while the space streams in (walbound.py)
                chunks += 1
                if die and chunks >= die:  # fault injection for the tests only: kill -9
                    os.kill(os.getpid(), 9)
                if on_chunk is not None:
                    on_chunk()
                if pause:
                    time.sleep(pause)
            self._commit(db, [], end=True)
        except BaseException as e:  # noqa: BLE001 - handed to the driver's thread
            self.error = e
        finally:
            if db is not None:
                db.close()
            if self.error is None and not self._stop:
                self.finished.set()
            if on_chunk is not None:
                on_chunk()

    def _insert(self, db, rows) -> None:
        """Rows into the open transaction; counted (`next`, `inserted`) once it commits."""
        if rows:
            if self._room is None:  # (rows that do not grow when first bundled)
                self._room = stateindex.room(db, self.eid)
            cur = db.executemany("INSERT OR IGNORE INTO tasks(exp, id, idx, params, room) "
                                 "VALUES (%d,?,?,?,zeroblob(%d))" % (self.eid, self._room),
                                 rows)
            self._added += cur.rowcount
            self._next = rows[-1][1] + 1
            base = "0" if self._fresh else "n_tasks"
            if self._fresh:  # the kept counts (store/counts.py) start from nothing too
                db.execute("DELETE FROM task_counts WHERE exp=?", (self.eid,))
            self._fresh = False
            db.execute(f"UPDATE experiments SET n_tasks={base}+?, reg_key=?, reg_next=?, "
                       "reg_total=? WHERE id=?", (cur.rowcount, self.key, self._next,
                                                  self.total, self.eid))
            # the rows inserted are pending: added to the kept counts in this transaction
            # (of this connection), not counted again
            counts.shift(db, self.eid, {"pending": cur.rowcount})

    def _committed(self) -> None:
        self.next, self.inserted = self._next, self.inserted + self._added
        self._added = 0

    def _finish(self, db) -> None:
        """The last chunk is in: the space's identity and size, no registration in progress."""
        if self.total is None:
            self.total = self._next
        space_key = f"{self.hash}:{self._next}" if self.hash else None
        db.execute("UPDATE experiments SET space_key=?, reg_key=NULL, reg_next=NULL, "
                   "reg_total=NULL WHERE id=?", (space_key, self.eid))
        db.execute("INSERT INTO events(t, exp, run, kind, data) VALUES (?,?,NULL,?,?)",
                   (time.time(), self.eid, "registered",
                    '{"points": %d, "inserted": %d, "seconds": %.3f}'
                    % (self._next, self.inserted + self._added, time.time() - self.t0)))

    def _commit(self, db, rows, end: bool = False) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            self._insert(db, rows)
            if end:
                self._finish(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._next, self._added = self.next, 0
            raise
        self._committed()
        if end:
            self.finished.set()
