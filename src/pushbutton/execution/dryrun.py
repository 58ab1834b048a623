"""What `pb run --dry-run` says a run would do, writing nothing: how many of the space's tasks
are done and how many a run would start, and how the backend of `--on TARGET` would bundle them.

The store is read without a single write (`Store(peek=True)`: not even SQLite's -wal/-shm), and
no machine is contacted that the run itself would not reach without asking first: a SLURM
target's site limits come from the cache of an earlier run, or from `scontrol` on this host
for a target without `host`; for an SSH target without fresh limits the plan says what it would
ask and uses SLURM's defaults. A Dask cluster is not connected to.
"""
from __future__ import annotations

import math
import os
import shlex

from pushbutton.core import ids
from pushbutton.core.errors import SpecError
from pushbutton.store.database import DIRNAME, Store

# SLURM's own defaults, used when a target's site limits are not known without asking it
DEFAULT_LIMITS = {"max_array": 1000, "max_jobs": 10000, "cpus": 1}


def open_peek(exp) -> Store | None:
    """The experiment's store opened without writing anything (None when there is none)."""
    if not (exp.project / DIRNAME / "state.sqlite").exists():
        return None
    return Store(exp.project, create=False, peek=True)


def task_counts(exp, store: Store | None, rerun: bool = False,
                rerun_failed: bool = False) -> dict:
    """The current space's tasks by what a run would do with them: done, failed (kept unless
    --rerun-failed), out (running on a scheduler), to_run (new, pending, cancelled, or left
    running by a driver that died); --rerun runs them all."""
    total = len(exp.space)
    c = dict(total=total, done=0, failed=0, out=0, to_run=total)
    eid = store.experiment(exp.name) if store is not None else None
    if eid is None:
        return c
    db = store.db
    out_ids = {r[0] for r in db.execute(
        "SELECT t.id FROM tasks t JOIN bundles b ON b.id = t.bundle WHERE t.exp=? AND "
        "t.state='running' AND t.state != 'done' AND b.backend='slurm' AND b.state IN "
        "('created','submitted')",
        (eid,))}
    if exp.space_key and store.space_key(eid) == exp.space_key:  # registered as it is now
        n = store.counts(eid)
        done, failed, out = n["done"], n["failed"], len(out_ids)
    else:  # the space changed since: match its points to the stored tasks by id
        states = dict(db.execute("SELECT id, state FROM tasks NOT INDEXED WHERE exp=? AND "
                                 "state IN ('done','failed')", (eid,)))
        done = failed = out = 0
        for i, p in enumerate(exp.space):
            try:
                tid = ids.id_of_canonical(ids.canonical(p))
            except (TypeError, ValueError) as e:
                raise SpecError(f"parameter point {i} cannot be written as JSON: {e}",
                                file=exp.spec_file, key="space",
                                fix="use numbers, strings, bools or lists of them") from None
            st = states.get(tid)
            if st == "done":
                done += 1
            elif st == "failed":
                failed += 1
            elif tid in out_ids:
                out += 1
    to_run = total if rerun else total - done - failed - out + (failed if rerun_failed else 0)
    c.update(done=done, failed=failed, out=out, to_run=to_run)
    return c


def counts_line(c: dict, rerun: bool, rerun_failed: bool) -> str:
    """'75 tasks: 60 done, 15 to run' (and what is kept, out or redone)."""
    line = f"{c['total']:,} tasks: {c['done']:,} done, {c['to_run']:,} to run"
    if rerun and c["done"]:
        line += " (--rerun: the done ones too)"
    extra = []
    if c["failed"]:
        extra.append(f"{c['failed']:,} failed, run again" if rerun or rerun_failed else
                     f"{c['failed']:,} failed, kept (--rerun-failed runs them again)")
    if c["out"] and not rerun:
        extra.append(f"{c['out']:,} out on SLURM (`pb harvest` brings them in)")
    return line + ("; " + "; ".join(extra) if extra else "")


def running_line(exp, store: Store | None) -> str | None:
    """Whether a driver runs the experiment now (then `pb run` would refuse)."""
    from pushbutton.store.lock import ExperimentLock
    eid = store.experiment(exp.name) if store is not None else None
    if eid is None:
        return None
    lock = ExperimentLock(store, eid, exp.name)  # looked at read-only: creates nothing
    if not lock.held_by_other():
        return None
    who = lock.holder()
    return (f"'{exp.name}' is being run now (pid {who.get('pid')} on {who.get('host')}): a "
            f"`pb run` would refuse; follow it with `pb watch {exp.name}`")


def size_line(exp, yes: bool) -> str | None:
    """What a space over run.max_tasks needs."""
    limit = exp.run_options.max_tasks
    n = len(exp.space)
    if n <= limit:
        return None
    if yes:
        return f"{n:,} tasks is more than run.max_tasks = {limit:,}; --yes confirms it"
    return (f"{n:,} tasks is more than run.max_tasks = {limit:,}: the run needs --yes "
            f"(`pb run ... --yes`), or raise run.max_tasks in the spec")


def bundles_lines(exp, on: str | None, n: int, store: Store | None, workers: int | None,
                  sbatch) -> list[str]:
    """How the backend of `on` would bundle `n` tasks."""
    from pushbutton.execution import targets
    on = on or exp.run_options.target or "local"
    r = exp.resources
    cpus = max(1, int(r.cpus or 1))
    spec_workers = exp.run_options.workers
    fixed = exp.run_options.bundle_size or 0
    if on == "local":
        return _local(n, workers or spec_workers, cpus, fixed, "local")
    t = targets.get(on, exp.project)
    if t.scheduler == "local":
        return _local(n, workers or t.workers or spec_workers, cpus, fixed, f"'{t.name}'")
    if t.scheduler == "dask":
        w = workers or t.workers
        head = (f"bundling on '{t.name}' (Dask at {t.address}): bundles handed out as the "
                "cluster's workers free up")
        if not w:
            return [head + "; their sizes follow its worker threads, known once connected "
                           f"(a dry run does not connect to {t.address})"]
        return [head] + _local(n, w, 1, fixed, f"'{t.name}'")[1:]
    return _slurm(exp, t, n, store, cpus, fixed, sbatch)


