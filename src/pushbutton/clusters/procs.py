"""Programs and processes on this host for the clusters pushbutton builds: finding a program
(with the package that brings it), running it with a timeout, starting a daemon that forks,
following a daemon by its pid file, stopping it. Nothing passes through a shell."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pushbutton.clusters.cluster import ClusterError

INSTALL = "apt-get install slurm-wlm munge"
PACKAGE = {"munged": "munge", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm",
           "sinfo": "slurm-wlm (slurm-client)", "scontrol": "slurm-wlm (slurm-client)",
           "sbatch": "slurm-wlm (slurm-client)", "squeue": "slurm-wlm (slurm-client)",
           "ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux"}
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch", "squeue")


def which(prog: str) -> str:
    p = shutil.which(prog) or next((f"{d}/{prog}" for d in ("/usr/sbin", "/sbin")
                                    if os.access(f"{d}/{prog}", os.X_OK)), None)
    if not p:
        pkg = PACKAGE.get(prog, prog)
        fix = f"{INSTALL}  (as root)" if pkg.startswith(("munge", "slurm")) else \
            f"apt-get install {pkg.split()[0]}  (as root)"
        raise ClusterError(f"'{prog}' is not installed (Debian package {pkg})", fix)
    return p


def require(progs=SLURM_TOOLS) -> None:
    for prog in progs:
        which(prog)


def run(argv: list[str], *, env: dict | None = None, timeout: float = 30, check: bool = False,
        log_hint: str | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """argv[0] looked up, run with a timeout, output captured."""
    argv = [which(argv[0]), *map(str, argv[1:])]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`{shlex.join(argv[:4])}` did not answer within {timeout:g}s",
                           f"see the logs in {log_hint}" if log_hint else None) from None
    if check and r.returncode != 0:
        raise ClusterError(f"`{shlex.join([Path(argv[0]).name, *argv[1:4]])}` failed (exit "
                           f"status {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}",
                           f"see the logs in {log_hint}" if log_hint else None)
    return r


def start_daemon(argv: list[str], log: Path, *, env: dict | None = None,
                 timeout: float = 30) -> None:
    """Start a daemon that forks into the background; its start-up output goes to `log` (not
    a pipe, which the daemon would keep open)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [which(argv[0]), *map(str, argv[1:])]
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        try:
            r = subprocess.run(argv, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                               timeout=timeout, env=env, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"`{shlex.join(argv[:3])} ...` did not start within "
                               f"{timeout:g}s", f"see {log}") from None
    if r.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-4:]
        raise ClusterError(f"`{shlex.join(argv[:3])} ...` failed to start (exit status "
                           f"{r.returncode}): " + " | ".join(tail), f"see {log}")


def pid_of(pidfile: Path, program: str) -> int | None:
    """The pid in `pidfile` when it names a live process of `program`."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm.startswith(program[:15]) and alive(pid) else None


def wait_pid(pidfile: Path, program: str, timeout: float = 15, hint: str = "") -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = pid_of(pidfile, program)
        if p:
            return p
        time.sleep(0.1)
    raise ClusterError(f"{program} did not come up within {timeout:g}s (no live pid in "
                       f"{pidfile})", f"see {hint}" if hint else None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_pids(pids: list[int], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL what is left after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + (timeout if sig == signal.SIGTERM else 5)
        while time.time() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        if not any(alive(p) for p in pids):
            return


def stop_daemon(pidfile: Path, program: str, timeout: float = 10) -> bool:
    """Stop the daemon its pid file names; True when one was running."""
    pid = pid_of(pidfile, program)
    if pid:
        kill_pids([pid], timeout)
    pidfile.unlink(missing_ok=True)
    return bool(pid)
