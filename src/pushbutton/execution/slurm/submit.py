"""Fire-and-forget runs on a batch scheduler (SLURM): shipping the code and submitting bundles.

`pb run --on TARGET` calls `submit_experiment`: the code snapshot and the bundles are shipped,
SLURM accepts the job arrays, and it returns (the run's description is stored, runs.py). The
results come home by harvest rounds (sync.py: `pb harvest`, the background harvester, or
`pb run --wait`), which also call `submit_pending` for retries and the rest of a queue quota.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from pushbutton.core.errors import PushbuttonError
from pushbutton.core.files import atomic_write, cache_dir, rsync_excludes, write_json
from pushbutton.execution import bundling, factory, targets
from pushbutton.execution.backends.base import BundleRef
from pushbutton.execution.slurm import balance, recorded
from pushbutton.execution.slurm.adopt import adopt_unsent
from pushbutton.execution.slurm.backend import WORKER
from pushbutton.execution.slurm.runs import (auto_harvest, load_meta, out_on_slurm, safe_name,
                                             save_meta, spawn_harvester)
from pushbutton.harvest.ingest import RunPolicy
from pushbutton.store.database import PENDING, Store

UNKNOWN_MAX_TASKS = 1000  # tasks per bundle while no task duration has been measured
CHECK_TTL = 3600.0  # a target that passed `check` is not probed again for this long


def check_target(backend, store: Store) -> list:
    """targets.check, remembered per target for CHECK_TTL (a run after a broken setup is
    still caught: jobs that die before starting a task stop the resubmission)."""
    p = cache_dir() / f"checked-{safe_name(backend.target.name)}.json"
    key = json.dumps(backend.target.model_dump(exclude={"file"}), sort_keys=True, default=str)
    try:
        c = json.loads(p.read_text())
        if c.get("key") == key and time.time() - c.get("t", 0) < CHECK_TTL:
            return []
    except (OSError, ValueError):
        pass
    problems = targets.check(backend.target)
    if not problems:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            write_json(p, {"key": key, "t": time.time()}, indent=None)
        except OSError:
            pass
    return problems


def submit_experiment(backend, exp, eid: int, run_id: int, store: Store,
                      background: bool = True) -> dict:
    """Ship and submit every pending task of the experiment; return once SLURM accepted.
    background: start the background harvester where the target wants one (`pb run --wait`
    harvests itself instead)."""
    try:
        return _submit_experiment(backend, exp, eid, run_id, store, background)
    except BaseException:
        if not store.db.execute("SELECT count(*) FROM bundles WHERE run=? AND backend='slurm' "
                                "AND state='submitted'", (run_id,)).fetchone()[0]:
            store.end_run(run_id, "failed")  # nothing went out: this run is over
        raise  # else the harvest carries on


def _submit_experiment(backend, exp, eid, run_id, store, background) -> dict:
    problems = check_target(backend, store)
    if problems:  # a wrong target fails here, clearly, not as jobs that die on the cluster
        raise PushbuttonError("cannot run on target '%s':\n%s" % (
            backend.target.name, "\n".join(f"  {p.what}\n    fix: {p.fix}" for p in problems)))
    meta = run_meta(backend, exp, run_id)
    save_meta(store, eid, meta)
    pid = None
    if background and store.counts(eid)[PENDING] and auto_harvest(backend.target):
        # started first, so its start-up overlaps ours; it waits for our lock to go
        pid = spawn_harvester(store, exp.name)
        meta["harvester"] = pid  # `pb status` says when it is gone; watch/harvest restart it
        save_meta(store, eid, meta)
    if backend.remote:
        ship_code(backend, exp.root)
        meta["base"] = backend.base  # resolved once (~ expanded on the cluster)
        meta["remote_call"] = remote_call(backend, store, exp.call)
        save_meta(store, eid, meta)
    t0 = time.time()
    n_bundles, n_tasks, jobs = submit_pending(backend, store, eid, run_id, meta)
    store.event(eid, run_id, "slurm-submitted", {"bundles": n_bundles, "tasks": n_tasks,
                                                 "jobs": jobs, "target": backend.target.name})
    if not n_tasks and not out_on_slurm(store, eid):
        store.end_run(run_id, "finished")  # nothing was pending and nothing is out
    summary = {"status": "submitted", "run": run_id, "target": backend.target.name,
               "bundles": n_bundles, "tasks": n_tasks, "jobs": jobs, "submitted": n_tasks,
               "seconds": time.time() - t0, "counts": store.counts(eid),
               "message": _message(exp.name, backend.target.name, n_bundles, n_tasks, jobs,
                                   pid, background)}
    if pid:
        summary["harvester"] = pid
    return summary


def run_meta(backend, exp, run_id: int) -> dict:
    """The run's description, all that a later harvest needs (in another process)."""
    return {"name": exp.name, "target": backend.target.name, "run": run_id,
            "sbatch": list(backend.sbatch), "root": str(exp.root),
            "sys_path": list(exp.sys_path), "call": exp.call,
            **RunPolicy.of(exp).as_meta(), "gpus": backend.gpus,
            "submitted": time.time(), "stalls": 0}


