"""Running an experiment and managing it: run, status, cancel, logs, retry."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time

from pushbutton.store import bundlelogs, liveness
from pushbutton.store import provenance
from pushbutton.store.code_version import PREFIX as CODE_PREFIX, changed_files
from pushbutton.execution import factory
from pushbutton.execution.driver import Driver, small_run
from pushbutton.harvest.ingest import RunPolicy
from pushbutton.store.failures import top_causes
from pushbutton.store.lock import ExperimentLock
from pushbutton.core import memory
from pushbutton.core.errors import SpecError
from pushbutton.store.database import Store
# `pb status` lives apart so that it imports no more than it needs (kept here by name)
from pushbutton.execution.overview import (  # noqa: F401
    _registering, _started, detached_alive, status)


def is_remote(exp, on: str | None) -> bool:
    """Whether tasks for `--on` run in another environment than this one (SSH host, Dask)."""
    if on in (None, "", "local"):
        return False
    try:
        from pushbutton.execution import targets
        t = targets.get(on, exp.project)
    except Exception:  # an unknown target is reported (better) when its backend is made
        return False
    return bool(t.remote or t.scheduler == "dask")


def preflight(exp, on: str | None = None, say=None, started=None) -> list[str]:
    """Check that the function / program exists and takes the space's parameters (SpecError
    if not) before anything is registered; returns warnings. `started`: preflight.start(exp)."""
    from pushbutton.execution import preflight as pf
    if say is None:
        def say(w):
            print(f"warning: {w}", file=sys.stderr)
    return pf.check(exp, remote=is_remote(exp, on), say=say, started=started)


def register_locked(exp, yes: bool = False, registering=None):
    """(experiment id, held lock, the registration left or None): the lock is taken before the
    spec or the schedule is written, so a second `pb run` of a running experiment changes
    nothing before it says so. Registers the space's first chunk; the rest is registered by
    the run that resumes it."""
    eid, lock = _lock(exp, yes)
    try:
        rest = exp.register_streaming(yes=yes, progress=registering)[1]
    except BaseException:
        lock.release()
        raise
    return eid, lock, rest


def _lock(exp, yes: bool):
    exp.space.check_size(limit=exp.run_options.max_tasks, confirm=yes)
    store = exp.create_store()  # the first run of a spec creates its store
    eid = exp.ensure_experiment()  # inserts a new experiment's row; never rewrites one
    return eid, ExperimentLock(store, eid, exp.name).acquire()


def run(exp, on="local", workers=None, rerun=False, rerun_failed=False, message=None,
        yes=False, progress=None, sbatch=None, wait=False, registering=None) -> dict:
    """Run every pending task; on a fire-and-forget target (SLURM) submit them and return,
    or with wait, harvest until every task is over. The space's registration streams: the
    first tasks start on its first chunk while the rest is registered (store/registration.py;
    SLURM registers it all before submitting)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise SpecError(f"workers must be a whole number >= 1, got {workers!r}", key="workers",
                        fix="give e.g. workers=4, or leave it out for one per CPU")
    light = small_run(exp, on)  # no pyarrow at all (execution/driver.py)
    if not light:  # before the threads below: Arrow loaded on malloc (core/memory.py)
        memory.import_arrow()
    # what the run's code is (git, file hashes: subprocesses) is found out meanwhile
    prov_of = _meanwhile(provenance.collect, exp.root, message)
    if not light:
        _meanwhile(_harvest_imports)  # ingest's imports (pyarrow: 0.4 s) load while this waits
    started, exp.preflight_started = getattr(exp, "preflight_started", None), None
    if not getattr(exp, "preflight_done", False):
        preflight(exp, on, started=started)
    eid, lock = _lock(exp, yes)
    store = exp.store
    backend = feed = None
    try:
        target = on or "local"
        backend = factory.backend_for(target, store, workers=workers,
                                      sbatch=_sbatch_options(exp, sbatch),
                                      resources=RunPolicy.of(exp))
        if hasattr(backend, "prestart"):  # its workers start while the space registers
            backend.prestart()
        feed = exp.register_streaming(yes=yes, progress=registering)[1]
        liveness.settle(store, eid, lock_is_ours=True)  # runs whose driver died: interrupted
        with store.tx(), (store.counted(eid) if rerun or rerun_failed else
                          contextlib.nullcontext()):
            # attempt numbers run on (unique per task); the retry budget starts afresh; a
            # --rerun also gives each task a new, empty folder (no old checkpoint resumed),
            # while a retry of failed tasks keeps theirs (to resume from a checkpoint)
            if rerun:
                store.db.execute("UPDATE tasks NOT INDEXED SET state='pending', "
                                 "attempt0=attempts, gen=gen+1 WHERE exp=? AND idx IS NOT "
                                 "NULL", (eid,))
            elif rerun_failed:
                store.db.execute("UPDATE tasks SET state='pending', attempt0=attempts WHERE "
                                 "exp=? AND state='failed' AND state != 'done' AND idx IS NOT "
                                 "NULL", (eid,))
        if feed is not None and backend.fire_and_forget:  # a static plan needs every task
            _register_rest(exp, feed, registering)
            feed = None
        prov = prov_of()
        prov["target"] = target
        prov["spec"] = exp.spec.model_dump()
        stale = _stale_results(store, eid, prov.get("code_version"), prov.get("code_files"))
        run_id = store.new_run(eid, message, target, prov)
        store.event(eid, run_id, "run-start", {"target": target, "pid": os.getpid()})
        _drop_detached_marker(store, eid)  # from now on the lock and the run say it runs
        if backend.fire_and_forget:
            b, backend = backend, None  # _submit closes it
            summary = _submit(b, exp, eid, run_id, wait, progress)
            if wait:
                summary["failures"] = top_causes(store, eid)
            return summary
        from pushbutton.store.registration import big
        drv = Driver(store, exp, eid, backend, run_id, target=target, on_progress=progress,
                     feed=feed, on_registering=registering if feed and big(feed) else None,
                     light=light)
        backend = None  # the driver closes it
        summary = drv.run()
        summary["run"] = run_id
        summary["counts"] = store.counts(eid)
        summary["stale"] = stale
        summary["failures"] = top_causes(store, eid)
        return summary
    finally:
        if feed is not None:
            feed.close()
        if backend is not None:
            backend.close()
        _drop_detached_marker(store, eid)
        lock.release()


