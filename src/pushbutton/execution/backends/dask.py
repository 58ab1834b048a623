"""Dask backend: every bundle is one task on a dask.distributed cluster.

    [targets.lab]
    scheduler = "dask"
    address = "tcp://scheduler.example.org:8786"   # or "local": a LocalCluster for this run
    workers = 8                                    # LocalCluster size (address = "local")

No shared filesystem is assumed, and nothing but Python and dask is needed on the workers:
each call carries the bundle.json text, worker.py's source and a zip of the experiment folder's
.py files. On the Dask worker the bundle runs as `python worker.py FOLDER` (a subprocess, so a
task that segfaults or is killed takes down only that subprocess) in a fresh temporary folder;
the call returns the folder's output files as bytes with the subprocess's exit status. The
driver's poll writes them into the local bundle folder (outcomes.jsonl last, each file by
temp + rename), so the normal ingest applies unchanged.

If a Dask worker process dies, the scheduler re-runs its bundles elsewhere (nothing reached the
driver, so nothing is counted twice); a bundle that keeps killing workers ends as
KilledWorker: its task that was running (as last reported by the worker) is charged with kind
"lost", the others go back to pending.
"""
from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
import types
from pathlib import Path

from pushbutton.core.errors import PushbuttonError, SpecError
from pushbutton.core.files import THREAD_VARS, atomic_write, project_files, signal_name
from pushbutton.execution.backends.base import (FAILED, FINISHED, RUNNING, Backend, BundleRef,
                                                BundleState)

WORKER = Path(__file__).resolve().parent.parent / "worker.py"
OUTPUTS = ("stdout.log", "stderr.log", "series.jsonl", "done.json", "outcomes.jsonl")
TOPIC = "pushbutton-running"   # worker -> client events: which task a bundle is running
MAX_INFRA_ERRORS = 3           # bundles failing for the cluster's reasons, in a row


