"""The driver: pending tasks -> bundles -> backend -> outcomes -> store, with retries.

Crash-safety rests on three facts: (1) a task is assigned to a bundle in the same transaction
that records the bundle; (2) outcomes are ingested from a byte offset that is committed in the
same transaction as the task states they change, and the Parquet part they produce is named by
that offset (a re-ingest rewrites it, never duplicates it); (3) whatever a dead driver left
running is recovered from the bundle folders before anything new is scheduled.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.execution import bundling
from pushbutton.harvest import arrow as ingest_arrow
from pushbutton.store import partset
from pushbutton.store import parts as results
from pushbutton.execution.backends.base import FAILED, FINISHED, Backend, BundleRef, BundleState
from pushbutton.core.errors import BusyError
from pushbutton.store.database import DONE, FAILED as T_FAILED, PENDING, Store

_ID_IN_LINE = re.compile(rb'"id":\s*"([0-9a-f]+)"')


@dataclass
class ActiveBundle:
    id: str
    dir: Path
    tasks: dict            # task id -> (rowid, attempt, params)
    handle: str | None = None
    offset: int = 0
    soffset: int = 0
    started: set = field(default_factory=set)
    ended: set = field(default_factory=set)
    torn: set = field(default_factory=set)
    inherited: bool = False  # left by a driver that died: its mid-run tasks are not to blame
    base: dict = field(default_factory=dict)  # task id -> attempts before its retry budget began


class ExperimentLock:
    """One driver per experiment: a flock that the OS releases when the holder dies."""

    def __init__(self, store: Store, exp_id: int, name: str):
        self.path = store.dir / "locks" / f"{exp_id}.lock"
        self.name = name
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.holder()
            raise BusyError(
                f"experiment '{self.name}' is already being run (pid {who.get('pid')} on "
                f"{who.get('host')}); follow it with `pb watch {self.name}`, or stop it with "
                f"`pb cancel {self.name}`") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "t": time.time()}).encode())
        self.fd = fd
        return self

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def held_by_other(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a read-only store: look without creating anything
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return False  # no lock file: no driver ever ran here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Driver:
    def __init__(self, store: Store, exp, exp_id: int, backend: Backend, run_id: int,
                 target: str = "local", on_progress=None, poll_s: float = 0.2):
        self.store, self.exp, self.exp_id = store, exp, exp_id
        self.backend, self.run_id, self.target = backend, run_id, target
        self.on_progress = on_progress
        self.poll_s = poll_s
        self.active: dict[str, ActiveBundle] = {}
        self.seq = store.db.execute("SELECT count(*) FROM bundles WHERE exp=?",
                                    (exp_id,)).fetchone()[0]
        store.db.execute("PRAGMA cache_size=-65536")  # 64 MB: task rows stay cached at 10^6
        self.res_dir = store.dir / "results" / exp.name
        self.ser_dir = store.dir / "series" / exp.name
        self.res_dir.mkdir(parents=True, exist_ok=True)
        self.ser_dir.mkdir(parents=True, exist_ok=True)
        self.param_names = list(exp.space.names)
        r = exp.resources
        self.retries, self.retry_on = r.retries, set(r.retry_on)
        self.est = None          # measured seconds per task (moving average)
        self.stop = False
        self.done_now = self.failed_now = self.requeued = 0
        self.t_ingest = 0.0  # seconds spent reading outcomes and writing the store
        self.t_compact = time.time()  # last incremental compaction
        self.new_parts = 0            # parts written since

    # -- recovery ------------------------------------------------------------------------
    def recover(self):
        """Bundles left by a driver that died: ingest what they wrote, requeue the rest."""
        db = self.store.db
        rows = db.execute("SELECT id, dir, ingested, series_ingested, backend FROM bundles "
                          "WHERE exp=? AND state IN ('created','submitted')",
                          (self.exp_id,)).fetchall()
        for bid, d, off, soff, backend in rows:
            if backend not in ("local", "dask"):
                continue  # SLURM bundles keep running; the harvest handles them
            # local workers die with their driver; a Dask cluster drops a dead client's futures
            b = self._load_bundle(bid, Path(d), off, soff)
            b.inherited = True
            self.ingest([b])
            self._finalize(b, BundleState(FAILED, "its driver stopped", "lost"),
                           state="interrupted")
        with self.store.tx():
            db.execute("UPDATE tasks SET state='pending' WHERE exp=? AND state IN "
                       "('running','cancelled') AND (bundle IS NULL OR bundle NOT IN (SELECT id "
                       "FROM bundles WHERE exp=? AND state IN ('created','submitted')))",
                       (self.exp_id, self.exp_id))

    def _load_bundle(self, bid, d: Path, off=0, soff=0) -> ActiveBundle:
        spec = json.loads((d / "bundle.json").read_text())
        ids = [t["id"] for t in spec["tasks"]]
        rowids = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = "SELECT id, rowid FROM tasks WHERE exp=? AND id IN (%s)" % ",".join("?" * len(chunk))
            rowids.update(self.store.db.execute(q, (self.exp_id, *chunk)).fetchall())
        tasks = {t["id"]: (rowids[t["id"]], t.get("attempt", 1),
                           json.dumps(t["params"], sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False))
                 for t in spec["tasks"] if t["id"] in rowids}
        b = ActiveBundle(bid, d, tasks, offset=off, soffset=soff,
                         base={t["id"]: t["base"] for t in spec["tasks"] if t.get("base")})
        p = d / "outcomes.jsonl"
        if off and p.exists():  # rebuild which tasks started/ended before the offset
            with open(p, "rb") as f:
                for line in f.read(off).splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):  # a damaged line was recorded when ingested
                        (b.ended if rec.get("ev") == "end" else b.started).add(rec.get("id"))
        return b

    # -- scheduling ----------------------------------------------------------------------
    def pending_count(self) -> int:
        return self.store.db.execute(
            "SELECT count(*) FROM tasks WHERE exp=? AND state='pending' AND idx IS NOT NULL",
            (self.exp_id,)).fetchone()[0]

    def fill(self, remaining: int) -> int:
        """Create and submit bundles while the backend has room; returns tasks still pending."""
        cap = self.backend.capacity()
        workers = cap or 1
        while remaining > 0 and not self.stop and (cap is None or len(self.active) < cap):
            size = bundling.guided_size(remaining, workers, self.est,
                                        fixed=self.exp.run_options.bundle_size)
            made = self._make_bundle(size)
            if not made:
                return 0
            remaining -= made
        return remaining

    def _make_bundle(self, size: int) -> int:
        db = self.store.db
        rows = db.execute("SELECT rowid, id, params, attempts, attempt0, gen FROM tasks WHERE "
                          "exp=? AND state='pending' AND idx IS NOT NULL ORDER BY idx LIMIT ?",
                          (self.exp_id, size)).fetchall()
        if not rows:
            return 0
        self.seq += 1
        bid = f"e{self.exp_id}-r{self.run_id}-{self.seq:06d}"
        d = self.store.dir / "bundles" / bid
        d.mkdir(parents=True, exist_ok=True)
        tasks, items, base = {}, [], {}
        for rowid, tid, params_json, attempts, attempt0, gen in rows:
            tasks[tid] = (rowid, attempts + 1, params_json)
            items.append('{"id":"%s","params":%s,"attempt":%d%s}' % (
                tid, params_json, attempts + 1, lineage_fields(attempt0, gen)))
            if attempt0:
                base[tid] = attempt0
        spec = {"bundle": bid, "experiment": self.exp.name, "run": self.run_id,
                "root": str(self.exp.root), "sys_path": self.exp.sys_path,
                "call": self.exp.call, "timeout": self.exp.resources.timeout,
                "memory_mb": self.exp.resources.memory,
                "task_root": str(self.store.dir / "tasks")}
        # the task list is spliced in as text: the parameters are already canonical JSON
        text = json.dumps(spec)[:-1] + ', "tasks": [' + ",".join(items) + "]}"
        tmp = d / ".bundle.json.tmp"
        tmp.write_text(text)
        os.replace(tmp, d / "bundle.json")
        with self.store.tx():
            db.executemany("UPDATE tasks SET state='running', bundle=?, run=? WHERE rowid "
                           "BETWEEN ? AND ?", ((bid, self.run_id, a, z)
                                               for a, z in _ranges([r[0] for r in rows])))
            db.execute("INSERT INTO bundles(id, exp, run, backend, state, n_tasks, dir, target) "
                       "VALUES (?,?,?,?,?,?,?,?)", (bid, self.exp_id, self.run_id,
                                                    self.backend.name, "created", len(rows),
                                                    str(d), self.target))
        ref = BundleRef(bid, d, len(rows), self.exp.resources.timeout,
                        self.exp.resources.memory, self.exp.resources.cpus)
        handle = self.backend.submit([ref])[0]
        db.execute("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE id=?",
                   (handle, time.time(), bid))
        b = ActiveBundle(bid, d, tasks, handle=handle, base=base)
        self.active[bid] = b
        return len(rows)

    # -- ingest --------------------------------------------------------------------------
    def ingest(self, bundles):
        t = time.perf_counter()
        try:
            self._ingest(bundles)
        finally:
            self.t_ingest += time.perf_counter() - t

    def _ingest(self, bundles):
        ok_sql, fail_sql, attempts_sql, offsets, series_offsets = [], [], [], [], []
        parts, series_parts = [], []
        for b in bundles:
            chunk = _complete_lines(b.dir / "outcomes.jsonl", b.offset)
            if chunk:
                rows = self._parse_fast(b, chunk, ok_sql, fail_sql, attempts_sql)
                if rows is None:
                    rows = self._parse(b, chunk, ok_sql, fail_sql, attempts_sql)
                if rows is not None and len(rows):
                    parts.append((self.res_dir / f"{b.id}-{b.offset:012d}.parquet", rows))
                b.offset += len(chunk)
                offsets.append((b.offset, b.id))
            chunk = _complete_lines(b.dir / "series.jsonl", b.soffset)
            if chunk:
                srows = _series_rows(chunk)
                if srows:
                    spath = self.ser_dir / f"{b.id}-{b.soffset:012d}.parquet"
                    results.write_series(spath, srows)
                    series_parts.append(spath)
                b.soffset += len(chunk)
                series_offsets.append((b.soffset, b.id))
        if not (offsets or series_offsets):
            return
        for path, rows in parts:  # Parquet first: a crash before the commit re-writes them
            results.write_part(path, rows, self.param_names)
        # listed in the manifests before the commit: a done task's row is always visible
        partset.publish(self.res_dir, [path for path, _ in parts])
        partset.publish(self.ser_dir, series_parts)
        self.new_parts += len(parts) + len(series_parts)
        db = self.store.db
        with self.store.tx():
            if ok_sql:
                # times, host and log offsets live in the Parquet row and the outcome line;
                # SQLite keeps what scheduling needs, updated by rowid ranges (one statement
                # for a run of consecutive tasks instead of one per task)
                db.executemany("UPDATE tasks SET state='done', attempts=?, bundle=?, run=?, "
                               "log=NULL, error_kind=NULL, error=NULL WHERE rowid BETWEEN ? AND ?",
                               _range_rows(ok_sql))
            _write_failures(db, fail_sql, attempts_sql)
            if offsets:
                db.executemany("UPDATE bundles SET ingested=? WHERE id=?", offsets)
            if series_offsets:
                db.executemany("UPDATE bundles SET series_ingested=? WHERE id=?", series_offsets)

    def _parse_fast(self, b, chunk, ok_sql, fail_sql, attempts_sql):
        """Arrow's JSON reader for big chunks; None sends the chunk down the line-by-line path."""
        if chunk.count(b"\n") < 512:
            return None
        got = ingest_arrow.parse(b, chunk, self.run_id, self.param_names)
        if got is None:  # b is untouched: the line-by-line path starts afresh
            return None
        oks, failed, table, durs = got
        ok_sql.extend(oks)
        for rec in failed:
            if not _valid_record(rec):
                b.ended.discard(rec["id"])
                b.torn.add(rec["id"])  # its line is damaged: the task re-runs
                self.store.event(self.exp_id, self.run_id, "damaged-line",
                                 {"bundle": b.id, "line": json.dumps(rec, default=str)[:200]})
                continue
            lg = rec.get("log")
            self._fail(b, rec["id"], rec.get("kind") or "exception", rec.get("error") or "",
                       rec.get("traceback"), rec.get("t0"), rec.get("t1"), rec.get("host"),
                       "[%d,%d,%d,%d]" % tuple(lg) if lg else None, fail_sql, attempts_sql)
        self.done_now += len(oks)
        if durs:
            m = sum(durs) / len(durs)
            self.est = m if self.est is None else 0.7 * self.est + 0.3 * m
        return table

    def _parse(self, b, chunk, ok_sql, fail_sql, attempts_sql):
        ends = []
        for line in chunk.split(b"\n"):
            if not line:
                continue
            i = line.find(b'","ev":"start"', 7)  # start lines have a fixed layout: no JSON parse
            if i > 0 and line.startswith(b'{"id":"'):
                tid = line[7:i].decode()
                if tid in b.tasks:
                    b.started.add(tid)
                continue
            ends.append(line)
        if not ends:
            return []
        try:  # one parse for the whole chunk; line by line only if a line is torn
            recs = json.loads(b"[" + b",".join(ends) + b"]")
        except ValueError:
            recs = []
            for line in ends:
                try:
                    recs.append(json.loads(line))
                except ValueError:  # a torn write from a killed worker: that task must re-run
                    m = _ID_IN_LINE.search(line)
                    if m:
                        b.torn.add(m.group(1).decode())
                    self.store.event(self.exp_id, self.run_id, "torn-line",
                                     {"bundle": b.id,
                                      "line": line[:200].decode("utf-8", "replace")})
        rows, ptexts, durs = [], [], []
        run, bid = self.run_id, b.id
        for rec in recs:
            if not _valid_record(rec):  # valid JSON, but not an outcome: the task re-runs
                text = json.dumps(rec, default=str)
                m = _ID_IN_LINE.search(text.encode())
                if m:
                    b.torn.add(m.group(1).decode())
                self.store.event(self.exp_id, self.run_id, "damaged-line",
                                 {"bundle": b.id, "line": text[:200]})
                continue
            tid = rec.get("id")
            if tid not in b.tasks or rec.get("ev") != "end" or tid in b.ended:
                continue  # one end per task and bundle, whatever a worker repeated
            b.ended.add(tid)
            rowid, attempt, ptext = b.tasks[tid]
            t0, t1 = rec.get("t0"), rec.get("t1")
            lg = rec.get("log")
            log = "[%d,%d,%d,%d]" % tuple(lg) if lg else None
            if rec.get("ok"):
                ok_sql.append((attempt, bid, run, rowid))
                dur = (t1 - t0) if (t0 and t1) else None
                rows.append({"task_id": tid, "bundle": bid, "run_id": run, "attempts": attempt,
                             "duration_s": dur, "host": rec.get("host"), "finished_at": t1,
                             "params": None, "metrics": rec.get("metrics") or {}})
                ptexts.append(ptext)
                if dur is not None:
                    durs.append(dur)
            else:
                self._fail(b, tid, rec.get("kind") or "exception", rec.get("error") or "",
                           rec.get("traceback"), t0, t1, rec.get("host"), log, fail_sql,
                           attempts_sql)
        if ptexts:
            for row, params in zip(rows, json.loads("[" + ",".join(ptexts) + "]")):
                row["params"] = params
        self.done_now += len(rows)
        if durs:
            m = sum(durs) / len(durs)
            self.est = m if self.est is None else 0.7 * self.est + 0.3 * m
        return rows

    def _fail(self, b, tid, kind, error, tb, t0, t1, host, log, fail_sql, attempts_sql):
        rowid, attempt, _ = b.tasks[tid]
        # attempt numbers run on over `pb retry` / --rerun; each of those gives a fresh budget
        retry = attempt - b.base.get(tid, 0) <= self.retries and kind in self.retry_on
        state = PENDING if retry else T_FAILED
        if retry:
            self.requeued += 1
        else:
            self.failed_now += 1
        fail_sql.append((state, attempt, b.id, self.run_id, t0, t1, host, log, kind, error[:4000],
                         rowid))
        attempts_sql.append((rowid, attempt, self.run_id, b.id, kind, error[:4000],
                             (tb or "")[-8000:], t0, t1, host, log))

    def _finalize(self, b: ActiveBundle, st: BundleState, state: str | None = None):
        """The bundle is over: tasks without an end are charged (mid-run) or requeued."""
        self.ingest([b])
        missing = [t for t in b.tasks if t not in b.ended]
        tail = b"" if not (b.dir / "outcomes.jsonl").exists() else \
            (b.dir / "outcomes.jsonl").read_bytes()[b.offset:]
        if tail.strip():
            m = _ID_IN_LINE.search(tail)
            if m:
                b.torn.add(m.group(1).decode())
        fail_sql, attempts_sql, requeue = [], [], []
        for tid in missing:
            if tid in b.started and tid not in b.torn and not b.inherited and st.state == FAILED:
                t0, log = _started_at(b.dir, tid)  # its output up to the end of the logs
                self._fail(b, tid, st.kind or "lost", st.cause or "its bundle stopped", None,
                           t0, time.time(), None, log, fail_sql, attempts_sql)
            else:
                requeue.append((b.tasks[tid][0],))
        if b.torn & set(missing):
            self.store.event(self.exp_id, self.run_id, "requeued-torn",
                             {"bundle": b.id, "tasks": sorted(b.torn & set(missing))})
        final = state or ("finished" if st.state == FINISHED and not missing else "failed")
        db = self.store.db
        with self.store.tx():
            _write_failures(db, fail_sql, attempts_sql)
            if requeue:
                db.executemany("UPDATE tasks SET state='pending' WHERE rowid=? AND "
                               "state='running'", requeue)
            db.execute("UPDATE bundles SET state=?, ended=?, cause=? WHERE id=?",
                       (final, time.time(), st.cause, b.id))
        return len(requeue)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict:
        self.recover()
        self.requeued = 0
        remaining = self.pending_count()
        counts = self.store.counts(self.exp_id)
        total = remaining + counts[DONE] + counts[T_FAILED]
        already = total - remaining
        t_start = time.time()
        old = signal.signal(signal.SIGTERM, self._on_term) if _main_thread() else None
        status = "finished"
        last_tail = time.time()
        try:
            remaining = self.fill(remaining)
            while self.active:
                wait = getattr(self.backend, "wait", None)
                wait(self.poll_s) if wait else time.sleep(self.poll_s)
                states = self.backend.poll([b.handle for b in self.active.values()])
                # running bundles are tailed once a second (fewer, larger Parquet parts);
                # finished ones are ingested at once by _finalize
                if time.time() - last_tail >= 1.0:
                    self.ingest(list(self.active.values()))
                    last_tail = time.time()
                for b in list(self.active.values()):
                    st = states.get(b.handle)
                    if st and st.state in (FINISHED, FAILED):
                        remaining += self._finalize(b, st)
                        del self.active[b.id]
                remaining += self.requeued
                self.requeued = 0
                self.compact_some()
                if self.stop:
                    status = "cancelled"
                    self._cancel_all()
                    break
                remaining = self.fill(remaining)
                if self.on_progress:
                    self.on_progress(already + self.done_now + self.failed_now, total,
                                     self.failed_now, time.time() - t_start)
        except KeyboardInterrupt:
            status = "interrupted"
            self._cancel_all(interrupted=True)
            raise
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
            self.backend.close()
            self.store.end_run(self.run_id, status)
            self.compact_all()
        if self.on_progress:
            self.on_progress(already + self.done_now + self.failed_now, total, self.failed_now,
                             time.time() - t_start)
        return {"status": status, "done": self.done_now, "failed": self.failed_now,
                "seconds": time.time() - t_start, "ingest_seconds": self.t_ingest}

    def compact_some(self, full: bool = False):
        """Merge committed parts (tiered, throttled), so a long run keeps few files."""
        now = time.time()
        if not full and now - self.t_compact < partset.EVERY_S and \
                self.new_parts < 2 * partset.LEVEL0:
            return
        self.t_compact, self.new_parts = now, 0
        db = self.store.db
        try:
            results.compact(self.res_dir, committed=partset.committed_filter(db), full=full)
            results.compact(self.ser_dir, min_parts=64, newest_per_task=False, full=full,
                            committed=partset.committed_filter(db, "series_ingested"))
        except Exception as e:  # compaction is an optimisation; never lose a run over it
            self.store.event(self.exp_id, self.run_id, "compact-failed", str(e))

    def compact_all(self):
        self.compact_some(full=True)

    def _on_term(self, signum, frame):
        self.stop = True

    def _cancel_all(self, interrupted=False):
        handles = [b.handle for b in self.active.values()]
        if handles:
            self.backend.cancel(handles)
        for b in list(self.active.values()):
            b.inherited = True  # our own stop: mid-run tasks are not the tasks' fault
            self._finalize(b, BundleState(FAILED, "cancelled", "cancelled"),
                           state="interrupted" if interrupted else "cancelled")
            del self.active[b.id]
        if not interrupted:
            with self.store.tx():
                self.store.db.execute("UPDATE tasks SET state='cancelled' WHERE exp=? AND "
                                      "state IN ('pending','running')", (self.exp_id,))


