"""Whether a run recorded as 'running' still has something driving it.

A run is driven by the process holding its experiment's lock (`pb run`, the background
harvester, `pb harvest`), by a `pb run --detach` that is still starting, or, on a batch
scheduler, by its bundles that are out on the cluster. A run marked 'running' with none of these
had its driver killed (kill -9, a lost machine): readers show it as `interrupted` (the word a
driver stopped by Ctrl-C records), and the next driver of the experiment records it so.
Nothing here writes except `settle`; `pb status` and `pb history` only read.
"""
from __future__ import annotations

import json
import time

from pushbutton.store.lock import file_locked

INTERRUPTED = "interrupted"


def lock_held(store, eid: int) -> bool:
    """Another process holds the experiment's lock (read-only: creates no file)."""
    return file_locked(store.dir / "locks" / f"{eid}.lock")


def pushbutton_alive(pid) -> bool:
    """A live process with that pid that runs pushbutton (not a recycled pid)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return b"pushbutton" in f.read()
    except (OSError, ValueError, TypeError):
        return False


def detached_pid(store, eid: int) -> int | None:
    """The pid of a `pb run --detach` driver that is still starting (it drops its marker once
    it holds the lock and has recorded its run), or None."""
    try:
        pid = int((store.dir / "locks" / f"{eid}.detached").read_text())
    except (OSError, ValueError):
        return None
    return pid if pushbutton_alive(pid) else None


def out_on_scheduler(store, eid: int) -> bool:
    return store.db.execute("SELECT 1 FROM bundles WHERE exp=? AND backend='slurm' AND state "
                            "IN ('created','submitted') LIMIT 1", (eid,)).fetchone() is not None


def driven(store, eid: int) -> bool:
    return lock_held(store, eid) or detached_pid(store, eid) is not None or \
        out_on_scheduler(store, eid)


def dead_runs(store, eid: int | None = None, lock_is_ours: bool = False) -> list[int]:
    """Runs recorded 'running' that nothing drives any more."""
    q, args = "SELECT id, exp FROM runs WHERE status='running'", ()
    if eid is not None:
        q, args = q + " AND exp=?", (eid,)
    rows = store.db.execute(q, args).fetchall()
    out, verdict = [], {}
    for rid, exp in rows:
        if exp not in verdict:
            verdict[exp] = not (out_on_scheduler(store, exp) if lock_is_ours
                                else driven(store, exp))
        if verdict[exp]:
            out.append(rid)
    if out and not lock_is_ours:  # read again: a driver may have ended its run meanwhile
        marks = ",".join("?" * len(out))
        out = [r for (r,) in store.db.execute(
            f"SELECT id FROM runs WHERE status='running' AND id IN ({marks})", out)]
    return out


def shown(store, runs: list[dict]) -> list[dict]:
    """Runs as readers show them: a dead 'running' one is `interrupted`."""
    if any(r.get("status") == "running" for r in runs):
        dead = set(dead_runs(store))
        for r in runs:
            if r.get("id") in dead:
                r["status"] = INTERRUPTED
    return runs


def settle(store, eid: int, status: str = INTERRUPTED, lock_is_ours: bool = False) -> list[int]:
    """Record the dead runs of the experiment as `status`, ended at their last activity."""
    dead = dead_runs(store, eid, lock_is_ours=lock_is_ours)
    for rid in dead:
        last = store.db.execute("SELECT max(t1) FROM tasks NOT INDEXED WHERE exp=? AND run=?",
                                (eid, rid)).fetchone()[0]
        with store.tx():
            store.db.execute("UPDATE runs SET status=?, ended=coalesce(ended, ?, started) "
                             "WHERE id=? AND status='running'", (status, last, rid))
            store.event(eid, rid, "run-" + status, {"why": "its driver is gone", "at": time.time()})
    return dead


def harvester_down(store, eid: int) -> bool:
    """Bundles are out on a scheduler, a background harvester was started for them, and no
    process harvests them now (`pb watch` / `pb harvest` start it again)."""
    if not out_on_scheduler(store, eid) or lock_held(store, eid):
        return False
    try:
        meta = json.loads((store.dir / "slurm-runs" / f"{eid}.json").read_text())
    except (OSError, ValueError):
        return False
    pid = meta.get("harvester")
    return bool(pid) and not pushbutton_alive(pid)
