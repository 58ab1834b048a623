"""The controller on this host (providers local and netns): one munged, serving every node (the
nodes share this host's filesystem, so its socket), one slurmctld, the slurm.conf they and the
slurmds read, and the SLURM commands `pb cluster` asks (sinfo, scontrol, squeue), each with
this cluster's SLURM_CONF and a timeout.
"""
from __future__ import annotations

import getpass
import os
import socket
import time
from pathlib import Path

from pushbutton.clusters import procs
from pushbutton.clusters.cluster import Cluster, ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.slurm_conf import free_ports, gres_conf, port_free, render
from pushbutton.core.files import atomic_write

READY = ("idle", "mixed", "allocated", "completing")


def hostname() -> str:
    return socket.gethostname().split(".")[0]


# -- slurm.conf --------------------------------------------------------------------------------
def slots(cl: Cluster, template, nodes: list[Node], provider) -> list[Node]:
    """The free FUTURE slots of each static group, up to its `max`."""
    used = {n.name for n in nodes}
    out = []
    for group, g in template.nodes.items():
        if g.elastic:
            continue
        for i in range(1, g.max + 1):
            name = provider.node_name(group, i)
            if name not in used:
                out.append(Node(name=name, group=group, cpus=g.cpus, memory=g.memory,
                                gres=g.gres))
    return out


def ctl(cl: Cluster) -> dict:
    return cl.data.setdefault("controller", {})


