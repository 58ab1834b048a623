"""The harvest of runs on SLURM (`pb harvest`, the background harvester, `pb run --wait`).

One round: ONE batched status query, pull the outputs of the bundles that are over, ingest only
checksummed outcomes (done.json's sha256, or the cluster-side sha256 of a bundle that died),
charge or requeue the tasks (the Ingestor's rules), and resubmit what is pending (retries). With
wait=True rounds repeat until every task is done or failed. Offsets are committed with the task
states they change, so a harvest killed at any point, or run twice, loses and duplicates nothing.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from pushbutton.core.errors import BusyError, PushbuttonError
from pushbutton.execution import factory
from pushbutton.execution.backends.base import FAILED, FINISHED, BundleState
from pushbutton.execution.slurm.adopt import adopt_unsent
from pushbutton.execution.slurm.runs import load_meta, save_meta
from pushbutton.execution.slurm.submit import submit_pending
from pushbutton.harvest import outcomes as oc
from pushbutton.harvest.ingest import Ingestor, RunPolicy
from pushbutton.store.database import DONE, FAILED as T_FAILED, PENDING, Store
from pushbutton.store.lock import ExperimentLock

MAX_STALLS = 3  # bundles in a row that fail before starting any task
GIVE_UP_S = 1800.0  # a waiting harvest stops after this long without an answer from SLURM


def harvest(store: Store, name: str | None = None, wait: bool = False, progress=None,
            timeout: float | None = None) -> dict:
    """Harvest one experiment by name, or every experiment with bundles on a scheduler."""
    if name:
        eid = store.experiment(name)
        if eid is None:
            raise PushbuttonError(f"no experiment named '{name}' in {store.root}")
        todo = [(eid, name)]
    else:
        todo = store.db.execute("SELECT DISTINCT e.id, e.name FROM experiments e JOIN bundles b "
                                "ON b.exp=e.id WHERE b.backend='slurm' AND b.state IN "
                                "('created','submitted')").fetchall()
    out = {}
    for eid, ename in todo:
        try:
            out[ename] = sync(store, eid, wait=wait, progress=progress, timeout=timeout)
        except BusyError as e:  # a background harvester (or a driver) is on it already
            out[ename] = {"status": "busy", "counts": store.counts(eid), "warnings": [
                str(e).split(";")[0] + "; it brings the results in (follow: pb watch)"]}
    return out


def sync(store: Store, eid: int, backend=None, wait: bool = False, progress=None,
         lock: bool = True, timeout: float | None = None) -> dict:
    """One harvest round (or rounds until everything is over, with wait). Returns a summary.
    lock=False: the caller holds the experiment's lock (`pb run --wait`)."""
    meta = load_meta(store, eid)
    if meta is None:
        return {"status": "nothing-submitted", "counts": store.counts(eid)}
    if wait:
        _warm_up()
    held = _lock(store, eid, meta["name"], wait, timeout) if lock else None
    own_backend = backend is None
    try:
        meta = load_meta(store, eid) or meta  # as the last holder of the lock left it
        if backend is None:
            backend = factory.backend_for(meta["target"], store, sbatch=meta["sbatch"],
                                          resources=RunPolicy.from_meta(meta),
                                          remote_base=meta.get("base"))
        return _Harvest(store, eid, meta, backend, wait, progress, timeout).run()
    finally:
        if own_backend and backend is not None:
            backend.close()
        if held:
            held.release()


def _lock(store: Store, eid: int, name: str, wait: bool, timeout: float | None):
    """The experiment's lock; with wait, wait for another harvester (or driver) to finish."""
    deadline = None if timeout is None else time.time() + timeout
    while True:
        try:
            return ExperimentLock(store, eid, name).acquire()
        except BusyError:
            if not wait or (deadline is not None and time.time() > deadline):
                raise
            time.sleep(0.05)


def _warm_up():
    """Import what ingesting needs (pyarrow, ~0.5 s) while SLURM is still scheduling."""
    import threading

    def imports():
        try:
            import pyarrow.parquet  # noqa: F401
            import pandas  # noqa: F401  (pyarrow's array inference loads it)
        except Exception:
            pass
    th = threading.Thread(target=imports, daemon=True)
    th.start()
    return th


def _active(store: Store, eid: int) -> list[tuple]:
    return store.db.execute("SELECT id, handle, dir, ingested, series_ingested, run, state "
                            "FROM bundles WHERE exp=? AND backend='slurm' AND state IN "
                            "('created','submitted') ORDER BY id", (eid,)).fetchall()