def _local(n: int, w: int | None, cpus: int, fixed: int, where: str) -> list[str]:
    from pushbutton.execution import bundling
    w = w or max(1, (os.cpu_count() or 1) // cpus)
    if not n:
        return [f"bundling on {where} ({w} workers): nothing to run"]
    sizes = bundling.describe(n, w, fixed)
    shown = ", ".join(str(s) for s in sizes[:8]) + (", ..." if len(sizes) > 8 else "")
    return [f"bundling on {where} ({w} workers): {len(sizes)} bundles of {shown} tasks "
            "(handed out as workers free up)"]


def _slurm(exp, t, n: int, store: Store | None, cpus: int, fixed: int, sbatch) -> list[str]:
    from pushbutton.core.errors import PushbuttonError
    from pushbutton.execution.slurm.backend import SlurmBackend
    from pushbutton.execution.slurm.runs import limits_cache, out_on_slurm
    from pushbutton.execution.slurm.submit import bundle_size, mean_duration
    from pushbutton.execution.operations import _sbatch_options
    where = f"'{t.name}' (SLURM " + (f"via ssh to {t.host})" if t.host else "on this host)")
    backend = SlurmBackend(t, exp.project / DIRNAME, sbatch=_sbatch_options(exp, sbatch),
                           gpus=int(exp.resources.gpus or 0), limits_cache=limits_cache(t.name))
    lines = []
    lim = backend.cached_limits()
    known = "site limits cached by an earlier run"
    if lim is None and not t.host:
        try:  # scontrol on this host: what the run asks first too (not cached: nothing written)
            lim = backend._read_limits()
            known = "site limits from scontrol"
        except (PushbuttonError, OSError) as e:
            lines.append(f"  cannot read SLURM's limits here ({str(e).splitlines()[0]}); "
                         "planned with SLURM's defaults")
    if lim is None:
        if t.host:
            lines.append(f"  a run would first ask {t.host} over ssh for the site limits "
                         f"(`scontrol show config`, `sinfo`), then copy the code to "
                         f"{t.remote_workdir} there; a dry run does not contact it, so this "
                         "plan uses SLURM's defaults")
        lim, known = dict(DEFAULT_LIMITS), "SLURM's default limits"
    eid = store.experiment(exp.name) if store is not None else None
    est = mean_duration(store, eid) if eid is not None else None
    out = out_on_slurm(store, eid) if eid is not None else 0
    capacity = t.max_jobs or max(1, lim["max_jobs"] // 2)
    quota = max(0, capacity - out)
    opts = list(t.sbatch) + backend.sbatch
    head = f"bundling on {where}"
    if not n:
        return [f"{head}: nothing to submit"] + lines
    if not quota:
        return [f"{head}: the queue quota ({capacity} jobs) is full with {out} bundles out; "
                "nothing would be submitted now"] + lines
    per = bundle_size(lim, est, n, cpus, fixed, quota)
    first = min(n, per * quota)
    n_bundles = math.ceil(first / per)
    arrays = math.ceil(n_bundles / max(1, lim["max_array"]))
    last = first - per * (n_bundles - 1)
    sizes = _n(per, "task") + ("" if last == per else f" (the last {last})")
    line = (f"{head}: {_n(n_bundles, 'bundle')} of {sizes} as {arrays} job "
            f"arra{'ys' if arrays > 1 else 'y'} ({known}: MaxArraySize {lim['max_array']}, "
            f"{_n(lim['cpus'], 'CPU')} in the partition)")
    if first < n:
        line += (f"; the other {n - first:,} tasks go out as the queue quota of {capacity} "
                 "jobs frees up")
    lines.insert(0, line)
    lines.append(_deal_line(t, store, eid, per, first))
    if est:
        lines.append(f"  tasks took {est:.3g} s on average so far")
    lines.append("  sbatch options: " + (shlex.join(opts) if opts else "(none)")
                 + (f"; per task: {_n(cpus, 'CPU')}" if cpus > 1 else "")
                 + (f", {_n(exp.resources.gpus, 'GPU')}" if exp.resources.gpus else ""))
    return lines


def _deal_line(t, store: Store | None, eid: int | None, per: int, first: int) -> str:
    """How the tasks would be dealt to the bundles (the plan submission uses: balance.py),
    with the predicted work per bundle when the store knows task times."""
    from pushbutton.execution.slurm import balance
    if t.plan == "contiguous" or eid is None:
        return balance.describe(t.plan, None, None)
    # the tasks a run would send (pending first; done ones count for a --rerun)
    rows = store.db.execute("SELECT rowid, id, params FROM tasks WHERE exp=? AND idx IS NOT "
                            "NULL AND state != 'running' ORDER BY state != 'pending', idx "
                            "LIMIT ?", (eid, first)).fetchall()
    name = store.db.execute("SELECT name FROM experiments WHERE id=?", (eid,)).fetchone()[0]
    groups, pred, loads = balance.plan(store, eid, name, rows, per, t.plan)
    return balance.describe(t.plan, pred, loads, [len(g) for g in groups])


def _n(k: int, word: str) -> str:
    return f"{k:,} {word}{'' if k == 1 else 's'}"
