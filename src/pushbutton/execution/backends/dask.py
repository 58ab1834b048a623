"""Dask backend: every bundle is one task on a dask.distributed cluster.

    [targets.lab]
    scheduler = "dask"
    address = "tcp://scheduler.example.org:8786"   # or "local": a LocalCluster for this run
    workers = 8                                    # LocalCluster size (address = "local")

No shared filesystem is assumed, and nothing but Python and dask is needed on the workers. The
project's code (a zip of the experiment folder's .py files, and worker.py's source) reaches each
worker once, in a worker plugin (dask_remote.py), and each call carries only the bundle.json
text. On the Dask worker the bundle runs in a persistent `python worker.py --serve` process (a
task that segfaults or is killed takes down only that process) in a fresh temporary folder; the
call returns the folder's output files as bytes with the process's exit status. The driver's
poll writes them into the local bundle folder (outcomes.jsonl last, each file by temp + rename),
so the normal ingest applies unchanged.

If a Dask worker process dies, the scheduler re-runs its bundles elsewhere (nothing reached the
driver, so nothing is counted twice); a bundle that keeps killing workers ends as
KilledWorker: its task that was running (as last reported by the worker) is charged with kind
"lost", the others go back to pending.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path

from pushbutton.core.errors import PushbuttonError, SpecError
from pushbutton.core.files import THREAD_VARS, atomic_write, project_files, signal_name
from pushbutton.execution.backends.base import (FAILED, FINISHED, RUNNING, Backend, BundleRef,
                                                BundleState)
from pushbutton.execution.backends.dask_remote import _run_bundle, code_plugin

WORKER = Path(__file__).resolve().parent.parent / "worker.py"
OUTPUTS = ("stdout.log", "stderr.log", "series.jsonl", "starts.jsonl", "done.json",
           "outcomes.jsonl")
TOPIC = "pushbutton-running"   # worker -> client events: which task a bundle is running
MAX_INFRA_ERRORS = 3           # bundles failing for the cluster's reasons, in a row
# bundles in flight per worker thread: one running, one waiting on the worker, so a worker
# does not idle while the driver ingests the bundle it just finished
IN_FLIGHT_PER_THREAD = 2


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
            # fixed dates: the zip, hence the content hash, depends on the files' content
            info = zipfile.ZipInfo(rel.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (p.stat().st_mode & 0o777) << 16
            z.writestr(info, p.read_bytes(), zipfile.ZIP_DEFLATED)
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


def _root_of(bundle_text: str) -> str:
    """bundle.json's "root", read without parsing the task list (store/bundlelogs.head)."""
    import json
    from pushbutton.store.bundlelogs import head
    spec = head(bundle_text)
    return ((spec if spec is not None else json.loads(bundle_text)).get("root")) or ""


def _warm_ingest() -> None:
    try:  # pandas too: Arrow imports it when it builds the first table from Python objects
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.json  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except Exception:
        pass


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
        # the first ingest imports Arrow (a second on a busy machine): meanwhile the driver
        # would submit nothing and the first bundles' workers would idle; import it now,
        # while the cluster starts and the client connects
        threading.Thread(target=_warm_ingest, daemon=True, name="pb-warm-ingest").start()
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
        self.plugins: dict[str, str] = {}        # project root -> its code plugin's name
        self.worker_src = WORKER.read_text()
        self.infra_errors = 0
        self._cap, self._cap_t = None, 0.0
        try:
            self.client.subscribe_topic(self.topic, self._on_event)
        except Exception:
            pass

    # -- capacity ----------------------------------------------------------------------------
    def capacity(self) -> int:
        """Bundles in flight: IN_FLIGHT_PER_THREAD per worker thread (the thread count is
        refreshed every few seconds; waits for a first worker)."""
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
            self._cap, self._cap_t = IN_FLIGHT_PER_THREAD * max(1, n), now
        return self._cap

    def _threads(self) -> int:
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # older distributed
            info = self.client.scheduler_info()
        return sum(int(w.get("nthreads") or 1) for w in info.get("workers", {}).values())

    # -- submit / poll -----------------------------------------------------------------------
    def _plugin_for(self, root: str) -> str:
        """The name of the worker plugin carrying this project's code, registered once per
        run. It is named by this client's token (close() removes it) and the code's content
        hash, under which workers keep the unpacked code (reused by later runs of the same
        code; a changed file is a new hash, so a new folder)."""
        if root not in self.plugins:
            data = code_zip(root, self.max_code_mb) if root and os.path.isdir(root) else b""
            digest = hashlib.blake2b(data + b"\0" + self.worker_src.encode(),
                                     digest_size=12).hexdigest()
            name = f"pushbutton-code-{self.token}-{digest}"
            self.client.register_plugin(code_plugin(digest, data, self.worker_src), name=name)
            self.plugins[root] = name
        return self.plugins[root]

    def submit(self, bundles: list[BundleRef]) -> list[str]:
        handles = []
        for b in bundles:
            text = (Path(b.dir) / "bundle.json").read_text()
            root = _root_of(text)
            # the token keeps two projects' equal bundle ids apart on a shared scheduler
            key = f"pb-{b.id}-{self.token}"
            fut = self.client.submit(_run_bundle, self._plugin_for(root), text, self.env,
                                     self.report_every, THREAD_VARS, self.topic, pure=False,
                                     key=key)
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
                atomic_write(Path(ref.dir) / "starts.jsonl", line.encode())
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
        for name in self.plugins.values():  # ends this run's serve processes on the workers
            try:
                self.client.unregister_worker_plugin(name)
            except Exception:
                pass
        self.plugins.clear()
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
                self.cluster = None
