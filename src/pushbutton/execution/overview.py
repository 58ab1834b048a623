"""What the store says about an experiment (`pb status`, `exp.status()`, the web UI): counts by
state, rate, ETA, the top causes of failures. Apart from operations.py (which re-exports it) so
that `pb status` imports only what it needs."""
from __future__ import annotations

import time

from pushbutton.execution.slurm import runs as slurm_runs
from pushbutton.store import liveness
from pushbutton.store.database import DONE, FAILED, PENDING, RUNNING, Store
from pushbutton.store.failures import top_causes
from pushbutton.store.integrity import state_counts
from pushbutton.store.lock import ExperimentLock


def detached_alive(store: Store, eid: int) -> bool:
    """A driver started with --detach that has not recorded its run yet (it is still starting
    up) counts as running, so `pb watch` right after `pb run --detach` waits for it."""
    return liveness.detached_pid(store, eid) is not None


def status(store: Store, eid: int, name: str, causes: int = 5) -> dict:
    """What the store says about the experiment. A reader: it harvests nothing (`pb harvest`
    or the background harvester bring in what a scheduler finished). Counts from a damaged
    state database are never shown (the same check for `pb status` and `exp.status()`).
    `causes`: how many of the top causes of failures to give (0: all)."""
    # who drives it is read before the counts: a detached --rerun resets its tasks before it
    # drops its "starting" marker, so counts read after a dropped marker are the new run's
    # (read the other way round, `pb watch` could see the old run's counts and no driver)
    lock = ExperimentLock(store, eid, name)
    starting = detached_alive(store, eid)
    active = lock.held_by_other() or starting
    counts = state_counts(store, eid)
    total = sum(counts.values())
    registering = _registering(store, eid, total)
    if registering:  # the tasks registered so far are not the total: the space's size is
        total = registering["total"]
    run = store.db.execute("SELECT id, started, ended, status, target FROM runs WHERE exp=? "
                           "ORDER BY id DESC LIMIT 1", (eid,)).fetchone()
    rate = eta = None
    if run:
        rid, started, ended, _, target = run
        done_run = store.db.execute(
            "SELECT coalesce(sum(n_tasks),0) FROM bundles WHERE exp=? AND run=? AND "
            "state='finished'", (eid, rid)).fetchone()[0]
        elapsed = (ended or time.time()) - started
        if elapsed > 0 and done_run:
            rate = done_run / elapsed
            left = counts[PENDING] + counts[RUNNING]
            eta = left / rate if (left and (active or target != "local")) else None
    top = top_causes(store, eid, limit=causes)
    harvesting = active or slurm_runs.harvester_alive(store, eid)
    started = _started(store, eid) if harvesting else 0
    run_status = run[3] if run else None
    if run_status == "running" and run[0] in liveness.dead_runs(store, eid):
        run_status = liveness.INTERRUPTED  # its driver is gone (killed, machine lost)
    if registering:
        registering["interrupted"] = not active
    return {"experiment": name, "total": total, "counts": counts,
            "registering": registering,
            "progress": (counts[DONE] + counts[FAILED]) / total if total else
            (0.0 if registering else 1.0),
            "driver": lock.holder() if active else None, "active": active,
            "starting": starting,
            "last_run": run[0] if run else None, "last_run_status": run_status,
            "harvester_down": liveness.harvester_down(store, eid),
            "out_on_slurm": slurm_runs.out_on_slurm(store, eid),
            "harvesting": harvesting,
            # of the tasks handed out (state running): those a worker is inside of now, and
            # those waiting in their bundles (on SLURM: not known here, counted as waiting)
            "started": min(started, counts[RUNNING]),
            "queued": counts[RUNNING] - min(started, counts[RUNNING]),
            "rate_per_s": rate, "eta_s": eta, "failures": top["kinds"], "causes": top}


def _registering(store: Store, eid: int, registered: int) -> dict | None:
    """A registration streamed in chunks that has not finished: the points registered so far
    (`registered` tasks), the space's size (None while a where filter is uncounted: `bound`
    points at most)."""
    from pushbutton.store.registration import state
    st = state(store.db, eid)
    if st is None:
        return None
    return {"points": st[1] or 0, "tasks": registered, "total": st[2]}


def _started(store: Store, eid: int) -> int:
    """Tasks a worker is running now: one per handed-out local or Dask bundle whose last
    outcome line is a start line (SLURM bundles' outcomes are on the cluster until harvested)."""
    from pushbutton.harvest.outcomes import runs_a_task
    rows = store.db.execute("SELECT dir FROM bundles WHERE exp=? AND state IN "
                            "('created','submitted') AND backend != 'slurm'", (eid,)).fetchall()
    return sum(1 for (d,) in rows if d and runs_a_task(d))