def verified(backend, store: Store, bids: list[str]) -> set[str]:
    """Bundles whose local outcomes.jsonl is complete: it matches done.json's sha256, or (for a
    bundle that died without done.json) the sha256 computed where it ran."""
    ok, need_remote = set(), []
    for b in bids:
        d = store.dir / "bundles" / b
        done = d / "done.json"
        if done.exists():
            try:
                meta = json.loads(done.read_text())
            except ValueError:
                continue  # a torn copy: pull it again next time
            if _sha256(d / "outcomes.jsonl")[0] == meta.get("sha256"):
                ok.add(b)
        elif backend.remote:
            need_remote.append(b)
        else:
            ok.add(b)  # local and over: the file is what it is
    if need_remote:
        sums = backend.checksums(need_remote)
        ok.update(b for b in need_remote
                  if b in sums and sums[b] == _sha256(store.dir / "bundles" / b /
                                                      "outcomes.jsonl"))
    return ok


def _sha256(path: Path) -> tuple[str, int]:
    data = path.read_bytes() if path.exists() else b""
    return hashlib.sha256(data).hexdigest(), len(data)


class _Harvest:
    """Harvest rounds for one experiment, holding what carries from round to round (the poll
    pace and its back-off, warnings, counts)."""

    def __init__(self, store: Store, eid: int, meta: dict, backend, wait: bool, progress,
                 timeout: float | None):
        self.store, self.eid, self.meta, self.backend = store, eid, meta, backend
        self.wait, self.progress, self.timeout = wait, progress, timeout
        self.run_id = meta["run"]
        self.ingestor = Ingestor(store, eid, meta["name"], self.run_id,
                                 RunPolicy.from_meta(meta))
        self.interval = backend.target.poll_interval
        self.fast = not backend.remote  # local-slurm: done.json files are visible without a query
        self.t_start, self.last_poll, self.last_adopt = time.time(), 0.0, 0.0
        self.delay = self.interval
        self.ingested = self.errors = 0
        self.failing_since: float | None = None
        self.warnings: list[str] = []

    def run(self) -> dict:
        while True:
            status = self.round()
            if status:
                break
            time.sleep(0.05 if self.fast else max(0.2, min(self.delay, self.interval)))
        counts = self.store.counts(self.eid)
        return {"status": status, "bundles_ingested": self.ingested, "counts": counts,
                "done": counts[DONE], "failed": counts[T_FAILED], "poll_errors": self.errors,
                "warnings": self.warnings[-3:], "seconds": time.time() - self.t_start}

    def round(self) -> str | None:
        """One round; returns the harvest's status when it is to stop, else None."""
        rows = [r for r in self._adopt(_active(self.store, self.eid)) if r[1]]
        by_handle = {r[1]: r for r in rows}
        states = self._states(rows, by_handle)
        if states is None:
            return "unreachable"  # the jobs go on; `pb harvest` picks them up later
        over = {h: st for h, st in states.items() if st.state in (FINISHED, FAILED)}
        if over:
            self._land(over, by_handle)
        return self._resubmit_and_judge()

    def _adopt(self, rows: list[tuple]) -> list[tuple]:
        """A submit that died before recording SLURM's answer: adopt what SLURM accepted."""
        unsent = any(not r[1] for r in rows)
        if unsent and (not self.wait or time.time() - self.last_adopt >= self.delay):
            self.last_adopt = time.time()
            if adopt_unsent(self.backend, self.store, self.eid)["unresolved"]:
                self.warnings.append("could not ask SLURM about bundles whose submission was "
                                     "cut short; asking again next round (never submitted "
                                     "twice)")
            rows = _active(self.store, self.eid)
        return rows

    def _states(self, rows, by_handle) -> dict[str, BundleState] | None:
        """The bundles' states: a cheap look at done.json files between polls (local-slurm),
        else one batched query; None once SLURM has not answered for GIVE_UP_S."""
        states: dict[str, BundleState] = {}
        now, crashed = time.time(), False
        if rows and self.fast and self.wait and now - self.last_poll < self.delay:
            done_now, crashed = self.backend.done_bundles([r[0] for r in rows])
            handle_of = {r[0]: r[1] for r in rows}
            states = {handle_of[bid]: BundleState(FINISHED) for bid in done_now}
        if rows and (now - self.last_poll >= self.delay or not self.wait or
                     (crashed and not states)):
            states = self.backend.poll(list(by_handle))
            self.last_poll = time.time()
            if self.backend.last_poll_error:
                self.errors += 1
                self.delay = min(self.delay * 2, 60.0)  # back off while the controller struggles
                self.warnings.append(self.backend.last_poll_error)
                self.failing_since = self.failing_since or time.time()
                if self.wait and time.time() - self.failing_since > GIVE_UP_S:
                    return None
            else:
                self.delay, self.failing_since = self.interval, None
        return states

    def _land(self, over: dict[str, BundleState], by_handle: dict) -> None:
        """Pull, verify and ingest the bundles that are over."""
        bids = [by_handle[h][0] for h in over]
        try:
            self.backend.collect_many(bids)
        except PushbuttonError as e:
            self.warnings.append(f"pulling results failed (will resume): {e}")
        good = verified(self.backend, self.store, bids)
        landed = []
        for h, st in over.items():
            bid, _, d, off, soff, b_run, _ = by_handle[h]
            if bid not in good:
                continue
            b = self.ingestor.load(bid, Path(d), off or 0, soff or 0, run=b_run or self.run_id)
            b.handle = h
            if st.kind in ("preempted",):
                b.inherited = True  # not the task's fault: requeue without an attempt
            self.ingestor.finalize(b, st.state == FAILED, st.cause, st.kind)
            landed.append(bid)
            self.ingested += 1
            self._count_stall(b, st)
            if st.state == FAILED:
                self.store.event(self.eid, b_run, "bundle-failed",
                                 {"bundle": bid, "cause": st.cause, "kind": st.kind})
        self.ingestor.retire(landed)  # the harvested copies: compacted logs from now on
        self.ingestor.compact()  # throttled: a long harvest keeps few Parquet files

    def _count_stall(self, b, st: BundleState) -> None:
        """Bundles that fail before any task starts, in a row (a broken target)."""
        meta = self.meta
        if st.state == FAILED and not (b.ended or b.started or oc.started_ids(b.dir)):
            meta["stalls"] = meta.get("stalls", 0) + 1
            meta["stall_cause"] = st.cause
            save_meta(self.store, self.eid, meta)
        elif b.ended and meta.get("stalls"):
            meta["stalls"] = 0
            save_meta(self.store, self.eid, meta)

    def _resubmit_and_judge(self) -> str | None:
        """Submit what is pending (retries, the rest of a queue quota); say whether to stop."""
        store, eid, meta = self.store, self.eid, self.meta
        stalled = meta.get("stalls", 0) >= MAX_STALLS
        live = (store.db.execute("SELECT status FROM runs WHERE id=?", (self.run_id,))
                .fetchone() or ("",))[0] == "running"
        if store.counts(eid)[PENDING] and not stalled and live:
            submit_pending(self.backend, store, eid, self.run_id, meta)
        left = _active(store, eid)
        counts = store.counts(eid)
        if self.progress:
            self.progress(counts[DONE] + counts[T_FAILED], sum(counts.values()),
                          counts[T_FAILED], time.time() - self.t_start)
        if not left and not counts[PENDING]:
            self._finish()
            return "finished"
        if not left and stalled:  # the jobs die before any task starts: stop resubmitting
            self.warnings.append(
                f"{meta['stalls']} bundles failed before any task started (last: "
                f"{meta.get('stall_cause')}); the tasks stay pending. Fix the target "
                f"(`pb targets check {meta['target']}`), then `pb run` again")
            if live:
                store.end_run(self.run_id, "stalled")
            return "stalled"
        if not left and not live:  # its submission failed or it was cancelled: nothing to do
            return "stopped"
        if not self.wait:
            return "running"
        if self.timeout is not None and time.time() - self.t_start > self.timeout:
            return "timeout"
        return None

    def _finish(self) -> None:
        store, eid, run_id = self.store, self.eid, self.run_id
        row = store.db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
        if row and row[0] == "running":
            store.end_run(run_id, "finished")
        with store.tx():  # earlier runs whose bundles this harvest finished are over as well
            store.db.execute("UPDATE runs SET status='finished', ended=? WHERE exp=? AND "
                             "status='running' AND id<?", (time.time(), eid, run_id))
        self.ingestor.compact(full=True)
        self.ingestor.retire()
        self.ingestor.checkpoint()
