"""`pb cluster`: clusters pushbutton builds for the user (like `elasticluster start`).

Template `local`: a one-host SLURM on this machine with its own munge key and socket, its own
slurm.conf (ports chosen free at start), state under
`$XDG_STATE_HOME/pushbutton/clusters/NAME` (default `~/.local/state/pushbutton/clusters/NAME`),
and a target NAME in the user's targets file (its `env` carries SLURM_CONF), so
`pb run spec.toml --on NAME` works at once. Every call has a timeout; every SLURM command is given
this cluster's SLURM_CONF explicitly (never the caller's), so other clusters are not disturbed.
"""
from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pushbutton.core import pathnames
from pushbutton.core.errors import PushbuttonError
from pushbutton.clusters.slurm_conf import free_ports, memory_total_mb, write_conf
from pushbutton.core.files import atomic_write, state_dir, write_json

TEMPLATES = ("local",)
DAEMONS = ("munged", "slurmctld", "slurmd")
_INSTALL = "apt-get install slurm-wlm munge"
_PACKAGE = {"munged": "munge", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm",
            "sinfo": "slurm-wlm (slurm-client)", "scontrol": "slurm-wlm (slurm-client)",
            "sbatch": "slurm-wlm (slurm-client)"}


class ClusterError(PushbuttonError):
    def __init__(self, message: str, fix: str | None = None):
        self.message, self.fix = message, fix
        super().__init__(message + (f"\n  fix: {fix}" if fix else ""))


# -- places ------------------------------------------------------------------------------------
def clusters_dir() -> Path:
    return state_dir() / "clusters"


def _check_name(name: str) -> None:
    from pushbutton.execution.targets import BUILTIN
    pathnames.check(name, "cluster name", max_len=64, error=ClusterError)
    if name in BUILTIN:
        raise ClusterError(f"'{name}' is a built-in target name", "choose another cluster name")


class Cluster:
    def __init__(self, name: str):
        # checked before any path is made of it: `stop ../../x --delete` must not reach x
        pathnames.check(name, "cluster name", max_len=64, error=ClusterError)
        self.name = name
        self.dir = clusters_dir() / name

    # files
    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    @property
    def meta_path(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def munge_dir(self) -> Path:
        return self.dir / "munge"

    @property
    def run_dir(self) -> Path:
        """Where the sockets go (munge's, slurmd's per-step ones): the state folder, or a short
        folder in the temp dir when its path is too long for a unix socket (108 bytes)."""
        if len(str(self.dir)) <= 60:
            return self.dir
        import hashlib
        import tempfile
        h = hashlib.sha1(str(self.dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"pb-cluster-{os.getuid()}-{h}"

    @property
    def socket(self) -> Path:
        return self.run_dir / "munge.socket" if self.run_dir != self.dir else \
            self.munge_dir / "munge.socket"

    def pidfile(self, daemon: str) -> Path:
        return self.munge_dir / "munged.pid" if daemon == "munged" else \
            self.dir / f"{daemon}.pid"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def meta(self) -> dict:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}

    def save_meta(self, m: dict) -> None:
        write_json(self.meta_path, m)

    # processes
    def pid(self, daemon: str) -> int | None:
        """The pid in the daemon's pid file when it names a live process of that program."""
        try:
            pid = int(self.pidfile(daemon).read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return None
        return pid if comm.startswith(daemon[:15]) else None

    def running(self) -> dict[str, int | None]:
        return {d: self.pid(d) for d in DAEMONS}

    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))


# -- commands with timeouts --------------------------------------------------------------------
def _which(prog: str) -> str:
    p = shutil.which(prog) or (f"/usr/sbin/{prog}" if os.access(f"/usr/sbin/{prog}", os.X_OK)
                               else None)
    if not p:
        raise ClusterError(f"'{prog}' is not installed (Debian package {_PACKAGE[prog]})",
                           f"{_INSTALL}  (as root)")
    return p


def require_tools() -> None:
    for prog in ("munged", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch"):
        _which(prog)


def _run(cl: Cluster, argv: list[str], timeout: float = 30, check: bool = False):
    argv = [_which(argv[0]), *argv[1:]]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cl.env(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{Path(argv[0]).name} did not answer within {timeout:g}s",
                           f"see the logs in {cl.dir / 'log'}") from None
    if check and r.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, argv[:3]))} failed (exit status {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[-400:]}",
                           f"see the logs in {cl.dir / 'log'}")
    return r