def _remote_run_bundle(bundle_text, worker_src, code_zip, env_extra, report_every,
                       thread_vars=()):
    """Runs ON a Dask worker. It is shipped by value (see _run_bundle below), so it may use
    only the stdlib and no module-level names: its helpers are nested functions (their code
    travels inside this function's), which is also why it is longer than the house's 60 lines.
    """
    import io
    import json
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    import zipfile

    def unpack(base, spec):
        """The code zip into base/code, and bundle.json with the paths moved there."""
        old_root = (spec.get("root") or "").rstrip("/")
        code = os.path.join(base, "code")
        os.makedirs(code)
        if code_zip:
            with zipfile.ZipFile(io.BytesIO(code_zip)) as z:
                z.extractall(code)

        def moved(p):
            if old_root and (p == old_root or p.startswith(old_root + "/")):
                return code + p[len(old_root):]
            return p

        spec["root"] = code
        spec["sys_path"] = [moved(p) for p in spec.get("sys_path") or []]
        # a task's folder is stable across retries on the same host (no shared filesystem);
        # one per project (worker.py adds the experiment and task), so two projects with an
        # experiment of the same name on one host do not share folders
        import hashlib
        project = hashlib.blake2b(old_root.encode(), digest_size=6).hexdigest()
        spec["task_root"] = os.path.join(tempfile.gettempdir(), "pushbutton-dask-tasks", project)
        folder = os.path.join(base, "bundle")
        os.makedirs(folder)
        with open(os.path.join(folder, "bundle.json"), "w") as f:
            json.dump(spec, f)
        worker = os.path.join(base, "worker.py")
        with open(worker, "w") as f:
            f.write(worker_src)
        return code, folder, worker

    def start(base, code, folder, worker, node):
        """worker.py on the bundle, in its own session, dying with this Dask worker (Linux):
        no orphan keeps running tasks that the scheduler is about to re-run elsewhere. `node`
        (this Dask worker's address) is what worker.py records as the tasks' pb_node."""
        env = dict(os.environ)
        for v in thread_vars:  # one BLAS thread per task, unless the worker's setting says
            env.setdefault(v, "1")
        env.update(env_extra or {})
        if node:
            env["PB_NODE"] = node
        err_path = os.path.join(base, "worker-stderr.log")
        with open(err_path, "wb") as err:
            boot = ("import ctypes, os, runpy, sys\n"
                    "try:\n    ctypes.CDLL(None).prctl(1, 9)\nexcept Exception:\n    pass\n"
                    "if os.getppid() != int(sys.argv[3]):\n    sys.exit(75)\n"
                    "sys.argv = sys.argv[1:3]\n"
                    "runpy.run_path(sys.argv[0], run_name='__main__')\n")
            p = subprocess.Popen([sys.executable, "-c", boot, worker, folder, str(os.getpid())],
                                 cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=err,
                                 stderr=err, start_new_session=True)
        return p, err_path

    def running_task(outcomes):
        """The task the bundle is running: its last start line without an end."""
        running = None
        try:
            with open(outcomes, "rb") as f:
                f.seek(max(0, os.path.getsize(outcomes) - 4096))
                for line in f.read().splitlines():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(rec, dict):
                        continue
                    if rec.get("ev") == "start":
                        running = rec.get("id")
                    elif rec.get("ev") == "end" and rec.get("id") == running:
                        running = None
        except OSError:
            pass
        return running

    def cancelled(dw, key):
        """The client cancelled the bundle or went away."""
        try:
            ts = dw.state.tasks.get(key)
            return ts is None or ts.state in ("cancelled", "released", "forgotten")
        except Exception:
            return False

    def stop(p):
        try:
            os.killpg(p.pid, 9)  # worker.py's guard then kills its command tasks
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def outputs(folder, err_path):
        files = {}
        for name in ("stdout.log", "stderr.log", "series.jsonl", "done.json", "outcomes.jsonl"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
        with open(err_path, "rb") as f:
            f.seek(max(0, os.path.getsize(err_path) - 2000))
            return files, f.read().decode("utf-8", "replace")

    base = tempfile.mkdtemp(prefix="pb-dask-")
    try:
        spec = json.loads(bundle_text)
        code, folder, worker = unpack(base, spec)
        try:  # who we are, to notice a cancel and to report the running task
            from distributed import get_worker
            from distributed.worker import thread_state
            dw, key = get_worker(), thread_state.key
        except Exception:
            dw = key = None
        node = None
        try:
            node = str(dw.address) if dw is not None else None
        except Exception:
            pass
        p, err_path = start(base, code, folder, worker, node)
        outcomes = os.path.join(folder, "outcomes.jsonl")
        last_report, reported = 0.0, None
        while True:
            try:
                rc = p.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if dw is None:
                continue
            if cancelled(dw, key):
                stop(p)
                return {"exit": None, "files": {}, "cancelled": True}
            if time.time() - last_report >= report_every:
                last_report = time.time()
                running = running_task(outcomes)
                if running != reported:
                    reported = running
                    try:
                        dw.log_event(spec.get("_topic") or "pushbutton-running",
                                     {"key": key, "task": running})
                    except Exception:
                        pass
        files, tail = outputs(folder, err_path)
        return {"exit": rc, "files": files, "host": socket.gethostname(), "stderr": tail}
    finally:
        shutil.rmtree(base, ignore_errors=True)


# a copy whose module cannot be imported on the workers, so it is pickled by value: a cluster
# needs neither pushbutton nor this project installed
_run_bundle = types.FunctionType(_remote_run_bundle.__code__,
                                 {"__builtins__": builtins, "__name__": "__pushbutton_remote__"},
                                 "_run_bundle")


def code_zip(root: str | os.PathLike, max_mb: float = 20) -> bytes:
    """The .py files of the project under `root` as a zip: the file set that is hashed for the
    code version and shipped to SLURM (core/files.project_files), narrowed to Python."""
    import io
    import zipfile
    root = Path(root)
    buf = io.BytesIO()
    sizes = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in project_files(root, suffixes=(".py",)):
            p = root / rel
            z.write(p, rel.as_posix())
            sizes.append((p.stat().st_size, p))
            if buf.tell() > max_mb * 1e6:
                big = ", ".join(f"{q.relative_to(root)} ({s / 1e6:.1f} MB)"
                                for s, q in sorted(sizes, reverse=True)[:3])
                raise _error(
                    f"the experiment folder {root} holds more than {max_mb:g} MB of "
                    f".py files to ship to the Dask workers (largest: {big})",
                    fix="move generated or vendored .py files out of the experiment "
                        "folder (or into a hidden or venv folder), or run from a "
                        "smaller folder")
    return buf.getvalue()


def _error(message: str, fix: str) -> PushbuttonError:
    return PushbuttonError(f"{message}\n  fix: {fix}")


def _exit_state(rc, stderr_tail: str = "") -> BundleState:
    if rc is not None and rc < 0:
        name = signal_name(rc)
        oom = " (out of memory?)" if name == "SIGKILL" else ""
        return BundleState(FAILED, f"bundle process on the Dask worker killed by signal "
                                   f"{name}{oom}", "signal")
    if rc == 70:
        return BundleState(FAILED, "task timed out in native code; worker stopped", "timeout")
    tail = stderr_tail.strip().splitlines()[-1:] if stderr_tail else []
    return BundleState(FAILED, f"bundle process on the Dask worker exited with status {rc}"
                               + (f": {tail[0][:300]}" if tail else ""), "exit")


class DaskBackend(Backend):
    name = "dask"
    remote = False  # poll() writes the outputs into the local bundle folder itself

    def __init__(self, address: str | None = None, workers: int | None = None,
                 env: dict | None = None, max_code_mb: float = 20, connect_timeout: float = 30,
                 report_every: float = 1.0, **_):
        if not address:
            raise SpecError("a dask target needs a scheduler address", key="address",
                            fix='set address = "tcp://HOST:8786" in the target, or '
                                'address = "local" for a cluster on this machine')
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise _error("the dask backend needs dask.distributed",
                         fix='pip install "dask[distributed]"') from None
        self.cluster = None
        if address == "local":
            n = max(1, int(workers or os.cpu_count() or 1))
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=":0")
            address = self.cluster.scheduler_address
        try:
            self.client = Client(address, timeout=connect_timeout, set_as_default=False)
        except Exception as e:
            if self.cluster is not None:
                self.cluster.close()
            raise _error(f"cannot reach the Dask scheduler at {address}: {e}",
                         fix="start it (`dask scheduler`, plus `dask worker ADDRESS` "
                             "on each machine) or fix the target's address") from None
        self.address = address
        self.env = dict(env or {})
        self.max_code_mb = max_code_mb
        self.report_every = report_every
        self.token = os.urandom(4).hex()
        self.topic = f"{TOPIC}-{self.token}"
        self.futures: dict = {}                   # handle -> Future (until it is over)
        self.refs: dict[str, BundleRef] = {}
        self.states: dict[str, BundleState] = {}  # handles that are over
        self.running_task: dict[str, str | None] = {}  # key -> task id reported by the worker
        self.zips: dict[str, bytes] = {}
        self.worker_src = WORKER.read_text()
        self.infra_errors = 0
        self._cap, self._cap_t = None, 0.0
        try:
            self.client.subscribe_topic(self.topic, self._on_event)
        except Exception:
            pass

    # -- capacity ----------------------------------------------------------------------------
    def capacity(self) -> int:
        """Total worker threads (refreshed every few seconds; waits for a first worker)."""
        now = time.time()
        if self._cap is None or now - self._cap_t > 5:
            n = self._threads()
            if not n:
                try:
                    self.client.wait_for_workers(1, timeout=60)
                except Exception:
                    raise _error(f"no Dask workers joined {self.address} within 60 s",
                                 fix="start workers: `dask worker "
                                     f"{self.address}`") from None
                n = self._threads()
            self._cap, self._cap_t = max(1, n), now
        return self._cap

    def _threads(self) -> int:
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed
            info = self.client.scheduler_info()
        return sum(int(w.get("nthreads") or 1) for w in info.get("workers", {}).values())

    # -- submit / poll -----------------------------------------------------------------------
    def _zip_for(self, root: str) -> bytes:
        if root not in self.zips:
            self.zips[root] = code_zip(root, self.max_code_mb) if root and \
                os.path.isdir(root) else b""
        return self.zips[root]

    def submit(self, bundles: list[BundleRef]) -> list[str]:
        handles = []
        for b in bundles:
            text = (Path(b.dir) / "bundle.json").read_text()
            spec = json.loads(text)
            spec["_topic"] = self.topic
            # the token keeps two projects' equal bundle ids apart on a shared scheduler
            key = f"pb-{b.id}-{self.token}"
            fut = self.client.submit(_run_bundle, json.dumps(spec), self.worker_src,
                                     self._zip_for(spec.get("root") or ""), self.env,
                                     self.report_every, THREAD_VARS, pure=False, key=key)
            self.futures[key] = fut
            self.refs[key] = b
            handles.append(key)
        return handles

    def _on_event(self, event):
        try:
            msg = event[1]
            self.running_task[msg["key"]] = msg.get("task")
        except Exception:
            pass

    def poll(self, handles: list[str]) -> dict[str, BundleState]:
        done = [h for h in handles if h in self.futures and self.futures[h].status == "finished"]
        if done:  # one transfer for all the finished bundles
            try:
                outs = list(zip(done, self.client.gather([self.futures[h] for h in done])))
            except Exception:  # one result lost meanwhile (dask recomputes it): one by one
                outs = []
                for h in done:
                    try:
                        outs.append((h, self.futures[h].result(timeout=30)))
                    except Exception:
                        pass
            for h, out in outs:
                self.states[h] = self._land(h, out)
        for h in handles:
            f = self.futures.get(h)
            if f is None or h in self.states:
                continue
            if f.status == "error":
                self.states[h] = self._failed(h, f)
            elif f.status in ("cancelled", "lost"):
                self.states[h] = BundleState(FAILED, f"the Dask scheduler dropped the bundle "
                                                     f"({f.status})", "lost")
        out = {}
        for h in handles:
            if h in self.states:
                self._forget(h)
                out[h] = self.states[h]
            elif h in self.futures:
                out[h] = BundleState(RUNNING)
            else:
                out[h] = BundleState(FAILED, "unknown to this Dask client (its driver stopped?)",
                                     "lost")
        return out

    def _forget(self, h):
        f = self.futures.pop(h, None)
        if f is not None:
            f.release()
        self.refs.pop(h, None)
        self.running_task.pop(h, None)

    def _land(self, h: str, out: dict) -> BundleState:
        """Write a finished call's files into the local bundle folder (outcomes.jsonl last)."""
        ref = self.refs[h]
        if out.get("cancelled"):
            return BundleState(FAILED, "cancelled", "cancelled")
        files = out.get("files") or {}
        for name in OUTPUTS:
            if name in files:
                atomic_write(Path(ref.dir) / name, files[name])
        self.infra_errors = 0
        rc = out.get("exit")
        if rc == 0 and "done.json" in files:
            return BundleState(FINISHED)
        return _exit_state(rc, out.get("stderr") or "")

    def _failed(self, h: str, f) -> BundleState:
        try:
            exc = f.exception(timeout=10)
        except Exception as e:
            exc = e
        kind = type(exc).__name__
        if kind == "KilledWorker":
            # charge the task the worker last said it was running (a start line, so the
            # driver's usual rule applies); the others go back to pending
            tid = self.running_task.get(h)
            ref = self.refs[h]
            if tid:
                line = '{"id":"%s","ev":"start","t":%r}\n' % (tid, time.time())
                atomic_write(Path(ref.dir) / "outcomes.jsonl", line.encode())
            return BundleState(FAILED, f"Dask workers died while running it ({exc})", "lost")
        self.infra_errors += 1
        cause = f"the Dask call failed: {kind}: {exc}"
        if self.infra_errors >= MAX_INFRA_ERRORS:
            raise _error(f"{self.infra_errors} bundles in a row failed on the Dask "
                         f"cluster; last: {cause}",
                         fix="check the workers' logs and that they run Python >= 3.8 "
                             "with a matching dask.distributed")
        return BundleState(FAILED, cause, "lost")

    def wait(self, timeout: float) -> None:
        """Sleep until a bundle ends or `timeout` passes."""
        pending = [f for f in self.futures.values() if f.status == "pending"]
        if len(pending) < len(self.futures):
            return
        if not pending:
            time.sleep(timeout)
            return
        from distributed import wait
        try:
            with self.client.as_current():
                wait(pending, timeout=timeout, return_when="FIRST_COMPLETED")
        except (TimeoutError, asyncio.TimeoutError):
            pass

    def cancel(self, handles: list[str]) -> None:
        futs = [self.futures[h] for h in handles if h in self.futures]
        if futs:
            try:
                self.client.cancel(futs, force=True)
            except Exception:
                pass
        for h in handles:
            self.states[h] = BundleState(FAILED, "cancelled", "cancelled")
            self._forget(h)

    def close(self) -> None:
        try:
            if self.futures:
                self.client.cancel(list(self.futures.values()), force=True)
        except Exception:
            pass
        self.futures.clear()
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
                self.cluster = None
