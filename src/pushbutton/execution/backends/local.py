"""Local backend: a pool of persistent worker processes on this machine (the embedded default).

Each worker is `python worker.py --serve`: it reads bundle folders on stdin and answers
"done <folder>". A persistent process imports the task's function once, so a tiny task costs
microseconds, not a process start. A worker that dies (segfault, OOM kill) is replaced; its bundle
is reported failed with the signal, and the driver charges only the task that was mid-run.

Workers run at a lower priority than the driver (`nice` NICE, PB_WORKER_NICE to change it): the
driver hands out bundles and ingests what ended, the one job on the run's critical path, and
with a worker on every core it waited for a core. At 10^6 no-op tasks on 2 cores its ingest
took ~1.3x as long as with the workers at nice 10 and the whole run ~10% longer. The workers
still take every cycle the driver leaves, and on a shared machine they give way as a batch job
would.
"""
from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

from pushbutton.core.errors import SpecError
from pushbutton.core.files import THREAD_VARS, signal_name
from pushbutton.execution.backends.base import (FAILED, FINISHED, RUNNING, Backend, BundleRef,
                                                BundleState)

WORKER = str(Path(__file__).resolve().parent.parent / "worker.py")
NICE = 10  # the workers' niceness above the driver's (see the module doc)


def worker_nice() -> int:
    """NICE, or PB_WORKER_NICE (0 to 19; 0: the driver's priority)."""
    raw = os.environ.get("PB_WORKER_NICE", "").strip()
    if not raw:
        return NICE
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if not 0 <= n <= 19:
        raise SpecError(f"PB_WORKER_NICE={raw!r} is not a niceness from 0 to 19",
                        fix="set PB_WORKER_NICE to a whole number from 0 (the driver's "
                            "priority) to 19, or unset it (10)")
    return n


def _worker_env(threads: int) -> dict:
    """Each worker's numeric libraries get the task's cpus, not all cores: N workers x N BLAS
    threads would oversubscribe the machine (what joblib/loky do too). A user's setting wins."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        env.setdefault(v, str(threads))
    return env


class _Proc:
    def __init__(self, python, log_path, threads=1, nice=0):
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen([python, WORKER, "--serve", str(os.getpid()), str(nice)],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.log, bufsize=0,
                                  env=_worker_env(threads))
        os.set_blocking(self.p.stdout.fileno(), False)
        self.buf = b""
        self.bundle: str | None = None  # handle being run

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.log.close()


class LocalBackend(Backend):
    name = "local"

    def __init__(self, workers: int | None = None, python: str | None = None,
                 log_dir: str | os.PathLike | None = None, cpus: int = 1, **_):
        self.threads = max(1, int(cpus or 1))
        self.n = max(1, int(workers or (os.cpu_count() or 1) // self.threads or 1))
        self.python = python or sys.executable
        self.nice = worker_nice()
        self.log_dir = Path(log_dir or ".")
        self.procs: list[_Proc] = []
        self.states: dict[str, BundleState] = {}
        self.queue: list[str] = []
        self.sel = selectors.DefaultSelector()

    def capacity(self) -> int:
        return self.n

    def _spawn(self, i):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = _Proc(self.python, self.log_dir / f"worker-{i}.log", self.threads, self.nice)
        return proc

    def prestart(self) -> None:
        """Start every worker now (their interpreters start while the space registers)."""
        while len(self.procs) < self.n:
            self.procs.append(self._spawn(len(self.procs)))

    def submit(self, bundles: list[BundleRef]) -> list[str]:
        handles = []
        for b in bundles:
            h = str(Path(b.dir).resolve())
            self.states[h] = BundleState(RUNNING)
            self.queue.append(h)
            handles.append(h)
        self._dispatch()
        return handles

    def _dispatch(self):
        while len(self.procs) < self.n and self.queue:
            self.procs.append(self._spawn(len(self.procs)))
        for proc in self.procs:
            if not self.queue:
                break
            if proc.bundle is None and proc.p.poll() is None:
                proc.bundle = self.queue.pop(0)
                try:
                    proc.p.stdin.write((proc.bundle + "\n").encode())
                except OSError:  # died between poll and write; found on the next poll
                    pass

    def poll(self, handles: list[str]) -> dict[str, BundleState]:
        for i, proc in enumerate(self.procs):
            try:
                chunk = proc.p.stdout.read()
            except OSError:
                chunk = None
            if chunk:
                proc.buf += chunk
                *lines, proc.buf = proc.buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"done "):
                        h = line[5:].decode()
                        self.states[h] = BundleState(FINISHED)
                        if proc.bundle == h:
                            proc.bundle = None
            rc = proc.p.poll()
            if rc is not None:
                if proc.bundle is not None:
                    self.states[proc.bundle] = _death(rc)
                proc.close()
                self.procs[i] = self._spawn(i)
        self._dispatch()
        return {h: self.states.get(h, BundleState(FAILED, "unknown to this worker pool", "lost"))
                for h in handles}

    def wait(self, timeout: float) -> None:
        """Sleep until a worker says something or `timeout` passes (cheaper than busy polling)."""
        sel = selectors.DefaultSelector()
        for proc in self.procs:
            if proc.p.poll() is None:
                sel.register(proc.p.stdout, selectors.EVENT_READ)
        if sel.get_map():
            sel.select(timeout)
        else:
            time.sleep(timeout)
        sel.close()

    def cancel(self, handles: list[str]) -> None:
        hs = set(handles)
        self.queue = [h for h in self.queue if h not in hs]
        for h in hs:
            self.states[h] = BundleState(FAILED, "cancelled", "cancelled")
        for i, proc in enumerate(self.procs):
            if proc.bundle in hs:
                proc.p.kill()  # its guard then kills the command tasks it was running
                try:
                    proc.p.wait(timeout=10)
                except subprocess.TimeoutExpired:  # stuck in the kernel: do not hang on it
                    pass
                proc.close()
                self.procs[i] = self._spawn(i)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()
            if proc.bundle is None and proc.p.poll() is None:
                # idle (every bundle it ran has said done): ended now, not after its
                # interpreter's teardown, which the run would wait for
                proc.p.kill()
        for proc in self.procs:
            try:
                proc.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.p.kill()
        self.procs = []


def _death(rc: int) -> BundleState:
    if rc < 0:
        name = signal_name(rc)
        kind = "memory" if name == "SIGKILL" else "signal"
        why = "killed by signal %s%s" % (name, " (out of memory?)" if kind == "memory" else "")
        return BundleState(FAILED, why, "signal")
    if rc == 70:
        return BundleState(FAILED, "task timed out in native code; worker stopped", "timeout")
    return BundleState(FAILED, f"worker exited with status {rc}", "exit")
