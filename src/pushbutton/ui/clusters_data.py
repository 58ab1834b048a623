"""What the clusters page shows, polled in the background and cached: each target's
reachability and queue, each cluster's nodes and their SLURM state.

A SLURM target costs ONE round trip per poll (over SSH or on this host): one shell script with
squeue (this user's jobs, arrays folded) and sinfo (the nodes and their state). A Dask target
is one TCP connect to its scheduler; the local target is this machine. The clusters pushbutton
built are read with clusters/info.status (sinfo here, or on a remote head). A page never waits
on any of it longer than `wait` seconds: polls run in a thread, and a page shows the last
answer (with its age), or "checking" on the first view.
"""
from __future__ import annotations

import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

TTL = 5.0  # seconds an answer is reused before the next poll starts
TIMEOUT = 15.0  # seconds a poll of one target may take
MAX_JOBS = 200  # queue lines kept per target
STATUS_KEYS = ("reachable", "why", "seconds", "queue", "jobs", "by_state", "queue_error",
               "nodes", "nodes_error")

_SCRIPT = ("echo '@@squeue'; squeue -h -u \"$(id -un)\" -o '%i|%j|%T|%M|%D|%R' 2>&1; "
           "echo \"@@rc=$?\"; echo '@@sinfo'; sinfo -h -N -o '%N|%T|%c|%m|%E' 2>&1; "
           "echo \"@@rc=$?\"; echo '@@end'")


def _section(text: str, name: str) -> tuple[str, int | None]:
    """The output of one command of the script and its exit status."""
    if f"@@{name}\n" not in text:
        return "", None
    body = text.split(f"@@{name}\n", 1)[1]
    out, _, rest = body.partition("@@rc=")
    try:
        rc = int(rest.split("\n", 1)[0])
    except ValueError:
        rc = None
    return out, rc


def _rows(text: str, keys: tuple) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.strip():
            vals = line.split("|")
            out.append(dict(zip(keys, vals + [""] * (len(keys) - len(vals)))))
    return out


def poll_slurm(t) -> dict:
    """squeue + sinfo on the target in one round trip."""
    from pushbutton.execution.remote import RemoteError, shell_for
    sh = shell_for(t)
    t0 = time.monotonic()
    try:
        r = sh.run_script(_SCRIPT, setup=t.setup, timeout=TIMEOUT, check=False, retries=0)
    except RemoteError as e:
        return {"reachable": False, "why": e.message, "seconds": time.monotonic() - t0}
    finally:
        sh.close()
    took = time.monotonic() - t0
    if "@@end" not in r.stdout:
        why = (r.stderr or r.stdout).strip()[-300:] or f"exit status {r.returncode}"
        return {"reachable": False, "why": f"the setup lines or the shell failed: {why}",
                "seconds": took}
    sq, sq_rc = _section(r.stdout, "squeue")
    si, si_rc = _section(r.stdout, "sinfo")
    out = {"reachable": True, "seconds": took, "queue": None, "nodes": None}
    if sq_rc == 0:
        jobs = _rows(sq, ("job", "name", "state", "time", "nodes", "reason"))
        out["queue"] = jobs[:MAX_JOBS]
        out["jobs"] = len(jobs)
        out["by_state"] = {}
        for j in jobs:
            out["by_state"][j["state"]] = out["by_state"].get(j["state"], 0) + 1
    else:
        out["queue_error"] = sq.strip()[-300:] or f"squeue exited {sq_rc}"
    if si_rc == 0:
        out["nodes"] = _rows(si, ("node", "state", "cpus", "memory", "reason"))
    else:
        out["nodes_error"] = si.strip()[-300:] or f"sinfo exited {si_rc}"
    if sq_rc != 0 and si_rc != 0:
        out["why"] = "the host answers, SLURM does not (see squeue and sinfo)"
    return out


def poll_dask(t) -> dict:
    """Is the scheduler's port open? (one TCP connect, no dask import)"""
    if not t.address:
        return {"reachable": False, "why": "no scheduler address (set address = ...)"}
    u = urlparse(t.address if "://" in t.address else f"tcp://{t.address}")
    t0 = time.monotonic()
    try:
        with socket.create_connection((u.hostname, u.port or 8786), timeout=3):
            pass
    except OSError as e:
        return {"reachable": False, "why": f"{u.hostname}:{u.port or 8786}: {e}",
                "seconds": time.monotonic() - t0}
    return {"reachable": True, "seconds": time.monotonic() - t0}