def _message(name: str, target: str, n_bundles: int, n_tasks: int, jobs: list[str],
             harvester: int | None = None, background: bool = True) -> str:
    """What was submitted, and who brings the results in: the background harvester (then
    `pb watch` follows it), this process (`--wait`), or nobody until `pb harvest` (over SSH,
    where auto_harvest is off and `pb watch` would have nothing to follow)."""
    if not n_tasks:
        return f"{name}: nothing to submit (no pending tasks)"
    head = (f"{name}: submitted {n_tasks:,} task{'s' * (n_tasks != 1)} as {n_bundles:,} "
            f"bundle{'s' * (n_bundles != 1)} (SLURM job{'s' if len(jobs) > 1 else ''} "
            f"{', '.join(jobs) or '-'}) to '{target}'")
    if not background:
        return head + "\nwaiting for the results (Ctrl-C stops waiting, not the jobs)"
    if harvester:
        return (head + f"\nresults flow into the store in the background (pid {harvester})"
                f"\nfollow: pb watch {name}   stop: pb cancel {name}")
    return (head + f"\nresults: pb harvest {name} --wait   (no background harvester: "
            f"auto_harvest is off for '{target}')\nstop:    pb cancel {name}")


def ship_code(backend, root) -> None:
    """The code snapshot (incremental rsync) and the worker, to <base>/code and <base>. The
    files shipped are the project's files (core/files.project_files)."""
    sh = backend.shell
    sh.put(str(Path(root)) + "/", backend.code_dir + "/", delete=True,
           excludes=rsync_excludes())
    sh.put(WORKER, backend.worker)


def remote_call(backend, store: Store, call: dict) -> dict:
    """The call as the cluster runs it: a command's arguments that name files in the store's
    parrun/ folder (`pb parrun`'s runners) travel to <base>/parrun/ (staged in the mirror, which
    is pushed before sbatch), and a program that is this machine's Python becomes the target's
    `python`."""
    if call.get("kind") != "command":
        return call
    import shutil
    import sys

    def esc(a):
        return str(a).replace("{", "{{").replace("}", "}}")
    parrun = (store.dir / "parrun").resolve()
    argv = []
    for i, a in enumerate(call["argv"]):
        plain = a.replace("{{", "{").replace("}}", "}")
        p = Path(plain)
        if p.is_absolute() and p.parent.resolve() == parrun and p.is_file():
            (backend.mirror / "parrun").mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, backend.mirror / "parrun" / p.name)
            argv.append(esc(f"{backend.base}/parrun/{p.name}"))
        elif i == 0 and plain == sys.executable:
            argv.extend(esc(x) for x in backend.target.python_argv())
        else:
            argv.append(a)
    return dict(call, argv=argv)


def _remote_spec(spec: dict, backend, meta: dict) -> dict:
    """bundle.json as the cluster sees it: the code snapshot's paths instead of ours."""
    root = meta["root"]
    s = dict(spec)
    s["call"] = meta.get("remote_call") or s["call"]
    s["root"] = backend.code_dir
    s["sys_path"] = [backend.code_dir + p[len(root):] for p in meta["sys_path"]
                     if p == root or p.startswith(root.rstrip("/") + "/")]
    s["task_root"] = f"{backend.base}/tasks"
    return s


def _sizes(backend, store: Store, eid: int, n: int, meta: dict, quota: int,
           est: float | None) -> int:
    """Tasks per bundle: few enough jobs for the site limits, enough to fill the partition."""
    return bundle_size(backend.limits(), est, n, meta["cpus"], meta["bundle_size"], quota)