def _write_failures(db, fail_sql, attempts_sql):
    """Failed attempts: the task's state (pending again, or failed) and its attempts row."""
    if fail_sql:
        db.executemany("UPDATE tasks SET state=?, attempts=?, bundle=?, run=?, t0=?, t1=?, "
                       "host=?, log=?, error_kind=?, error=? WHERE rowid=?", fail_sql)
        db.executemany("INSERT INTO attempts(task, n, run, bundle, kind, error, traceback, t0, "
                       "t1, host, log) VALUES (?,?,?,?,?,?,?,?,?,?,?)", attempts_sql)


def lineage_fields(attempt0, gen) -> str:
    """The extra fields of a bundle's task entry: `base` (attempts before this retry budget)
    and `gen` (the task folder's generation, one more after each --rerun), when not 0."""
    return (',"base":%d' % attempt0 if attempt0 else "") + (',"gen":%d' % gen if gen else "")


def _started_at(folder: Path, tid: str):
    """(t0, log slice) of a task that started and never ended: from its start line's offsets
    to the end of the bundle's logs (what a segfault or os._exit left)."""
    key = b'{"id":"%s","ev":"start"' % tid.encode()
    try:
        data = (folder / "outcomes.jsonl").read_bytes()
    except OSError:
        return None, None
    i = data.rfind(key)
    if i < 0:
        return None, None
    try:
        rec = json.loads(data[i:data.index(b"\n", i)])
        o0, e0 = rec["log"]
    except (ValueError, KeyError, TypeError):
        return None, None
    sizes = []
    for name in ("stdout.log", "stderr.log"):
        try:
            sizes.append((folder / name).stat().st_size)
        except OSError:
            sizes.append(0)
    return rec.get("t"), "[%d,%d,%d,%d]" % (o0, max(o0, sizes[0]), e0, max(e0, sizes[1]))