def _start_daemon(cl: Cluster, argv: list[str], timeout: float = 30) -> None:
    """Start a daemon that forks into the background; its output goes to log/start.log (not a
    pipe, which the daemon would keep open)."""
    (cl.dir / "log").mkdir(parents=True, exist_ok=True)
    log = cl.dir / "log" / "start.log"
    argv = [_which(argv[0]), *argv[1:]]
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        try:
            r = subprocess.run(argv, stdout=f, stderr=f, stdin=subprocess.DEVNULL,
                               timeout=timeout, env=cl.env(), start_new_session=True)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{Path(argv[0]).name} did not start within {timeout:g}s",
                               f"see {log}") from None
    if r.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise ClusterError(f"{Path(argv[0]).name} failed to start (exit status {r.returncode}): "
                           + " | ".join(tail), f"see {log} and {cl.dir / 'log'}")


def _wait_pid(cl: Cluster, daemon: str, timeout: float = 15) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = cl.pid(daemon)
        if p:
            return p
        time.sleep(0.1)
    raise ClusterError(f"{daemon} did not come up within {timeout:g}s",
                       f"see the logs in {cl.dir / 'log'} and {cl.munge_dir}")


# -- targets -----------------------------------------------------------------------------------
def _target_for(cl: Cluster):
    from pushbutton.execution.targets import Target
    return Target(name=cl.name, scheduler="slurm", python=sys.executable,
                  env={"SLURM_CONF": str(cl.conf)},  # reaches sbatch/squeue/scancel too
                  description=f"pb cluster {cl.name} (template local)")


def _user_targets() -> dict:
    from pushbutton.execution import targets as T
    p = T.user_file()
    return T.parse(T._read(p), str(p)) if p.exists() else {}


def _ours(cl: Cluster, t) -> bool:
    return t is not None and t.env.get("SLURM_CONF") == str(cl.conf)


def register_target(cl: Cluster) -> Path:
    from pushbutton.execution import targets as T
    old = _user_targets().get(cl.name)
    if old is not None and not _ours(cl, old):
        raise ClusterError(f"a target '{cl.name}' already exists in {T.user_file()} and is not "
                           "this cluster's", "choose another cluster name, or remove that target")
    return T.add(_target_for(cl), replace=True)


def remove_target(cl: Cluster) -> bool:
    from pushbutton.execution import targets as T
    path = T.user_file()
    existing = _user_targets()
    if not _ours(cl, existing.get(cl.name)):
        return False
    del existing[cl.name]
    text = "# pushbutton targets (see `pb targets --help`)\n\n" + \
        "\n".join(t.to_toml() for t in existing.values())
    atomic_write(path, text)
    return True


# -- state queries -----------------------------------------------------------------------------
def node_info(cl: Cluster, timeout: float = 15) -> tuple[str, int | None]:
    """(state, CPUs) of the node from sinfo ('' when slurmctld does not answer)."""
    if not cl.conf.exists():
        return "", None
    try:
        r = _run(cl, ["sinfo", "-h", "-N", "-o", "%T %c"], timeout=timeout)
    except ClusterError:
        return "", None
    if r.returncode != 0 or not r.stdout.strip():
        return "", None
    bits = r.stdout.split()
    cpus = int(bits[1]) if len(bits) > 1 and bits[1].isdigit() else None
    return bits[0], cpus


