"""Fire-and-forget runs on a batch scheduler (SLURM), and the harvest that brings them home.

`pb run --on TARGET` calls `submit_experiment`: the code snapshot and the bundles are shipped,
SLURM accepts the job arrays, and it returns. Later `harvest()` (`pb harvest`, `pb status`,
`pb watch`) does one round: ONE batched status query, pull the outputs of the bundles that are
over, ingest only checksummed outcomes (done.json's sha256, or the cluster-side sha256 of a bundle
that died), charge or requeue the tasks (the driver's own rules), and resubmit what is pending
(retries). With wait=True it repeats until every task is done or failed.

The ingest itself is the driver's (offsets committed with task states, Parquet parts named by
offset), so a harvest killed at any point, or run twice, loses and duplicates nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from pathlib import Path

from pushbutton.execution import bundling
from pushbutton.execution.slurm.adopt import adopt_unsent
from pushbutton.execution.backends.base import FAILED, FINISHED, BundleRef, BundleState
from pushbutton.harvest.ingest import Ingestor, RunPolicy
from pushbutton.store.lock import ExperimentLock
from pushbutton.core.errors import BusyError, PushbuttonError
from pushbutton.store.database import DONE, FAILED as T_FAILED, PENDING, Store

CODE_EXCLUDES = [".git/", ".pushbutton/", ".services/", "__pycache__/", "*.pyc", ".venv/",
                 "venv/", "node_modules/", ".mypy_cache/", ".pytest_cache/", ".hypothesis/",
                 ".ipynb_checkpoints/", "benchmarks/out/"]


MAX_STALLS = 3  # bundles in a row that fail before starting any task
UNKNOWN_MAX_TASKS = 1000  # tasks per bundle while no task duration has been measured
GIVE_UP_S = 1800.0  # a waiting harvest stops after this long without an answer from SLURM


def project_key(store: Store) -> str:
    h = hashlib.blake2b(f"{socket.gethostname()}:{store.root}".encode(), digest_size=5)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in store.root.name)[:40]
    return f"{name or 'project'}-{h.hexdigest()}"


def _meta_path(store: Store, eid: int) -> Path:
    return store.dir / "slurm-runs" / f"{eid}.json"


def load_meta(store: Store, eid: int) -> dict | None:
    p = _meta_path(store, eid)
    return json.loads(p.read_text()) if p.exists() else None


def _save_meta(store: Store, eid: int, meta: dict) -> None:
    p = _meta_path(store, eid)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, p)


def make_backend(target, store: Store, sbatch=None):
    from pushbutton.execution.slurm.backend import SlurmBackend
    be = SlurmBackend(target, store.dir, sbatch=sbatch, project_key=project_key(store))
    be.cache_path = str(_cache_dir() / f"limits-{_safe(target.name)}.json")
    return be


def _cache_dir() -> Path:
    """Per-user cache of facts about targets (site limits, a passed check)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pushbutton"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


CHECK_TTL = 3600.0  # a target that passed `check` is not probed again for this long


def check_target(backend, store: Store) -> list:
    """targets.check, remembered per target for CHECK_TTL (a run after a broken setup is
    still caught: jobs that die before starting a task stop the resubmission)."""
    from pushbutton.execution import targets
    p = _cache_dir() / f"checked-{_safe(backend.target.name)}.json"
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
            _atomic(p, json.dumps({"key": key, "t": time.time()}))
        except OSError:
            pass
    return problems


# -- submit ---------------------------------------------------------------------------------
def submit_experiment(backend, exp, eid: int, run_id: int, store: Store, wait: bool = False,
                      progress=None) -> dict:
    """Ship and submit every pending task of the experiment; return once SLURM accepted
    (with wait, once every task is over)."""
    try:
        summary = _submit_experiment(backend, exp, eid, run_id, store, wait)
    except BaseException:
        active = store.db.execute("SELECT count(*) FROM bundles WHERE run=? AND backend='slurm' "
                                  "AND state='submitted'", (run_id,)).fetchone()[0]
        if not active:  # nothing went out: this run is over; else the harvest carries on
            store.end_run(run_id, "failed")
        raise
    if wait:
        summary.update(sync(store, eid, backend=backend, wait=True, progress=progress,
                            lock=False))
        summary.pop("submitted")
    return summary