def mean_duration(store: Store, eid: int) -> float | None:
    """The mean recorded duration of the experiment's done tasks (None before the first one):
    from the results' Parquet parts, where done attempts keep their times (recorded.py)."""
    return recorded.mean_duration(store, eid)


def bundle_size(lim: dict, est: float | None, n: int, cpus: int, fixed: int, quota: int) -> int:
    """Tasks per bundle for `n` pending tasks under the site limits `lim` (also what
    `pb run --dry-run --on TARGET` shows)."""
    slots = max(1, lim["cpus"] // max(1, cpus or 1))
    min_bundles = min(slots, 1000)
    if est:
        min_bundles = max(1, min(min_bundles, math.ceil(n * est / 5.0)))
    max_bundles = max(1, min(lim["max_array"], quota))
    per = bundling.static_plan(n, est, max_bundles=max_bundles, min_bundles=min_bundles,
                               fixed=fixed)
    if est is None and not fixed:
        # no duration known yet: keep bundles moderate (progress, crash recovery, --time),
        # unless the site limits need bigger ones
        per = max(math.ceil(n / max_bundles), min(per, UNKNOWN_MAX_TASKS))
    return per


def submit_pending(backend, store: Store, eid: int, run_id: int, meta: dict):
    """Bundle the pending tasks (up to the queue quota) and submit them as job arrays.
    Returns (bundles, tasks, job ids)."""
    db = store.db
    n_pending = db.execute("SELECT count(*) FROM tasks WHERE exp=? AND state='pending' AND "
                           "state != 'done' AND idx IS NOT NULL", (eid,)).fetchone()[0]
    if not n_pending:
        return 0, 0, []
    quota = max(0, backend.capacity() - out_on_slurm(store, eid))
    if quota == 0:
        return 0, 0, []
    how = backend.target.plan
    # read once per round: the measured duration sizes the bundles, the times deal them
    rec = recorded.read(store, eid, meta["name"], ids=how != "contiguous")
    per = _sizes(backend, store, eid, n_pending, meta, quota, rec.mean)
    rows = db.execute("SELECT rowid, id, params, attempts, attempt0, gen FROM tasks WHERE "
                      "exp=? AND state='pending' AND state != 'done' AND idx IS NOT NULL "
                      "ORDER BY idx LIMIT ?",
                      (eid, per * quota)).fetchall()
    groups = balance.plan(store, eid, meta["name"], rows, per, how, rec)[0]
    made = _stage_bundles(backend, store, eid, run_id, meta, groups)
    refs = [ref for ref, _ in made]
    label = f"pb-{meta['name']}"
    names = backend.plan_jobs(refs, label)
    _record_intent(backend, store, eid, run_id, made, names)
    handles = _sbatch(backend, store, made, label, names, eid)
    return len(refs), len(rows), sorted({h.split("_")[0] for h in handles})


def _stage_bundles(backend, store: Store, eid: int, run_id: int, meta: dict, groups):
    """Write each group's bundle.json (and the cluster's copy in the mirror, for a remote
    target); returns [(BundleRef, task rows)]."""
    db = store.db
    seq = db.execute("SELECT count(*) FROM bundles WHERE exp=?", (eid,)).fetchone()[0]
    made = []
    for group in groups:
        seq += 1
        bid = f"e{eid}-r{run_id}-s{seq:06d}"
        while db.execute("SELECT 1 FROM bundles WHERE id=?", (bid,)).fetchone():
            seq += 1
            bid = f"e{eid}-r{run_id}-s{seq:06d}"
        d = store.dir / "bundles" / bid
        d.mkdir(parents=True, exist_ok=True)
        tasks = [dict({"id": tid, "params": json.loads(p), "attempt": a + 1},
                      **({"base": a0} if a0 else {}), **({"gen": g} if g else {}))
                 for _, tid, p, a, a0, g in group]
        spec = {"bundle": bid, "experiment": meta["name"], "run": run_id, "root": meta["root"],
                "sys_path": meta["sys_path"], "call": meta["call"], "timeout": meta["timeout"],
                "memory_mb": meta["memory_mb"], "task_root": str(store.dir / "tasks"),
                "tasks": tasks}
        atomic_write(d / "bundle.json", json.dumps(spec))
        if backend.remote:
            rd = backend.mirror / "bundles" / bid
            rd.mkdir(parents=True, exist_ok=True)
            atomic_write(rd / "bundle.json", json.dumps(_remote_spec(spec, backend, meta)))
        made.append((BundleRef(bid, d, len(group), meta["timeout"], meta["memory_mb"],
                               meta["cpus"] or 1), group))
    return made


def _record_intent(backend, store: Store, eid: int, run_id: int, made, names) -> None:
    """The intent, job names included, is recorded before sbatch (see adopt.py)."""
    db = store.db
    touched = [r[0] for _, group in made for r in group]
    with store.tx(), store.counted(eid, rowids=touched):
        for (ref, group), job in zip(made, names):
            db.executemany("UPDATE tasks SET state='running', bundle=?, run=?, room=NULL "
                           "WHERE rowid=?",
                           ((ref.id, run_id, r[0]) for r in group))
            db.execute("INSERT INTO bundles(id, exp, run, backend, state, n_tasks, dir, target, "
                       "job) VALUES (?,?,?,?,?,?,?,?,?)",
                       (ref.id, eid, run_id, "slurm", "created", len(group), str(ref.dir),
                        backend.target.name, job))


def _sbatch(backend, store: Store, made, label: str, names, eid: int) -> list[str]:
    """Submit the staged bundles; record SLURM's handles. When sbatch refuses an array, what
    SLURM accepted before it is recorded and the rest goes back to pending."""
    db = store.db
    refs = [ref for ref, _ in made]
    try:
        handles = backend.submit(refs, label=label, names=names)
    except Exception as e:
        accepted = list(getattr(e, "partial_handles", []))
        touched = [r[0] for _, group in made[len(accepted):] for r in group]
        with store.tx(), store.counted(eid, rowids=touched):
            db.executemany("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE "
                           "id=?", ((h, time.time(), b.id) for h, b in zip(accepted, refs)))
            for ref, group in made[len(accepted):]:
                db.executemany("UPDATE tasks SET state='pending' WHERE rowid=? AND "
                               "state='running'", ((r[0],) for r in group))
                db.execute("UPDATE bundles SET state='failed', cause='sbatch refused it' "
                           "WHERE id=?", (ref.id,))
        raise
    now = time.time()
    with store.tx():
        db.executemany("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE id=?",
                       ((h, now, b.id) for h, b in zip(handles, refs)))
    return handles


def cancel_bundles(store: Store, eid: int, rows, adopt: bool = True) -> int:
    """scancel the given bundles (rows of id, backend, handle, target); mark them cancelled.
    With adopt (nobody else holds the experiment's lock), bundles whose submission was cut
    short are looked up by job name first, so that a job SLURM accepted is cancelled too.
    Returns the number of bundles (array elements) cancelled on SLURM."""
    meta = load_meta(store, eid) or {}
    by_target: dict[str, list] = {}
    for bid, backend, handle, target in rows:
        if backend == "slurm":
            by_target.setdefault(target or "local-slurm", []).append((bid, handle))
    n = 0
    for tname, items in by_target.items():
        base = meta.get("base") if tname == meta.get("target") else None
        be = factory.backend_for(tname, store, sbatch=meta.get("sbatch"), remote_base=base)
        try:
            if adopt and any(not h for _, h in items):
                adopt_unsent(be, store, eid)
                got = dict(store.db.execute(
                    "SELECT id, handle FROM bundles WHERE exp=? AND backend='slurm' AND "
                    "handle IS NOT NULL", (eid,)).fetchall())
                items = [(b, h or got.get(b)) for b, h in items]
            handles = [h for _, h in items if h]
            if handles:
                be.cancel(handles)
            n += len(handles)
        finally:
            be.close()
    with store.tx():
        store.db.executemany("UPDATE bundles SET state='cancelled', ended=?, cause='cancelled' "
                             "WHERE id=? AND state IN ('created','submitted')",
                             ((time.time(), bid) for bid, *_ in rows))
        run = meta.get("run")
        if run:
            store.db.execute("UPDATE runs SET status='cancelled', ended=? WHERE id=? AND "
                             "status='running'", (time.time(), run))
    return n
