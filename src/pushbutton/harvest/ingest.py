"""The one Ingestor: a bundle's outcome files -> task states (SQLite) and result rows (Parquet).

The local driver, the SLURM harvest, the Dask backend's driver and `pb repair` all ingest
through it. Crash-safety: outcomes are read from a byte offset that is committed in the same
transaction as the task states they change, and the Parquet part they produce is named by that
offset, so a re-ingest rewrites a part and never duplicates a row.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.core import causes, memory
from pushbutton.core.files import complete_lines
from pushbutton.harvest import arrow as ingest_arrow
from pushbutton.harvest import outcomes as oc
from pushbutton.harvest.taskindex import Marks
from pushbutton.store import bundlelogs, partset
from pushbutton.store import parts as results
from pushbutton.store.database import FAILED as T_FAILED, PENDING, Store

RELEASE_BYTES = 1 << 20  # an ingest that read this much hands its freed pages back (core/memory)
RELEASE_EVERY_S = 5.0    # at most this often: the next ingest faults the pages of a trim in
                         # again (every ingest: 100,000 more page faults over a 10^6 run, a
                         # tenth of its ingest time, and the same peak)
CHUNK_BYTES = 16 << 20   # outcome bytes of one bundle read per ingest: what a read holds is
                         # bounded, whatever the bundle's size (the rest comes next time)


# times, host and log offsets live in the Parquet row and the outcome line; SQLite keeps what
# scheduling needs, updated by rowid ranges (one statement for a run of consecutive tasks)
_DONE = ("UPDATE tasks SET state='done', attempts=?, bundle=?, run=?, log=NULL, error_kind=NULL, "
         "error=NULL, cause=NULL WHERE rowid BETWEEN ? AND ?")


@dataclass(frozen=True)
class RunPolicy:
    """What running and ingesting need from an experiment: resources per task, the retry rule,
    the parameter names (the result table's columns) and a fixed bundle size (0: guided)."""
    retries: int = 0
    retry_on: tuple[str, ...] = ()
    timeout: float | None = None
    memory_mb: int | None = None
    cpus: int = 1
    gpus: int = 0
    workers: int | None = None
    param_names: tuple[str, ...] = ()
    bundle_size: int = 0

    @classmethod
    def of(cls, exp) -> "RunPolicy":
        """From an Experiment (its validated spec)."""
        r, o = exp.resources, exp.run_options
        return cls(retries=r.retries, retry_on=tuple(r.retry_on), timeout=r.timeout,
                   memory_mb=r.memory, cpus=r.cpus or 1, gpus=int(r.gpus or 0),
                   workers=o.workers, param_names=tuple(exp.space.names),
                   bundle_size=o.bundle_size or 0)

    @classmethod
    def from_meta(cls, meta: dict) -> "RunPolicy":
        """From the description a SLURM submission stored (see slurm/runs.py)."""
        return cls(retries=meta["retries"], retry_on=tuple(meta["retry_on"]),
                   timeout=meta["timeout"], memory_mb=meta["memory_mb"],
                   cpus=meta["cpus"] or 1, gpus=int(meta.get("gpus") or 0),
                   param_names=tuple(meta["param_names"]),
                   bundle_size=meta["bundle_size"] or 0)

    def as_meta(self) -> dict:
        return {"timeout": self.timeout, "memory_mb": self.memory_mb, "cpus": self.cpus,
                "gpus": self.gpus, "retries": self.retries, "retry_on": list(self.retry_on),
                "bundle_size": self.bundle_size, "param_names": list(self.param_names)}


@dataclass
class ActiveBundle:
    """A bundle being ingested: its tasks and how far its outcome files have been read."""
    id: str
    dir: Path
    tasks: dict            # task id -> (rowid, attempt, params as canonical JSON)
    run: int | None = None
    handle: str | None = None
    offset: int = 0        # bytes of outcomes.jsonl ingested
    soffset: int = 0       # bytes of series.jsonl ingested
    started: set = field(default_factory=set)
    ended: Marks = field(default_factory=Marks)  # a set of ids (flags per task, see taskindex)
    torn: set = field(default_factory=set)
    inherited: bool = False  # not the tasks' fault if it stops (a dead driver, preemption)
    base: dict = field(default_factory=dict)  # task id -> attempts before its retry budget began
    index: object = field(default=None, repr=False)  # its tasks as arrays (harvest/taskindex)


@dataclass
class _Batch:
    """SQL rows gathered from the outcome lines of one ingest, written in one transaction."""
    ok: list = field(default_factory=list)        # (bundle, run, attempts, rowids): numpy
                                                  # arrays (fast path) or lists (line by line)
    fail: list = field(default_factory=list)      # task updates of failed attempts
    attempts: list = field(default_factory=list)  # their attempts rows


class Ingestor:
    def __init__(self, store: Store, exp_id: int, name: str, run_id: int, policy: RunPolicy):
        self.store, self.exp_id, self.name = store, exp_id, name
        self.run_id, self.policy = run_id, policy
        self.param_names = list(policy.param_names)
        self.retry_on = set(policy.retry_on)
        self.root = str(store.root)  # failure places are shown relative to the project
        # 16 MB: ingest updates task rows by rowid ranges, a bundle at a time, so the pages it
        # touches are few and near each other; 64 MB (the whole table at 10^6) was RSS kept
        store.db.execute("PRAGMA cache_size=-16384")
        self.res_dir = store.dir / "results" / name
        self.ser_dir = store.dir / "series" / name
        self.res_dir.mkdir(parents=True, exist_ok=True)
        self.ser_dir.mkdir(parents=True, exist_ok=True)
        self.est = None          # measured seconds per task (moving average)
        self.done = self.failed = 0
        self.requeued = 0        # since take_requeued()
        self.seconds = 0.0       # spent reading outcomes and writing the store (wall time)
        self.cpu_seconds = 0.0   # the process's CPU time meanwhile (Arrow's threads included)
        self.t_compact = time.time()  # last incremental compaction
        self.t_release = 0.0          # last hand-back of freed pages (time.monotonic)
        self.new_parts = 0            # parts written since
        self.plain = False  # a small run: parts written without pyarrow (store/parquet_plain)

    # -- loading ---------------------------------------------------------------------------
    def load(self, bid: str, folder: Path, offset: int = 0, series_offset: int = 0,
             run: int | None = None) -> ActiveBundle:
        """A bundle from its bundle.json, resumed at the committed offsets."""
        spec = json.loads((folder / "bundle.json").read_text())
        ids = [t["id"] for t in spec["tasks"]]
        rowids = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            q = ("SELECT id, rowid FROM tasks WHERE exp=? AND id IN (%s)"
                 % ",".join("?" * len(chunk)))
            rowids.update(self.store.db.execute(q, (self.exp_id, *chunk)).fetchall())
        tasks = {t["id"]: (rowids[t["id"]], t.get("attempt", 1),
                           json.dumps(t["params"], sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False))
                 for t in spec["tasks"] if t["id"] in rowids}
        b = ActiveBundle(bid, folder, tasks, run=run or self.run_id, offset=offset,
                         soffset=series_offset,
                         base={t["id"]: t["base"] for t in spec["tasks"] if t.get("base")})
        p = folder / "outcomes.jsonl"
        if offset and p.exists():  # rebuild which tasks started/ended before the offset
            with open(p, "rb") as f:
                for line in f.read(offset).splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict):  # a damaged line was recorded when ingested
                        (b.ended if rec.get("ev") == "end" else b.started).add(rec.get("id"))
        return b

    # -- ingest ----------------------------------------------------------------------------
    def ingest(self, bundles) -> None:
        """Everything the bundles appended since the last ingest, committed at once."""
        t, c = time.perf_counter(), time.process_time()
        try:
            self._ingest(bundles)
        finally:
            self.seconds += time.perf_counter() - t
            self.cpu_seconds += time.process_time() - c

    def _ingest(self, bundles) -> None:
        batch = _Batch()
        offsets, series_offsets, parts, series_parts = [], [], [], []
        read = 0
        for b in bundles:
            chunk = complete_lines(b.dir / "outcomes.jsonl", b.offset, CHUNK_BYTES)
            read += len(chunk or b"")
            if chunk:
                rows = self._parse_fast(b, chunk, batch)
                if rows is None:
                    rows = self._parse(b, chunk, batch)
                if rows is not None and len(rows):
                    parts.append((self.res_dir / f"{b.id}-{b.offset:012d}.parquet", rows))
                b.offset += len(chunk)
                offsets.append((b.offset, b.id))
            chunk = complete_lines(b.dir / "series.jsonl", b.soffset)
            if chunk:
                srows = oc.series_rows(chunk)
                if srows:
                    spath = self.ser_dir / f"{b.id}-{b.soffset:012d}.parquet"
                    results.write_series(spath, srows, plain=self.plain)
                    series_parts.append(spath)
                b.soffset += len(chunk)
                series_offsets.append((b.soffset, b.id))
        if not (offsets or series_offsets):
            return
        for path, rows in parts:  # Parquet first: a crash before the commit re-writes them
            results.write_part(path, rows, self.param_names, plain=self.plain)
        # listed in the manifests before the commit: a done task's row is always visible
        partset.publish(self.res_dir, [path for path, _ in parts])
        partset.publish(self.ser_dir, series_parts)
        self.new_parts += len(parts) + len(series_parts)
        self._commit(batch, offsets, series_offsets)
        if read >= RELEASE_BYTES and time.monotonic() - self.t_release >= RELEASE_EVERY_S:
            memory.release()  # what Arrow and the Parquet writer freed goes back
            self.t_release = time.monotonic()

    def _commit(self, batch: _Batch, offsets, series_offsets) -> None:
        db = self.store.db
        spans = oc.spans([p[3] for p in batch.ok] + [[f[-1] for f in batch.fail]])
        with self.store.tx():
            if batch.ok and not batch.fail:  # only successes: running -> done, no scan
                self.store.moved(self.exp_id, spans, _DONE, oc.range_rows(batch.ok),
                                 "running", "done")
            elif spans:
                with self.store.counted(self.exp_id, ranges=spans):
                    if batch.ok:
                        db.executemany(_DONE, oc.range_rows(batch.ok))
                    oc.write_failures(db, batch.fail, batch.attempts)
            if offsets:
                db.executemany("UPDATE bundles SET ingested=? WHERE id=?", offsets)
            if series_offsets:
                db.executemany("UPDATE bundles SET series_ingested=? WHERE id=?", series_offsets)

    def result_rows(self, b: ActiveBundle, chunk: bytes) -> list[dict]:
        """The result rows of successful tasks in `chunk`, with nothing written (`pb repair`
        rebuilds lost rows with it)."""
        return self._parse(b, chunk, _Batch())

    def _parse_fast(self, b: ActiveBundle, chunk: bytes, batch: _Batch):
        """Arrow's JSON reader for big chunks; None sends the chunk down the line-by-line path."""
        if self.plain or (len(chunk) < (1 << 20) and chunk.count(b"\n") < 512):
            return None
        got = ingest_arrow.parse(b, chunk, b.run, self.param_names)
        if got is None:  # b is untouched: the line-by-line path starts afresh
            return None
        oks, failed, table, (n_dur, mean_dur) = got
        if oks:
            batch.ok.append(oks)
        for rec in failed:
            if not oc.valid_record(rec):
                b.ended.discard(rec["id"])
                b.torn.add(rec["id"])  # its line is damaged: the task re-runs
                self._event(b, "damaged-line", json.dumps(rec, default=str)[:200])
                continue
            self._fail_record(b, rec, batch)
        self._measured(len(oks[3]) if oks else 0, [mean_dur] if n_dur else [])
        return table

    def _parse(self, b: ActiveBundle, chunk: bytes, batch: _Batch) -> list[dict]:
        recs = self._records(b, chunk)
        rows, ptexts, durs, atts, rowids = [], [], [], [], []
        for rec in recs:
            if not oc.valid_record(rec):  # valid JSON, but not an outcome: the task re-runs
                text = json.dumps(rec, default=str)
                tid = oc.task_in_line(text.encode())
                if tid:
                    b.torn.add(tid)
                self._event(b, "damaged-line", text[:200])
                continue
            tid = rec.get("id")
            if tid not in b.tasks or rec.get("ev") != "end" or tid in b.ended:
                continue  # one end per task and bundle, whatever a worker repeated
            b.ended.add(tid)
            if not rec.get("ok"):
                self._fail_record(b, rec, batch)
                continue
            rowid, attempt, ptext = b.tasks[tid]
            t0, t1 = rec.get("t0"), rec.get("t1")
            atts.append(attempt)
            rowids.append(rowid)
            dur = (t1 - t0) if (t0 and t1) else None
            rows.append({"task_id": tid, "bundle": b.id, "run_id": b.run, "attempts": attempt,
                         "duration_s": dur, "host": rec.get("host"),
                         "node": rec.get("node"), "finished_at": t1,
                         "params": None, "metrics": rec.get("metrics") or {}})
            ptexts.append(ptext)
            if dur is not None:
                durs.append(dur)
        if ptexts:
            batch.ok.append((b.id, b.run, atts, rowids))
            for row, params in zip(rows, json.loads("[" + ",".join(ptexts) + "]")):
                row["params"] = params
        self._measured(len(rows), durs)
        return rows

    def _records(self, b: ActiveBundle, chunk: bytes) -> list:
        """The end lines of a chunk as parsed JSON (start lines only mark their task started);
        a torn line marks its task to re-run."""
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
            return json.loads(b"[" + b",".join(ends) + b"]")
        except ValueError:
            pass
        recs = []
        for line in ends:
            try:
                recs.append(json.loads(line))
            except ValueError:  # a torn write from a killed worker: that task must re-run
                tid = oc.task_in_line(line)
                if tid:
                    b.torn.add(tid)
                self._event(b, "torn-line", line[:200].decode("utf-8", "replace"))
        return recs

    def _measured(self, n_done: int, durs: list) -> None:
        self.done += n_done
        if durs:
            m = sum(durs) / len(durs)
            self.est = m if self.est is None else 0.7 * self.est + 0.3 * m

    def _event(self, b: ActiveBundle, kind: str, line: str) -> None:
        self.store.event(self.exp_id, b.run, kind, {"bundle": b.id, "line": line})

    # -- failures ----------------------------------------------------------------------------
    def _fail_record(self, b: ActiveBundle, rec: dict, batch: _Batch) -> None:
        self._fail(b, rec["id"], rec.get("kind") or "exception", rec.get("error") or "",
                   rec.get("traceback"), rec.get("t0"), rec.get("t1"), rec.get("host"),
                   oc.log_slice(rec.get("log")), batch, node=rec.get("node"))

    def _fail(self, b, tid, kind, error, tb, t0, t1, host, log, batch: _Batch,
              node=None) -> None:
        """A failed attempt: pending again while the retry rule allows, else failed."""
        rowid, attempt, _ = b.tasks[tid]
        # attempt numbers run on over `pb retry` / --rerun; each of those gives a fresh budget
        retry = attempt - b.base.get(tid, 0) <= self.policy.retries and kind in self.retry_on
        if retry:
            self.requeued += 1
        else:
            self.failed += 1
        batch.fail.append((PENDING if retry else T_FAILED, attempt, b.id, b.run, t0, t1, host,
                           node, log, kind, error[:4000],
                           causes.cause(kind, error, tb, self.root), rowid))
        batch.attempts.append((rowid, attempt, b.run, b.id, kind, error[:4000],
                               (tb or "")[-8000:], t0, t1, host, node, log))

    def take_requeued(self) -> int:
        """Tasks sent back to pending by the retry rule since the last call."""
        n, self.requeued = self.requeued, 0
        return n

    # -- the end of a bundle -----------------------------------------------------------------
    def finalize(self, b: ActiveBundle, failed: bool, cause: str | None = None,
                 kind: str | None = None, state: str | None = None) -> int:
        """The bundle is over (`failed`: it stopped with `cause`): its last outcomes are
        ingested; tasks without an end are charged with `kind` (when they were mid-run in a
        failed bundle that is theirs to blame) or requeued. Returns how many were requeued."""
        while True:  # every complete line, CHUNK_BYTES at a time
            before = b.offset
            self.ingest([b])
            if b.offset == before:
                break
        missing = b.ended.missing(b.tasks)
        path = b.dir / "outcomes.jsonl"
        tail = b""
        if path.exists():
            with open(path, "rb") as f:
                f.seek(b.offset)
                tail = f.read()
        if tail.strip():
            tid = oc.task_in_line(tail)
            if tid:
                b.torn.add(tid)
        batch, requeue = _Batch(), []
        # which of them were mid-run: the start lines are read only now (starts.jsonl)
        started = (b.started | oc.started_ids(b.dir)) if missing and failed and \
            not b.inherited else b.started
        for tid in missing:
            if tid in started and tid not in b.torn and not b.inherited and failed:
                t0, log = oc.started_at(b.dir, tid)  # its output up to the end of the logs
                self._fail(b, tid, kind or "lost", cause or "its bundle stopped", None,
                           t0, time.time(), None, log, batch)
            else:
                requeue.append((b.tasks[tid][0],))
        if b.torn & set(missing):
            self.store.event(self.exp_id, b.run, "requeued-torn",
                             {"bundle": b.id, "tasks": sorted(b.torn & set(missing))})
        final = state or ("failed" if failed or missing else "finished")
        db = self.store.db
        touched = [f[-1] for f in batch.fail] + [r[0] for r in requeue]
        with self.store.tx(), self.store.counted(self.exp_id, rowids=touched):
            oc.write_failures(db, batch.fail, batch.attempts)
            if requeue:
                db.executemany("UPDATE tasks SET state='pending' WHERE rowid=? AND "
                               "state='running'", requeue)
            db.execute("UPDATE bundles SET state=?, ended=?, cause=? WHERE id=?",
                       (final, time.time(), cause, b.id))
        return len(requeue)

    # -- the folders of bundles that are over -------------------------------------------------
    def retire(self, bids=None) -> int:
        """Replace the folders of finalized bundles by their compacted logs (store/bundlelogs);
        None: every bundle of the experiment that is over and still has a folder (what a killed
        run left). Never fails a run: a folder left is retired next time."""
        if bids is None:
            bids = [r[0] for r in self.store.db.execute(
                "SELECT id FROM bundles WHERE exp=? AND state NOT IN ('created','submitted')",
                (self.exp_id,))]
        try:
            return bundlelogs.retire(self.store.dir, bids)
        except OSError as e:
            self.store.event(self.exp_id, self.run_id, "retire-failed", str(e))
            return 0

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and truncate it (the end of a run): a
        WAL that keeps the size of its largest burst is dead weight in the store."""
        import sqlite3
        try:
            self.store.release()  # the free pages first (store/stateindex.py)
            self.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # busy (another reader): SQLite checkpoints later anyway

    # -- compaction --------------------------------------------------------------------------
    def compact(self, full: bool = False) -> None:
        """Merge committed parts (tiered, throttled), so a long run keeps few files."""
        now = time.time()
        if not full and now - self.t_compact < partset.EVERY_S and \
                self.new_parts < 2 * partset.LEVEL0:
            return
        self.t_compact, self.new_parts = now, 0
        db = self.store.db
        try:
            # a small run's parts (plain) merge by their number only: no Arrow for a few
            results.compact(self.res_dir, committed=partset.committed_filter(db), full=full,
                            by_size=not self.plain)
            results.compact(self.ser_dir, min_parts=64, newest_per_task=False, full=full,
                            committed=partset.committed_filter(db, "series_ingested"),
                            by_size=not self.plain)
        except Exception as e:  # compaction is an optimisation; never lose a run over it
            self.store.event(self.exp_id, self.run_id, "compact-failed", str(e))
        memory.release()  # DuckDB's merge and the Parquet reads: their freed pages go back