def _submit_experiment(backend, exp, eid, run_id, store, wait) -> dict:
    problems = check_target(backend, store)
    if problems:  # a wrong target fails here, clearly, not as jobs that die on the cluster
        raise PushbuttonError("cannot run on target '%s':\n%s" % (
            backend.target.name, "\n".join(f"  {p.what}\n    fix: {p.fix}" for p in problems)))
    r = exp.resources
    opts = list(backend.extra)
    if getattr(exp.run_options, "sbatch", None):
        import shlex
        opts = shlex.split(exp.run_options.sbatch) + opts
    backend.extra = opts
    backend.gpus = int(getattr(r, "gpus", 0) or 0)
    meta = {"name": exp.name, "target": backend.target.name, "run": run_id,
            "sbatch": opts, "gpus": backend.gpus, "root": str(exp.root),
            "sys_path": list(exp.sys_path), "call": exp.call, "timeout": r.timeout,
            "memory_mb": r.memory, "cpus": r.cpus, "retries": r.retries,
            "retry_on": list(r.retry_on), "bundle_size": exp.run_options.bundle_size,
            "param_names": list(exp.space.names), "submitted": time.time(), "stalls": 0}
    _save_meta(store, eid, meta)
    pid = None
    n_pending = store.counts(eid)[PENDING]
    if not wait and n_pending and auto_harvest(backend.target):
        # started first, so its start-up overlaps ours; it waits for our lock to go
        pid = spawn_harvester(store, exp.name)
        meta["harvester"] = pid  # `pb status` says when it is gone; watch/harvest restart it
        _save_meta(store, eid, meta)
    if backend.remote:
        ship_code(backend, exp.root)
        meta["base"] = backend.base  # resolved once (~ expanded on the cluster)
        _save_meta(store, eid, meta)
    t0 = time.time()
    n_bundles, n_tasks, jobs = submit_pending(backend, store, eid, run_id, meta)
    store.event(eid, run_id, "slurm-submitted", {"bundles": n_bundles, "tasks": n_tasks,
                                                 "jobs": jobs, "target": backend.target.name})
    summary = {"status": "submitted", "run": run_id, "target": backend.target.name,
               "bundles": n_bundles, "tasks": n_tasks, "jobs": jobs, "submitted": n_tasks,
               "seconds": time.time() - t0, "counts": store.counts(eid)}
    if not n_tasks and not store.db.execute(
            "SELECT 1 FROM bundles WHERE exp=? AND backend='slurm' AND state IN "
            "('created','submitted') LIMIT 1", (eid,)).fetchone():
        store.end_run(run_id, "finished")  # nothing was pending and nothing is out
    summary["message"] = (
        f"{exp.name}: submitted {n_tasks} tasks as {n_bundles} bundles (SLURM job"
        f"{'s' if len(jobs) > 1 else ''} {', '.join(jobs) or '-'}) to '{backend.target.name}'"
        f"\nfollow: pb watch {exp.name}   results: pb harvest {exp.name}   stop: pb cancel "
        f"{exp.name}") if n_tasks else f"{exp.name}: nothing to submit (no pending tasks)"
    if pid:
        summary["harvester"] = pid
        summary["message"] += f"\nresults flow into the store in the background (pid {pid})"
    return summary


def auto_harvest(target) -> bool:
    return target.auto_harvest if target.auto_harvest is not None else not target.host