def status(cl: Cluster) -> dict:
    m = cl.meta()
    pids = cl.running()
    state, cpus = node_info(cl) if pids["slurmctld"] else ("", None)
    up = all(pids.values()) and state.rstrip("*~#").startswith(("idle", "mixed", "allocated",
                                                                 "completing"))
    return {"name": cl.name, "template": m.get("template", "?"), "up": up,
            "node": state or "-", "cpus": cpus if cpus is not None else m.get("cpus"),
            "memory": m.get("memory"), "target": cl.name, "pids": pids, "conf": str(cl.conf),
            "dir": str(cl.dir)}


def list_clusters() -> list[dict]:
    d = clusters_dir()
    if not d.is_dir():
        return []
    return [status(Cluster(p.name)) for p in sorted(d.iterdir())
            if (p / "cluster.json").exists() and pathnames.problem(p.name, 64) is None]


def wait_idle(cl: Cluster, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        state, _ = node_info(cl, timeout=10)
        s = state.rstrip("*~#$@+")
        if s.startswith(("idle", "mixed", "allocated", "completing")):
            return s
        if s.startswith(("down", "drain", "fail")):
            _run(cl, ["scontrol", "update", f"NodeName={cl.meta()['host']}", "State=RESUME"],
                 timeout=10)
        time.sleep(0.5)
    logs = cl.dir / "log"
    tail = []
    for f in ("slurmctld.log", "slurmd.log"):
        try:
            tail += (logs / f).read_text().strip().splitlines()[-3:]
        except OSError:
            pass
    raise ClusterError(f"the node of cluster '{cl.name}' did not become idle within {timeout:g}s "
                       f"(state '{state or 'no answer'}'): " + " | ".join(tail),
                       f"see the logs in {logs}; `pb cluster stop {cl.name}` then start again")


# -- actions -----------------------------------------------------------------------------------
def _start_slurm(cl: Cluster, m: dict, clean: bool) -> None:
    _start_daemon(cl, ["slurmctld", *(["-c"] if clean else []), "-f", str(cl.conf)])
    _wait_pid(cl, "slurmctld")
    _start_daemon(cl, ["slurmd", "-f", str(cl.conf), "-N", m["host"]])
    _wait_pid(cl, "slurmd")


def _start_munge(cl: Cluster, running: bool, say) -> None:
    """munge, the cluster's authentication: its own key, socket, pid and log; started unless it
    is `running`."""
    for d in (cl.munge_dir, cl.socket.parent):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    key = cl.munge_dir / "munge.key"
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
    if running:
        return
    for p in (cl.socket, Path(str(cl.socket) + ".lock")):
        p.unlink(missing_ok=True)
    say(f"starting munged for '{cl.name}'")
    _start_daemon(cl, ["munged", "--force", f"--socket={cl.socket}", f"--key-file={key}",
                       f"--pid-file={cl.pidfile('munged')}",
                       f"--log-file={cl.munge_dir / 'munged.log'}",
                       f"--seed-file={cl.munge_dir / 'munged.seed'}"])
    _wait_pid(cl, "munged")


def start(name: str, template: str = "local", cpus: int | None = None,
          memory: int | None = None, timeout: float = 90, say=print) -> dict:
    """Build (or bring back up) cluster NAME and register its target. Idempotent."""
    _check_name(name)
    if template not in TEMPLATES:
        raise ClusterError(f"template '{template}' is not built yet",
                           "use --template local (see docs/CLUSTERS.md for what is planned)")
    cl = Cluster(name)
    meta = cl.meta()
    if meta and meta.get("template") != template:
        raise ClusterError(f"cluster '{name}' exists with template '{meta.get('template')}'",
                           f"`pb cluster stop {name} --delete` first")
    require_tools()
    pids = cl.running()
    if meta and all(pids.values()):
        if cpus is not None and cpus != meta.get("cpus"):
            raise ClusterError(f"cluster '{name}' is running with {meta.get('cpus')} CPUs",
                               f"`pb cluster resize {name} --cpus {cpus}`")
        node_state = wait_idle(cl, timeout=timeout)
        register_target(cl)
        say(f"cluster '{name}' is already running (node {node_state}, {meta.get('cpus')} "
            f"CPUs); target '{name}'")
        return status(cl)
    cl.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cl.dir, 0o700)
    if not meta:
        meta = {"name": name, "template": template, "created": time.time()}
    meta.update(user=getpass.getuser(), host=socket.gethostname().split(".")[0],
                cpus=int(cpus or meta.get("cpus") or os.cpu_count() or 1),
                memory=int(memory or meta.get("memory") or memory_total_mb()))
    if meta["cpus"] < 1 or meta["memory"] < 1:
        raise ClusterError("--cpus and --memory must be >= 1")
    _start_munge(cl, running=bool(pids["munged"]), say=say)
    # slurm: one of the two up is a half-started cluster: stop it, new ports, fresh config
    for d in ("slurmd", "slurmctld"):
        if pids[d]:
            _kill(cl, d)
    meta["ctld_port"], meta["slurmd_port"] = free_ports(2)
    write_conf(cl, meta)
    cl.save_meta(meta)
    say(f"starting slurmctld and slurmd for '{name}' (ports {meta['ctld_port']}/"
        f"{meta['slurmd_port']}, {meta['cpus']} CPUs, {meta['memory']} MB)")
    _start_slurm(cl, meta, clean=True)
    node_state = wait_idle(cl, timeout=timeout)
    path = register_target(cl)
    say(f"cluster '{name}' is up (node {node_state}); target '{name}' written to {path}")
    say(f"  pb run SPEC.toml --on {name}")
    return status(cl)


