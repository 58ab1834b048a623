"""Idempotent submission to SLURM: a bundle's job name is recorded with the bundle (state
'created', no job id yet) BEFORE sbatch runs, so a driver that dies between SLURM accepting an
array and recording its job id leaves an intent that the next holder of the experiment's lock
resolves: the job is looked up by name and adopted, and only a job SLURM never saw is
resubmitted. Nothing is ever submitted twice, and an adopted job can be cancelled."""
from __future__ import annotations

import contextlib
import time

from pushbutton.store.database import Store


def adopt_unsent(backend, store: Store, eid: int) -> dict:
    """Resolve the bundles of this experiment that were recorded but have no job id: adopt the
    job SLURM knows by their name (or, for a job it has forgotten, the one whose files are in
    the bundle folder), or put their tasks back to pending when no job ever ran. A failed query
    leaves them as they are (asked again next time). Call with the experiment's lock held."""
    db = store.db
    rows = db.execute("SELECT b.id, b.job, r.started FROM bundles b LEFT JOIN runs r ON "
                      "r.id = b.run WHERE b.exp=? AND b.backend='slurm' AND b.state='created' "
                      "AND (b.handle IS NULL OR b.handle='') AND coalesce(b.target, "
                      "'local-slurm')=? ORDER BY b.rowid",
                      (eid, backend.target.name)).fetchall()
    out = {"adopted": 0, "never_submitted": 0, "unresolved": 0}
    if not rows:
        return out
    groups: dict[str, list[str]] = {}
    legacy = []
    for bid, job, _ in rows:
        (groups.setdefault(job, []) if job else legacy).append(bid)
    since = min((t for *_, t in rows if t), default=None)
    found = backend.find_jobs(list(groups), since) if groups else {}
    if found is None:
        out["unresolved"] = len(rows) - len(legacy)
        groups = {}
        found = {}
    lost = {n: b for n, b in groups.items() if n not in found}
    ran = backend.started_bundles([b for bs in lost.values() for b in bs]) if lost else set()
    adopt, never = {}, list(legacy)
    for name, bids in groups.items():
        if name in found:
            adopt[name] = (found[name], bids)
        elif ran is None:
            out["unresolved"] += len(bids)
        elif any(b in ran for b in bids):
            adopt[name] = ("0", bids)  # it ran and SLURM forgot it: the folders tell the rest
        else:
            never += bids
    now = time.time()
    # the never-submitted bundles' tasks go back to pending: counted again if there are any
    with store.tx(), (store.counted(eid) if never else contextlib.nullcontext()):
        for name, (job, bids) in adopt.items():
            db.executemany("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE "
                           "id=? AND state='created'",
                           ((f"{job}_{j}:{b}", now, b) for j, b in enumerate(bids)))
            store.event(eid, None, "slurm-adopted", {"job": job, "name": name,
                                                     "bundles": len(bids)})
            out["adopted"] += len(bids)
        for b in never:
            db.execute("UPDATE tasks SET state='pending' WHERE bundle=? AND state='running'", (b,))
            db.execute("UPDATE bundles SET state='failed', cause=? WHERE id=?",
                       ("never submitted", b))
        out["never_submitted"] = len(never)
    return out