def spawn_harvester(store: Store, name: str) -> int:
    """A detached `pb harvest NAME --wait` that ingests results as bundles finish, and exits
    when every task is over (`pb cancel` stops it; `pb harvest` does the same by hand)."""
    import subprocess
    import sys
    log = open(store.dir / "logs" / f"harvest-{name}.log", "ab")
    env = dict(os.environ, PB_HARVESTER="1")
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "harvest", name, "--wait"],
                         cwd=str(store.root), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, env=env)
    log.close()
    return p.pid


def restart_harvester(store: Store, eid: int, name: str) -> int | None:
    """Start the background harvester again when it died while bundles are out (for
    `pb watch` and `pb harvest`; `pb status` only reports it). Returns its pid."""
    from pushbutton.store.liveness import harvester_down
    if os.environ.get("PB_HARVESTER") or not harvester_down(store, eid):
        return None
    meta = load_meta(store, eid)
    pid = spawn_harvester(store, name)
    meta["harvester"] = pid
    _save_meta(store, eid, meta)
    store.event(eid, meta.get("run"), "harvester-restarted", {"pid": pid})
    return pid


def ship_code(backend, root) -> None:
    """The code snapshot (incremental rsync) and the worker, to <base>/code and <base>."""
    from pushbutton.execution.slurm.backend import WORKER
    sh = backend.shell
    sh.put(str(Path(root)) + "/", backend.code_dir + "/", delete=True, excludes=CODE_EXCLUDES)
    sh.put(WORKER, backend.worker)


def _remote_spec(spec: dict, backend, meta: dict) -> dict:
    """bundle.json as the cluster sees it: the code snapshot's paths instead of ours."""
    root = meta["root"]
    s = dict(spec)
    s["root"] = backend.code_dir
    s["sys_path"] = [backend.code_dir + p[len(root):] for p in meta["sys_path"]
                     if p == root or p.startswith(root.rstrip("/") + "/")]
    s["task_root"] = f"{backend.base}/tasks"
    return s