def write_conf(cl: Cluster, template, provider, nodes: list[Node] | None = None) -> None:
    """Write slurm.conf (and gres.conf) from the cluster's state; make the folders it names."""
    c = ctl(cl)
    nodes = cl.nodes if nodes is None else nodes
    future = slots(cl, template, nodes, provider)
    text = render(name=cl.name, ctl_host=c["host"], ctl_addr=c.get("addr"),
                  ctld_port=c["ctld_port"], slurmd_port=c["slurmd_port"], user=c["user"],
                  state_dir=cl.dir / "state", log_dir=cl.log_dir, spool_dir=cl.run_dir / "spool",
                  pid_dir=cl.dir, munge_socket=cl.socket, nodes=nodes, future=future,
                  partition=template.partition, extra=template.slurm,
                  power=cl.data.get("power"), provider=template.provider)
    for d in (cl.dir / "state", cl.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    (cl.run_dir / "spool").mkdir(parents=True, exist_ok=True, mode=0o700)
    gres = gres_conf([*nodes, *future], getattr(provider, "gres_files", None))
    gpath = cl.conf.parent / "gres.conf"
    if gres:
        atomic_write(gpath, gres)
    else:
        gpath.unlink(missing_ok=True)
    atomic_write(cl.conf, text)


# -- daemons -----------------------------------------------------------------------------------
def munged_pid(cl: Cluster) -> int | None:
    return procs.pid_of(cl.pidfile("munged"), "munged")


def slurmctld_pid(cl: Cluster) -> int | None:
    return procs.pid_of(cl.pidfile("slurmctld"), "slurmctld")


def ensure_munge(cl: Cluster, say) -> None:
    """munge for this cluster: its own key, socket, pid file and log; started unless running."""
    for d in (cl.munge_dir, cl.socket.parent):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    key = cl.munge_dir / "munge.key"
    if not key.exists() or key.stat().st_size == 0:
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
    if munged_pid(cl):
        return
    for p in (cl.socket, Path(str(cl.socket) + ".lock")):
        p.unlink(missing_ok=True)
    say(f"  starting munged (socket {cl.socket})")
    procs.start_daemon(["munged", "--force", f"--socket={cl.socket}", f"--key-file={key}",
                        f"--pid-file={cl.pidfile('munged')}",
                        f"--log-file={cl.munge_dir / 'munged.log'}",
                        f"--seed-file={cl.munge_dir / 'munged.seed'}"],
                       cl.log_dir / "start.log", env=cl.env())
    procs.wait_pid(cl.pidfile("munged"), "munged", hint=str(cl.munge_dir / "munged.log"))


def ensure_ports(cl: Cluster, address: str | None, slurmd_too: bool = True) -> bool:
    """Ports chosen once and kept (running slurmds read them from their slurm.conf); True when
    new ones had to be chosen (the old ones are taken), so running slurmds must restart.
    slurmctld is not running when this is asked; `slurmd_too`: no slurmd is either."""
    c = ctl(cl)
    c.update(host=hostname(), addr=address, user=c.get("user") or getpass.getuser())
    if c.get("ctld_port") and port_free(c["ctld_port"]) and \
            (not slurmd_too or port_free(c["slurmd_port"])):
        return False
    fresh = not c.get("ctld_port")
    c["ctld_port"], c["slurmd_port"] = free_ports(2)
    cl.save()
    return not fresh


def start_slurmctld(cl: Cluster, clean: bool, say) -> int:
    say(f"  starting slurmctld on {ctl(cl)['host']}"
        + (f" ({ctl(cl)['addr']})" if ctl(cl).get("addr") else "")
        + f", port {ctl(cl)['ctld_port']}" + ("" if clean else ", recovering its saved state"))
    procs.start_daemon(["slurmctld", *(["-c"] if clean else []), "-f", str(cl.conf)],
                       cl.log_dir / "start.log", env=cl.env())
    pid = procs.wait_pid(cl.pidfile("slurmctld"), "slurmctld",
                         hint=str(cl.log_dir / "slurmctld.log"))
    deadline = time.time() + 20
    while time.time() < deadline:
        if ping(cl):
            return pid
        time.sleep(0.2)
    raise ClusterError("slurmctld started but does not answer `scontrol ping`",
                       f"see {cl.log_dir / 'slurmctld.log'}")


def stop(cl: Cluster) -> list[str]:
    """Stop slurmctld and munged; the names of those that were running."""
    out = []
    if procs.stop_daemon(cl.pidfile("slurmctld"), "slurmctld"):
        out.append("slurmctld")
    if procs.stop_daemon(cl.pidfile("munged"), "munged"):
        out.append("munged")
    return out


# -- SLURM commands ----------------------------------------------------------------------------
def _slurm(cl: Cluster, argv: list[str], timeout: float = 15, check: bool = False):
    return procs.run(argv, env=cl.env(), timeout=timeout, check=check, log_hint=str(cl.log_dir))


def ping(cl: Cluster) -> bool:
    if not cl.conf.exists():
        return False
    try:
        r = _slurm(cl, ["scontrol", "ping"], timeout=10)
    except ClusterError:
        return False
    return r.returncode == 0 and "UP" in r.stdout


def nodes_info(cl: Cluster, timeout: float = 15) -> dict[str, dict] | None:
    """Every node SLURM knows, from one sinfo call: {name: {state, cpus, memory, gres,
    reason}}; None when slurmctld does not answer."""
    if not cl.conf.exists():
        return None
    try:
        r = _slurm(cl, ["sinfo", "-h", "-N", "-o", "%N|%T|%c|%m|%G|%E"], timeout=timeout)
    except ClusterError:
        return None
    if r.returncode != 0:
        return None
    out: dict[str, dict] = {}
    for line in r.stdout.splitlines():
        bits = line.split("|", 5)
        if len(bits) < 6:
            continue
        out[bits[0]] = {"state": bits[1], "cpus": int(bits[2]) if bits[2].isdigit() else None,
                        "memory": int(bits[3]) if bits[3].isdigit() else None,
                        "gres": None if bits[4] in ("(null)", "") else bits[4],
                        "reason": None if bits[5] in ("none", "") else bits[5]}
    return out


def ready(state: str) -> bool:
    """An answering node that takes jobs (not 'idle*': not responding; not drained)."""
    return state.startswith(READY) and not state.endswith(("*", "~", "#", "%", "!"))


def activate(cl: Cluster, node: Node) -> None:
    """Make a FUTURE slot a node slurmctld uses, at once (no restart)."""
    argv = ["scontrol", "update", f"NodeName={node.name}"]
    if node.addr:
        argv += [f"NodeAddr={node.addr}", f"NodeHostname={node.name}"]
    _slurm(cl, [*argv, "State=RESUME"], check=True)


def hostnames(cl: Cluster, hostlist: str) -> list[str]:
    """n[2-3],g1 -> ['n2', 'n3', 'g1'] (SLURM's own expansion)."""
    r = _slurm(cl, ["scontrol", "show", "hostnames", hostlist], check=True)
    return r.stdout.split()


def set_address(cl: Cluster, node: Node) -> None:
    """Tell slurmctld where a node it is powering up listens (a CLOUD node has no address in
    slurm.conf until its provider made it)."""
    _slurm(cl, ["scontrol", "update", f"NodeName={node.name}", f"NodeAddr={node.addr}",
                f"NodeHostname={node.name}"], check=True)


def set_down(cl: Cluster, name: str, reason: str) -> None:
    """An elastic node whose start failed: DOWN with a reason (its jobs go elsewhere), then
    powered down at once (else it reads `down#`, powering up, until ResumeTimeout)."""
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=DOWN", f"Reason={reason}"],
           check=True)
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=POWER_DOWN"])