def _harvest_imports() -> None:
    """What ingest imports on its first chunk: the main thread mostly waits (the preflight, the
    first bundles) while this thread imports it."""
    import pyarrow  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.json  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def _meanwhile(fn, *args):
    """fn(*args) in a thread; returns a function that waits for its result (or raises)."""
    import threading
    box = {}

    def work():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - raised where the result is needed
            box["error"] = e
    t = threading.Thread(target=work, daemon=True, name="pb-provenance")
    t.start()

    def result():
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]
    return result


def _register_rest(exp, feed, registering) -> None:
    """The rest of a streamed registration, here and now (a chunk per transaction)."""
    from pushbutton.store.registration import ticker
    tick = ticker(feed, registering)
    feed.run_all(on_chunk=tick)
    if tick:
        tick()


def _sbatch_options(exp, sbatch) -> list[str]:
    """The spec's sbatch options, then --sbatch's (the target's come first, in the backend)."""
    opts = shlex.split(exp.run_options.sbatch) if getattr(exp.run_options, "sbatch", None) \
        else []
    return opts + (shlex.split(sbatch) if isinstance(sbatch, str) else list(sbatch or []))


def _submit(backend, exp, eid: int, run_id: int, wait: bool, progress) -> dict:
    """Submit to SLURM; with wait, this process (holding the lock) harvests until the end."""
    from pushbutton.execution.slurm import submit, sync
    try:
        summary = submit.submit_experiment(backend, exp, eid, run_id, exp.store,
                                           background=not wait)
        if wait:
            summary.update(sync.sync(exp.store, eid, backend=backend, wait=True,
                                     progress=progress, lock=False))
    finally:
        backend.close()
    return summary


def _drop_detached_marker(store: Store, eid: int) -> None:
    p = store.dir / "locks" / f"{eid}.detached"
    try:
        if p.read_text().strip() == str(os.getpid()):
            p.unlink()
    except (OSError, ValueError):
        pass


def _stale_results(store: Store, eid: int, code_version: str | None,
                   files: dict | None = None) -> dict:
    """Done tasks computed by another code version than the current one: kept (a task's
    identity is its parameters), but worth a word, since only --rerun recomputes them. Only
    versions of the same rule are compared (store/code_version.py): one recorded before it
    hashed content (a git commit) cannot be told equal or not. Per version: how many tasks,
    the number of its last run, and the files changed since (when both runs listed theirs)."""
    if not code_version:
        return {}
    rows = store.db.execute(
        "SELECT r.code_version, count(*), max(r.id) FROM tasks t NOT INDEXED JOIN runs r "
        "ON r.id = t.run "
        "WHERE t.exp=? AND t.state='done' AND r.code_version IS NOT ? AND "
        "substr(r.code_version, 1, ?) = ? GROUP BY r.code_version",
        (eid, code_version, len(CODE_PREFIX), CODE_PREFIX)).fetchall()
    numbers = store.run_numbers(eid) if rows else {}
    out = {}
    for version, n, rid in rows:
        (text,) = store.db.execute("SELECT provenance FROM runs WHERE id=?", (rid,)).fetchone()
        before = json.loads(text or "{}").get("code_files")
        changed = changed_files(before, files) if before is not None and files is not None \
            else None
        out[version or "?"] = {"tasks": n, "run": numbers.get(rid), "changed": changed}
    return out


