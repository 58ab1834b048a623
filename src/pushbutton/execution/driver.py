"""The driver: pending tasks -> bundles -> backend -> the Ingestor -> retry decisions.

Crash-safety rests on three facts: (1) a task is assigned to a bundle in the same transaction
that records the bundle; (2) outcomes are ingested from committed offsets (harvest/ingest.py),
so a re-ingest rewrites, never duplicates; (3) whatever a dead driver left running is recovered
from the bundle folders before anything new is scheduled.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from pushbutton.core import memory
from pushbutton.execution import bundling
from pushbutton.execution.backends.base import FAILED, FINISHED, Backend, BundleRef
from pushbutton.harvest.ingest import ActiveBundle, Ingestor, RunPolicy
from pushbutton.harvest.outcomes import ranges
from pushbutton.store.database import DONE, FAILED as T_FAILED, Store
from pushbutton.store import walbound

SMALL_RUN = 20_000  # a local run of up to this many points imports no pyarrow (see small_run)


def small_run(exp, target: str | None) -> bool:
    """Whether a run is small enough that its results are written without pyarrow
    (store/parquet_plain.py): its import and numpy's cost more CPU than the line-by-line
    ingest of this many outcomes. Local runs only; the space's size bound, before filters.
    PB_SMALL_RUN changes the bound (tests run both paths on small spaces with it)."""
    try:
        bound = int(os.environ.get("PB_SMALL_RUN", SMALL_RUN))
    except ValueError:
        bound = SMALL_RUN
    return target in (None, "", "local") and exp.space._bound <= bound


class Driver:
    """Schedules one experiment's pending tasks on a backend; the Ingestor records outcomes."""

    def __init__(self, store: Store, exp, exp_id: int, backend: Backend, run_id: int,
                 target: str = "local", on_progress=None, poll_s: float = 0.2, feed=None,
                 on_registering=None, light: bool = False):
        """feed: the registration of the rest of the space, streaming while this runs
        (store/registration.py); on_registering(done, total) follows it. light: a small run
        (small_run): outcomes ingested line by line and parts written without pyarrow."""
        # before the run's threads: Arrow on malloc, two arenas (core/memory)
        memory.tame(arrow=not light)
        self.store, self.exp, self.exp_id = store, exp, exp_id
        self.feed, self.on_registering = feed, on_registering
        self._fed, self._feed_over = 0, False
        self.backend, self.run_id, self.target = backend, run_id, target
        self.on_progress = on_progress
        self.poll_s = poll_s
        self.policy = RunPolicy.of(exp)
        self.ingestor = Ingestor(store, exp_id, exp.name, run_id, self.policy)
        self.wal = walbound.Bound(store.db, store.dir / "state.sqlite")
        self.ingestor.plain = light
        self.active: dict[str, ActiveBundle] = {}
        self.seq = store.db.execute("SELECT count(*) FROM bundles WHERE exp=?",
                                    (exp_id,)).fetchone()[0]
        self.stop = False
        self.over: list[str] = []  # finalized bundles whose folders are still there
        self.t_retire = time.time()

    # -- recovery ------------------------------------------------------------------------
    def recover(self):
        """Bundles left by a driver that died: ingest what they wrote, requeue the rest."""
        db = self.store.db
        rows = db.execute("SELECT id, dir, ingested, series_ingested, backend, run FROM bundles "
                          "WHERE exp=? AND state IN ('created','submitted')",
                          (self.exp_id,)).fetchall()
        for bid, d, off, soff, backend, run in rows:
            if backend not in ("local", "dask"):
                continue  # SLURM bundles keep running; the harvest handles them
            # local workers die with their driver; a Dask cluster drops a dead client's futures
            b = self.ingestor.load(bid, Path(d), off or 0, soff or 0, run=self.run_id)
            b.inherited = True
            self.ingestor.finalize(b, True, "its driver stopped", "lost", state="interrupted")
        with self.store.tx(), self.store.counted(self.exp_id):
            db.execute("UPDATE tasks SET state='pending' WHERE exp=? AND state IN "
                       "('running','cancelled') AND state != 'done' AND (bundle IS NULL OR "
                       "bundle NOT IN (SELECT id FROM bundles WHERE exp=? AND state IN "
                       "('created','submitted')))",
                       (self.exp_id, self.exp_id))

    # -- scheduling ----------------------------------------------------------------------
    def pending_count(self) -> int:
        return self.store.db.execute(
            "SELECT count(*) FROM tasks WHERE exp=? AND state='pending' AND idx IS NOT NULL "
            "AND state != 'done'",  # (the term the partial state index needs: stateindex.py)
            (self.exp_id,)).fetchone()[0]

    def fill(self, remaining: int) -> int:
        """Create and submit bundles while the backend has room; returns tasks still pending."""
        cap = self.backend.capacity()
        workers = cap or 1
        while remaining > 0 and not self.stop and (cap is None or len(self.active) < cap):
            size = bundling.guided_size(remaining, workers, self.ingestor.est,
                                        fixed=self.policy.bundle_size)
            made = self._make_bundle(size)
            if not made:
                return 0
            remaining -= made
        return remaining

    def _make_bundle(self, size: int) -> int:
        db = self.store.db
        rows = db.execute("SELECT rowid, id, params, attempts, attempt0, gen FROM tasks WHERE "
                          "exp=? AND state='pending' AND state != 'done' AND idx IS NOT NULL "
                          "ORDER BY idx LIMIT ?",
                          (self.exp_id, size)).fetchall()
        if not rows:
            return 0
        self.seq += 1
        bid = f"e{self.exp_id}-r{self.run_id}-{self.seq:06d}"
        d = self.store.dir / "bundles" / bid
        d.mkdir(parents=True, exist_ok=True)
        tasks, base = self._write_bundle(bid, d, rows)
        spans = ranges([r[0] for r in rows])
        with self.store.tx(), self.store.counted(self.exp_id, ranges=spans, becomes="running"):
            db.executemany("UPDATE tasks SET state='running', bundle=?, run=?, room=NULL "
                           "WHERE rowid BETWEEN ? AND ?",
                           ((bid, self.run_id, a, z) for a, z in spans))
            db.execute("INSERT INTO bundles(id, exp, run, backend, state, n_tasks, dir, target) "
                       "VALUES (?,?,?,?,?,?,?,?)", (bid, self.exp_id, self.run_id,
                                                    self.backend.name, "created", len(rows),
                                                    str(d), self.target))
        p = self.policy
        ref = BundleRef(bid, d, len(rows), p.timeout, p.memory_mb, p.cpus)
        handle = self.backend.submit([ref])[0]
        db.execute("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE id=?",
                   (handle, time.time(), bid))
        self.active[bid] = ActiveBundle(bid, d, tasks, run=self.run_id, handle=handle,
                                        base=base)
        return len(rows)

    def _write_bundle(self, bid: str, d: Path, rows) -> tuple[dict, dict]:
        """bundle.json for these task rows; returns (tasks, retry-budget bases) as ingest
        keeps them."""
        tasks, items, base = {}, [], {}
        for rowid, tid, params_json, attempts, attempt0, gen in rows:
            tasks[tid] = (rowid, attempts + 1, params_json)
            items.append('{"id":"%s","params":%s,"attempt":%d%s}' % (
                tid, params_json, attempts + 1, lineage_fields(attempt0, gen)))
            if attempt0:
                base[tid] = attempt0
        spec = {"bundle": bid, "experiment": self.exp.name, "run": self.run_id,
                "root": str(self.exp.root), "sys_path": self.exp.sys_path,
                "call": self.exp.call, "timeout": self.policy.timeout,
                "memory_mb": self.policy.memory_mb,
                "task_root": str(self.store.dir / "tasks")}
        # the task list is spliced in as text: the parameters are already canonical JSON
        text = json.dumps(spec)[:-1] + ', "tasks": [' + ",".join(items) + "]}"
        tmp = d / ".bundle.json.tmp"
        tmp.write_text(text)
        os.replace(tmp, d / "bundle.json")
        return tasks, base

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict:
        self.recover()
        self.ingestor.take_requeued()
        remaining = self.pending_count()
        if self.feed is not None:  # the rest of the space registers while tasks run
            self._fed = self.feed.inserted
            self.feed.stream()
        counts = self.store.counts(self.exp_id)
        self.total = remaining + counts[DONE] + counts[T_FAILED]
        self.already = self.total - remaining
        if self.feed is not None:  # the space's size while its registration goes on
            self.total = self.feed.expected
        self.t_start = time.time()
        self._progress()  # first: what was done before this run (a rate counts this run's only)
        old = signal.signal(signal.SIGTERM, self._on_term) if _main_thread() else None
        status = "finished"
        ckpt = self.store.checkpointing().start()  # off the ingest's commits
        try:
            status = self._loop(remaining)
        except KeyboardInterrupt:
            status = "interrupted"
            self._stop_feed()
            self._cancel_all(interrupted=True)
            raise
        finally:
            self._stop_feed()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
            self.backend.close()
            ckpt.stop()
            self.store.end_run(self.run_id, status)
            self.ingestor.compact(full=True)
            self.ingestor.retire()  # this run's and any an earlier, killed run left
            self.ingestor.checkpoint()
        self._progress()
        ing = self.ingestor
        return {"status": status, "done": ing.done, "failed": ing.failed,
                "seconds": time.time() - self.t_start, "ingest_seconds": ing.seconds,
                "ingest_cpu_seconds": ing.cpu_seconds}

    def _loop(self, remaining: int) -> str:
        """Submit, poll, hand over what ended, refill; until nothing is active (or a stop)."""
        last_tail = time.time()
        remaining = self.fill(remaining)
        while self.active or self._feeding():
            if self.active:
                self.backend.wait(self.poll_s)
            else:  # every registered task is done: wait for the next chunk
                self.feed.wait(self.poll_s)
            remaining += self._take_fed()
            states = self.backend.poll([b.handle for b in self.active.values()])
            # running bundles are tailed once a second (fewer, larger Parquet parts);
            # finished ones are ingested at once by finalize
            if time.time() - last_tail >= 1.0:
                self.ingestor.ingest(list(self.active.values()))
                last_tail = time.time()
            for b in list(self.active.values()):
                st = states.get(b.handle)
                if st and st.state in (FINISHED, FAILED):
                    remaining += self.ingestor.finalize(b, st.state == FAILED, st.cause,
                                                        st.kind)
                    del self.active[b.id]
                    self.over.append(b.id)
            if len(self.over) >= 32 or (self.over and time.time() - self.t_retire >= 10):
                self.ingestor.retire(self.over)  # the store does not grow with the run
                self.over, self.t_retire = [], time.time()
            remaining += self.ingestor.take_requeued()
            self.ingestor.compact()
            self.wal.check()  # the write-ahead log kept under a bound (store/walbound.py)
            if self.stop:
                self._stop_feed()
                self._cancel_all()
                return "cancelled"
            remaining = self.fill(remaining)
            self._progress()
        return "finished"

    # -- a registration streaming meanwhile ---------------------------------------------------
    def _feeding(self) -> bool:
        return self.feed is not None and not self._feed_over

    def _take_fed(self) -> int:
        """Tasks the registration added since the last look (all pending); its error, if any,
        stops the run."""
        feed = self.feed
        if feed is None or self._feed_over:
            return 0
        if feed.error is not None:  # e.g. a point that is not JSON: the run stops with it
            self._cancel_all(interrupted=True)
            feed.check()
        over = feed.finished.is_set()  # first: its last rows are counted before it is set
        new, self._fed = feed.inserted - self._fed, feed.inserted
        if self.on_registering is not None:
            self.on_registering(feed.next, feed.total)
        if over:  # every task known: the total as the store counts it
            self._feed_over = True
            self.total = sum(self.store.counts(self.exp_id).values())
        return new

    def _stop_feed(self):
        if self.feed is not None:
            self.feed.close()

    def _progress(self):
        if self.on_progress:
            ing = self.ingestor
            self.on_progress(self.already + ing.done + ing.failed, self.total, ing.failed,
                             time.time() - self.t_start)

    def _on_term(self, signum, frame):
        self.stop = True

    def _cancel_all(self, interrupted=False):
        handles = [b.handle for b in self.active.values()]
        if handles:
            self.backend.cancel(handles)
        for b in list(self.active.values()):
            b.inherited = True  # our own stop: mid-run tasks are not the tasks' fault
            self.ingestor.finalize(b, True, "cancelled", "cancelled",
                                   state="interrupted" if interrupted else "cancelled")
            del self.active[b.id]
        if not interrupted:
            with self.store.tx(), self.store.counted(self.exp_id):
                self.store.db.execute("UPDATE tasks SET state='cancelled' WHERE exp=? AND "
                                      "state IN ('pending','running') AND state != 'done'",
                                      (self.exp_id,))


def lineage_fields(attempt0, gen) -> str:
    """The extra fields of a bundle's task entry: `base` (attempts before this retry budget)
    and `gen` (the task folder's generation, one more after each --rerun), when not 0."""
    return (',"base":%d' % attempt0 if attempt0 else "") + (',"gen":%d' % gen if gen else "")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