def _complete_lines(path: Path, offset: int) -> bytes:
    """What was appended to `path` since `offset`, up to its last newline (a line still being
    written, or torn, waits)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return b""
    if size <= offset:
        return b""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size - offset)
    return data[:data.rfind(b"\n") + 1]


def _ranges(ids) -> list[tuple[int, int]]:
    """Consecutive runs of integers: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]."""
    out = []
    ids = sorted(ids)
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


def _range_rows(ok_sql) -> list[tuple]:
    """(attempt, bundle, run, rowid) rows -> (attempt, bundle, run, first, last) ranges."""
    groups: dict[tuple, list] = {}
    for att, bid, run, rowid in ok_sql:
        groups.setdefault((att, bid, run), []).append(rowid)
    return [(*key, a, z) for key, ids in groups.items() for a, z in _ranges(ids)]


def _valid_record(rec) -> bool:
    """An outcome line as the worker writes it: an object with a task id and an event, and (for
    an end line) fields of the right kinds."""
    if not (isinstance(rec, dict) and isinstance(rec.get("id"), str)
            and isinstance(rec.get("ev"), str)):
        return False
    if rec["ev"] != "end":
        return True
    num = (int, float, type(None))
    lg = rec.get("log")
    return (isinstance(rec.get("metrics"), (dict, type(None)))
            and isinstance(rec.get("t0"), num) and isinstance(rec.get("t1"), num)
            and isinstance(rec.get("error"), (str, type(None)))
            and isinstance(rec.get("kind"), (str, type(None)))
            and isinstance(rec.get("host"), (str, type(None)))
            and (lg is None or (isinstance(lg, list) and len(lg) == 4
                                and all(isinstance(x, int) for x in lg))))


def _series_rows(chunk: bytes) -> list[dict]:
    rows = []
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        m = rec.get("m") if isinstance(rec, dict) else None
        if isinstance(m, dict) and rec.get("task"):
            rows.append({"task_id": rec["task"], "step": rec.get("step"), "time": rec.get("t"),
                         "m": m})
    return rows


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