def cancel(store: Store, eid: int, name: str) -> dict:
    """Stop a running driver (it cancels its bundles) and mark what is left cancelled. Counts
    what this cancel stopped: tasks that were pending or running (whoever marked them), and
    the bundles cancelled on SLURM."""
    lock = ExperimentLock(store, eid, name)
    before = _n_cancelled(store, eid)
    stopped = None
    starting = liveness.detached_pid(store, eid)  # a detached driver not yet recording its run
    pids = [starting] if starting else []
    if lock.held_by_other():
        pids.append(lock.holder().get("pid"))
    for pid in dict.fromkeys(p for p in pids if p):
        try:
            os.kill(int(pid), signal.SIGTERM)
            stopped = pid
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    deadline = time.time() + 30
    while stopped and (lock.held_by_other() or liveness.detached_pid(store, eid)) and \
            time.time() < deadline:
        time.sleep(0.1)
    remote = store.db.execute("SELECT id, backend, handle, target FROM bundles WHERE exp=? AND "
                              "state IN ('created','submitted') AND backend = 'slurm'",
                              (eid,)).fetchall()
    jobs = 0
    if remote:
        from pushbutton.execution.slurm.submit import cancel_bundles
        jobs = cancel_bundles(store, eid, remote, adopt=not lock.held_by_other())
    with store.tx(), store.counted(eid):
        store.db.execute("UPDATE tasks SET state='cancelled' WHERE exp=? AND state IN "
                         "('pending','running') AND state != 'done'", (eid,))
    if not lock.held_by_other():  # a run left 'running' by a driver that is gone
        liveness.settle(store, eid, status="cancelled")
    return {"cancelled": _n_cancelled(store, eid) - before, "stopped_driver": stopped,
            "slurm_bundles": jobs}


def _n_cancelled(store: Store, eid: int) -> int:
    return store.db.execute("SELECT count(*) FROM tasks WHERE exp=? AND state='cancelled' AND "
                            "state != 'done' AND idx IS NOT NULL", (eid,)).fetchone()[0]


def logs(store: Store, eid: int | None, prefix: str) -> dict:
    """A task's stdout/stderr (sliced from its bundle's logs), with its attempts."""
    t = store.find_task(eid, prefix)
    out = {"task": t["id"], "state": t["state"], "params": json.loads(t["params"]),
           "error_kind": t["error_kind"], "error": t["error"], "stdout": "", "stderr": "",
           "attempts": []}
    node = store.column_or_null("attempts", "node")
    for row in store.db.execute("SELECT n, kind, error, traceback, bundle, host, "
                                f"{node}, log FROM attempts WHERE task=? ORDER BY n",
                                (t["rowid"],)):
        out["attempts"].append(dict(zip(("n", "kind", "error", "traceback", "bundle", "host",
                                         "node", "log"), row)))
    node = store.column_or_null("tasks", "node")
    out["host"], out["node"] = store.db.execute(f"SELECT host, {node} FROM tasks WHERE rowid=?",
                                                (t["rowid"],)).fetchone()
    bundle, log = t["bundle"], t["log"]
    if t["state"] == "done" and bundle:  # where it ran and its log: in its outcome line
        end = _end_from_outcomes(store.dir / "bundles" / bundle, t["id"]) or {}
        out["host"], out["node"] = end.get("host"), end.get("node")
        if not end:  # its bundle folder was retired or cleaned: the stored row says
            from pushbutton.store.views import where_ran
            name = next(e["name"] for e in store.experiments() if e["id"] == t["exp"])
            out["host"], out["node"] = where_ran(store, name, t["id"], bundle)
            kept = bundlelogs.end_log(store.dir, bundle, t["id"])
            if kept is not None:
                end = {"log": kept}
        if not log and end.get("log"):
            log = json.dumps(end["log"])
    if not (bundle and log and log != "null") and out["attempts"]:
        bundle, log = out["attempts"][-1]["bundle"], out["attempts"][-1]["log"]
    if bundle and log and log != "null":
        o0, o1, e0, e1 = json.loads(log)
        for name, a, b in (("stdout", o0, o1), ("stderr", e0, e1)):
            text = bundlelogs.read_slice(store.dir, bundle, name, a, b)
            if text is not None:
                out[name] = text
    return out


def _end_from_outcomes(folder, tid: str) -> dict | None:
    """The task's end line in its bundle's outcomes (None when the folder was cleaned)."""
    p = folder / "outcomes.jsonl"
    if not p.exists():
        return None
    key = tid.encode()
    with open(p, "rb") as f:
        for line in f:
            if key in line and b'"end"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("id") == tid and rec.get("ev") == "end":
                    return rec
    return None


def clean(store: Store, eid: int, name: str, bundles_only: bool = False,
          progress=None) -> int:
    """Delete an experiment's data, or only its finished bundles' folders and kept logs
    (execution/cleanup.py)."""
    from pushbutton.execution import cleanup
    return cleanup.clean(store, eid, name, bundles_only=bundles_only, progress=progress)