def poll_target(t) -> dict:
    if t.scheduler == "local":
        return {"reachable": True, "why": "this machine (worker processes)", "seconds": 0.0}
    if t.scheduler == "dask":
        return poll_dask(t)
    return poll_slurm(t)


def describe(t) -> dict:
    where = t.host or ("this machine" if t.scheduler != "dask" else (t.address or "?"))
    return {"name": t.name, "scheduler": t.scheduler, "where": where,
            "description": t.description, "file": t.file or "built in",
            "command": shlex.join(["pb", "run", "--on", t.name])}


def poll_clusters() -> list[dict]:
    """Every cluster pushbutton built, with its nodes (clusters/info.status)."""
    from pushbutton.clusters.cluster import ClusterError, list_names
    from pushbutton.clusters.info import status
    out = []
    for name in list_names():
        try:
            s = status(name)
        except Exception as e:  # noqa: BLE001 - one unreadable cluster is a line of the page
            msg = getattr(e, "message", None) or str(e)
            out.append({"name": name, "state": f"unreadable: {msg}", "nodes": [],
                        "provider": "?", "template": "?", "ready": 0, "cpus": 0,
                        "target": None, "error": isinstance(e, ClusterError)})
            continue
        out.append({k: s[k] for k in ("name", "template", "provider", "state", "ready", "cpus",
                                      "target")}
                   | {"nodes": [{k: n.get(k) for k in ("name", "group", "stage", "addr",
                                                        "slurm", "cpus", "memory", "reason")}
                                for n in s["nodes"]]})
    return out


class Poller:
    """Cached answers, refreshed in the background: `snapshot(wait)` starts the polls that
    are due and waits at most `wait` seconds for them."""

    def __init__(self, root, ttl: float = TTL):
        self.root, self.ttl = root, ttl
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pb-ui-poll")
        self._answers: dict[str, dict] = {}  # key -> {"at", "value"}
        self._running: dict[str, object] = {}  # key -> future

    def _due(self, key: str, fn, *args):
        with self._lock:
            a = self._answers.get(key)
            fut = self._running.get(key)
            if fut is not None and not fut.done():
                return fut
            if a is not None and time.monotonic() - a["at"] < self.ttl:
                return None
            fut = self._pool.submit(self._run, key, fn, *args)
            self._running[key] = fut
            return fut

    def _run(self, key, fn, *args):
        try:
            value = fn(*args)
        except Exception as e:  # noqa: BLE001 - shown on the page, the poller goes on
            value = {"reachable": False, "why": f"{type(e).__name__}: {e}"}
        with self._lock:
            self._answers[key] = {"at": time.monotonic(), "wall": time.time(), "value": value}

    def _answer(self, key):
        with self._lock:
            a = self._answers.get(key)
        if a is None:
            return None, None
        return a["value"], time.monotonic() - a["at"]

    def snapshot(self, wait: float = 1.5) -> dict:
        from pushbutton.core.errors import PushbuttonError
        from pushbutton.execution import targets as T
        problems = []
        try:
            targets = T.load_all(self.root)
        except PushbuttonError as e:
            targets, problems = dict(T.BUILTIN), [str(e)]
        futs = [self._due(f"target:{n}", poll_target, t) for n, t in targets.items()]
        futs.append(self._due("clusters", poll_clusters))
        deadline = time.monotonic() + wait
        for f in futs:
            if f is not None:
                try:
                    f.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - still running: shown as "checking"
                    pass
        rows = []
        for n, t in targets.items():
            value, age = self._answer(f"target:{n}")
            if value is not None:  # every key there (the page's template is strict)
                value = {**dict.fromkeys(STATUS_KEYS), **value}
            rows.append({**describe(t), "status": value,
                         "age": None if age is None else round(age, 1)})
        clusters, age = self._answer("clusters")
        return {"targets": rows, "clusters": clusters,
                "clusters_age": None if age is None else round(age, 1), "problems": problems}

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)