def return_to_pool(cl: Cluster, name: str) -> None:
    """A DOWN elastic node back in the pool: powered down and usable, so SLURM starts it
    when a job needs it."""
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=RESUME"], check=True)


def resume(cl: Cluster, name: str) -> None:
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=RESUME"])


def drain(cl: Cluster, name: str, reason: str) -> None:
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=DRAIN", f"Reason={reason}"],
           check=True)


def retire(cl: Cluster, name: str) -> None:
    """Back to a FUTURE slot: slurmctld forgets the node until it is activated again."""
    _slurm(cl, ["scontrol", "update", f"NodeName={name}", "State=FUTURE"], check=True)


def jobs_on(cl: Cluster, name: str) -> list[str]:
    r = _slurm(cl, ["squeue", "-h", "-w", name, "-t", "RUNNING,COMPLETING,CONFIGURING,"
                    "SUSPENDED,STOPPED", "-o", "%i"], check=True)
    return r.stdout.split()


def wait_ready(cl: Cluster, names: list[str], timeout: float, say) -> dict[str, str]:
    """Until every named node takes jobs; a node that came up drained or down (not by a
    resize) is resumed. Progress every 10 s; the error names the nodes and their logs."""
    deadline, t0, last = time.time() + timeout, time.time(), time.time()
    info: dict[str, dict] = {}
    while True:
        info = nodes_info(cl, timeout=10) or {}
        states = {n: info.get(n, {}).get("state", "unknown to slurmctld") for n in names}
        if all(ready(s) for s in states.values()):
            return states
        for n, s in states.items():
            if s.startswith(("down", "drain", "fail")) and not s.endswith("*"):
                resume(cl, n)
        if time.time() > deadline:
            break
        if time.time() - last >= 10:
            waiting = [f"{n} {s}" for n, s in states.items() if not ready(s)]
            say(f"  waiting for nodes to take jobs ({time.time() - t0:.0f}s): "
                + ", ".join(waiting))
            last = time.time()
        time.sleep(0.3)
    bad = [n for n, s in states.items() if not ready(s)]
    raise ClusterError(f"node(s) {', '.join(f'{n} ({states[n]})' for n in bad)} of cluster "
                       f"'{cl.name}' did not take jobs within {timeout:g}s",
                       f"see {cl.log_dir}/slurmd-{bad[0]}.log and slurmctld.log; "
                       f"`pb cluster up {cl.name}` tries again")