def _sizes(backend, store: Store, eid: int, n: int, meta: dict, quota: int) -> int:
    """Tasks per bundle: few enough jobs for the site limits, enough to fill the partition."""
    lim = backend.limits()
    est = store.db.execute("SELECT avg(t1 - t0) FROM tasks WHERE exp=? AND state='done' AND "
                           "t1 IS NOT NULL AND t0 IS NOT NULL", (eid,)).fetchone()[0]
    slots = max(1, lim["cpus"] // max(1, meta["cpus"] or 1))
    min_bundles = min(slots, 1000)
    if est:
        min_bundles = max(1, min(min_bundles, math.ceil(n * est / 5.0)))
    max_bundles = max(1, min(lim["max_array"], quota))
    per = bundling.static_plan(n, est, max_bundles=max_bundles, min_bundles=min_bundles,
                               fixed=meta["bundle_size"])
    if est is None and not meta["bundle_size"]:
        # no duration known yet: keep bundles moderate (progress, crash recovery, --time),
        # unless the site limits need bigger ones
        per = max(math.ceil(n / max_bundles), min(per, UNKNOWN_MAX_TASKS))
    return per


def submit_pending(backend, store: Store, eid: int, run_id: int, meta: dict):
    """Bundle the pending tasks (up to the queue quota) and submit them as job arrays."""
    db = store.db
    n_pending = db.execute("SELECT count(*) FROM tasks WHERE exp=? AND state='pending' AND "
                           "idx IS NOT NULL", (eid,)).fetchone()[0]
    if not n_pending:
        return 0, 0, []
    active = db.execute("SELECT count(*) FROM bundles WHERE exp=? AND backend='slurm' AND "
                        "state IN ('created','submitted')", (eid,)).fetchone()[0]
    quota = max(0, backend.capacity() - active)
    if quota == 0:
        return 0, 0, []
    per = _sizes(backend, store, eid, n_pending, meta, quota)
    rows = db.execute("SELECT rowid, id, params, attempts, attempt0, gen FROM tasks WHERE "
                      "exp=? AND state='pending' AND idx IS NOT NULL ORDER BY idx LIMIT ?",
                      (eid, per * quota)).fetchall()
    seq = db.execute("SELECT count(*) FROM bundles WHERE exp=?", (eid,)).fetchone()[0]
    refs, made = [], []
    for i in range(0, len(rows), per):
        group = rows[i:i + per]
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
        _atomic(d / "bundle.json", json.dumps(spec))
        if backend.remote:
            rd = backend.mirror / "bundles" / bid
            rd.mkdir(parents=True, exist_ok=True)
            _atomic(rd / "bundle.json", json.dumps(_remote_spec(spec, backend, meta)))
        refs.append(BundleRef(bid, d, len(group), meta["timeout"], meta["memory_mb"],
                              meta["cpus"] or 1))
        made.append((bid, group, d))
    label = f"pb-{meta['name']}"
    names = backend.plan_jobs(refs, label)
    with store.tx():  # the intent, job names included, is recorded before sbatch (adopt.py)
        for (bid, group, d), job in zip(made, names):
            db.executemany("UPDATE tasks SET state='running', bundle=?, run=? WHERE rowid=?",
                           ((bid, run_id, r[0]) for r in group))
            db.execute("INSERT INTO bundles(id, exp, run, backend, state, n_tasks, dir, target, "
                       "job) VALUES (?,?,?,?,?,?,?,?,?)",
                       (bid, eid, run_id, "slurm", "created", len(group), str(d),
                        backend.target.name, job))
    try:
        handles = backend.submit(refs, label=label, names=names)
    except Exception as e:
        accepted = list(getattr(e, "partial_handles", []))
        with store.tx():  # what SLURM accepted is out; the rest goes back to pending
            db.executemany("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE "
                           "id=?", ((h, time.time(), b.id) for h, b in zip(accepted, refs)))
            for bid, group, d in made[len(accepted):]:
                db.executemany("UPDATE tasks SET state='pending' WHERE rowid=? AND "
                               "state='running'", ((r[0],) for r in group))
                db.execute("UPDATE bundles SET state='failed', cause='sbatch refused it' "
                           "WHERE id=?", (bid,))
        raise
    now = time.time()
    with store.tx():
        db.executemany("UPDATE bundles SET handle=?, state='submitted', submitted=? WHERE id=?",
                       ((h, now, b.id) for h, b in zip(handles, refs)))
    jobs = sorted({h.split("_")[0] for h in handles})
    return len(refs), len(rows), jobs


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- harvest ------------------------------------------------------------------------------
def _verified(backend, store: Store, bids: list[str]) -> set[str]:
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
            p = d / "outcomes.jsonl"
            data = p.read_bytes() if p.exists() else b""
            if hashlib.sha256(data).hexdigest() == meta.get("sha256"):
                ok.add(b)
        elif backend.remote:
            need_remote.append(b)
        else:
            ok.add(b)  # local and over: the file is what it is
    if need_remote:
        sums = backend.checksums(need_remote)
        for b in need_remote:
            p = store.dir / "bundles" / b / "outcomes.jsonl"
            data = p.read_bytes() if p.exists() else b""
            if b in sums and sums[b] == (hashlib.sha256(data).hexdigest(), len(data)):
                ok.add(b)
    return ok


def sync(store: Store, eid: int, backend=None, wait: bool = False, progress=None,
         lock: bool = True, timeout: float | None = None) -> dict:
    """One harvest round (or rounds until everything is over, with wait). Returns a summary."""
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
            from pushbutton.execution import targets
            backend = make_backend(targets.get(meta["target"], store.root), store,
                                   sbatch=meta["sbatch"])
            backend.gpus = meta.get("gpus", 0)
            if backend.remote and meta.get("base"):
                backend._base = meta["base"]
        return _sync(store, eid, meta, backend, wait, progress, timeout)
    finally:
        if own_backend and backend is not None:
            backend.close()
        if held:
            held.release()


def sync_if_due(store: Store, eid: int) -> dict | None:
    """A harvest round for `pb status` / `pb watch`: only when bundles are out on a scheduler,
    nobody else is driving the experiment, and the last round is older than the poll interval."""
    if not store.db.execute("SELECT 1 FROM bundles WHERE exp=? AND backend='slurm' AND state IN "
                            "('created','submitted') LIMIT 1", (eid,)).fetchone():
        return None
    meta = load_meta(store, eid)
    if meta is None:
        return None
    stamp = store.dir / "slurm-runs" / f"{eid}.last-sync"
    try:
        from pushbutton.execution import targets
        interval = targets.get(meta["target"], store.root).poll_interval
    except PushbuttonError:
        interval = 2.0
    try:
        if time.time() - stamp.stat().st_mtime < interval:
            return None
    except FileNotFoundError:
        pass
    stamp.touch()
    try:
        return sync(store, eid)
    except BusyError:
        return None
    except PushbuttonError as e:  # unreachable cluster: status still shows what is stored
        return {"status": "unreachable", "warnings": [str(e)]}


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


def _active(store: Store, eid: int) -> list[tuple]:
    return store.db.execute("SELECT id, handle, dir, ingested, series_ingested, run, state "
                            "FROM bundles WHERE exp=? AND backend='slurm' AND state IN "
                            "('created','submitted') ORDER BY id", (eid,)).fetchall()


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


def _sync(store, eid, meta, backend, wait, progress, timeout) -> dict:
    run_id = meta["run"]
    ing = Ingestor(store, eid, meta["name"], run_id, RunPolicy.from_meta(meta))
    interval = backend.target.poll_interval
    fast = not backend.remote  # local-slurm: done.json files are visible without a query
    t_start, last_poll, last_adopt, delay = time.time(), 0.0, 0.0, interval
    ingested = errors = 0
    failing_since = None
    warnings: list[str] = []
    while True:
        rows = _active(store, eid)
        unsent = any(not r[1] for r in rows)
        if unsent and (not wait or time.time() - last_adopt >= delay):
            # a submit that died before recording SLURM's answer: adopt what SLURM accepted
            last_adopt = time.time()
            if adopt_unsent(backend, store, eid)["unresolved"]:
                warnings.append("could not ask SLURM about bundles whose submission was cut "
                                "short; asking again next round (never submitted twice)")
            rows = _active(store, eid)
        rows = [r for r in rows if r[1]]
        by_handle = {r[1]: r for r in rows}
        states: dict[str, BundleState] = {}
        now = time.time()
        crashed = False
        if rows and fast and wait and now - last_poll < delay:
            done_now, crashed = backend.done_bundles([r[0] for r in rows])
            for bid in done_now:
                h = next(r[1] for r in rows if r[0] == bid)
                states[h] = BundleState(FINISHED)
        if rows and (now - last_poll >= delay or not wait or (crashed and not states)):
            states = backend.poll(list(by_handle))
            last_poll = time.time()
            if backend.last_poll_error:
                errors += 1
                delay = min(delay * 2, 60.0)  # back off while the controller struggles
                warnings.append(backend.last_poll_error)
                failing_since = failing_since or time.time()
                if wait and time.time() - failing_since > GIVE_UP_S:
                    status = "unreachable"  # the jobs go on; `pb harvest` picks them up later
                    break
            else:
                delay, failing_since = interval, None
        over = {h: st for h, st in states.items() if st.state in (FINISHED, FAILED)}
        if over:
            bids = [by_handle[h][0] for h in over]
            try:
                backend.collect_many(bids)
            except PushbuttonError as e:
                warnings.append(f"pulling results failed (will resume): {e}")
            good = _verified(backend, store, bids)
            for h, st in over.items():
                bid, _, d, off, soff, b_run, _ = by_handle[h]
                if bid not in good:
                    continue
                ab = ing.load(bid, Path(d), off or 0, soff or 0, run=b_run or run_id)
                ab.handle = h
                if st.kind in ("preempted",):
                    ab.inherited = True  # not the task's fault: requeue without an attempt
                ing.finalize(ab, st.state == FAILED, st.cause, st.kind)
                ingested += 1
                if st.state == FAILED and not (ab.started or ab.ended):
                    meta["stalls"] = meta.get("stalls", 0) + 1
                    meta["stall_cause"] = st.cause
                    _save_meta(store, eid, meta)
                elif ab.ended and meta.get("stalls"):
                    meta["stalls"] = 0
                    _save_meta(store, eid, meta)
                if st.state == FAILED:
                    store.event(eid, b_run, "bundle-failed", {"bundle": bid, "cause": st.cause,
                                                              "kind": st.kind})
            ing.compact()  # throttled: a long harvest keeps few Parquet files
        n_pending = store.counts(eid)[PENDING]
        stalled = meta.get("stalls", 0) >= MAX_STALLS
        live = (store.db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
                or ("",))[0] == "running"
        if n_pending and not stalled and live:
            submit_pending(backend, store, eid, run_id, meta)
        left = _active(store, eid)
        counts = store.counts(eid)
        if progress:
            progress(counts[DONE] + counts[T_FAILED], sum(counts.values()), counts[T_FAILED],
                     time.time() - t_start)
        if not left and not counts[PENDING]:
            _finish(store, eid, run_id, ing)
            status = "finished"
            break
        if not left and stalled:  # the jobs die before any task starts: stop resubmitting
            status = "stalled"
            warnings.append(f"{meta['stalls']} bundles failed before any task started (last: "
                            f"{meta.get('stall_cause')}); the tasks stay pending. Fix the target "
                            f"(`pb targets check {meta['target']}`), then `pb run` again")
            if live:
                store.end_run(run_id, "stalled")
            break
        if not left and not live:  # its submission failed or it was cancelled: nothing to do
            status = "stopped"
            break
        if not wait:
            status = "running"
            break
        if timeout is not None and time.time() - t_start > timeout:
            status = "timeout"
            break
        time.sleep(0.05 if fast else max(0.2, min(delay, interval)))
    counts = store.counts(eid)
    return {"status": status, "bundles_ingested": ingested, "counts": counts,
            "done": counts[DONE], "failed": counts[T_FAILED], "poll_errors": errors,
            "warnings": warnings[-3:], "seconds": time.time() - t_start}


def _finish(store: Store, eid: int, run_id: int, ing: Ingestor) -> None:
    row = store.db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
    if row and row[0] == "running":
        store.end_run(run_id, "finished")
    with store.tx():  # earlier runs whose bundles this harvest finished are over as well
        store.db.execute("UPDATE runs SET status='finished', ended=? WHERE exp=? AND "
                         "status='running' AND id<?", (time.time(), eid, run_id))
    ing.compact(full=True)


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


def cancel_bundles(store: Store, eid: int, rows, adopt: bool = True) -> int:
    """scancel the given bundles (rows of id, backend, handle, target); mark them cancelled.
    With adopt (nobody else holds the experiment's lock), bundles whose submission was cut
    short are looked up by job name first, so that a job SLURM accepted is cancelled too.
    Returns the number of bundles (array elements) cancelled on SLURM."""
    from pushbutton.execution import targets
    meta = load_meta(store, eid) or {}
    by_target: dict[str, list] = {}
    for bid, backend, handle, target in rows:
        if backend == "slurm":
            by_target.setdefault(target or "local-slurm", []).append((bid, handle))
    n = 0
    for tname, items in by_target.items():
        be = make_backend(targets.get(tname, store.root), store, sbatch=meta.get("sbatch"))
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