def _kill(cl: Cluster, daemon: str, timeout: float = 10) -> bool:
    pid = cl.pid(daemon)
    if not pid:
        cl.pidfile(daemon).unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
    cl.pidfile(daemon).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(name: str, delete: bool = False, say=print) -> None:
    cl = Cluster(name)
    if not cl.exists() and not cl.dir.exists():
        raise ClusterError(f"no cluster named '{name}'", "`pb cluster list` shows them")
    stopped = [d for d in ("slurmd", "slurmctld", "munged") if _kill(cl, d)]
    say(f"cluster '{name}': " + (f"stopped {', '.join(stopped)}" if stopped else
                                 "was not running"))
    if delete:
        removed = remove_target(cl)
        if cl.run_dir != cl.dir:
            shutil.rmtree(cl.run_dir, ignore_errors=True)
        shutil.rmtree(cl.dir, ignore_errors=True)
        say(f"deleted {cl.dir}" + (f" and target '{name}'" if removed else ""))


def resize(name: str, cpus: int, timeout: float = 90, say=print) -> dict:
    cl = Cluster(name)
    m = cl.meta()
    if not m:
        raise ClusterError(f"no cluster named '{name}'", "`pb cluster list` shows them")
    if cpus < 1:
        raise ClusterError("--cpus must be >= 1")
    m["cpus"] = int(cpus)
    pids = cl.running()
    if not all(pids.values()):
        cl.save_meta(m)
        say(f"cluster '{name}' is down; it will have {cpus} CPUs at `pb cluster start {name}`")
        return status(cl)
    # node definitions change only with a restart of the SLURM daemons (state and jobs kept)
    for d in ("slurmd", "slurmctld"):
        _kill(cl, d)
    write_conf(cl, m)
    cl.save_meta(m)
    _start_slurm(cl, m, clean=False)
    wait_idle(cl, timeout=timeout)
    st = status(cl)
    say(f"cluster '{name}' now has {st['cpus']} CPUs (node {st['node']})")
    return st


def export_line(name: str) -> str:
    cl = Cluster(name)
    if not cl.exists():
        raise ClusterError(f"no cluster named '{name}'", "`pb cluster list` shows them")
    return f"export SLURM_CONF={shlex.quote(str(cl.conf))}"
