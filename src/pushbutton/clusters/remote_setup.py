"""Make existing machines reached over SSH a SLURM cluster, through idempotent steps.

Used by the `ssh` provider and by the cloud providers once their machines exist. Everything of
cluster NAME lives under a per-cluster folder on each machine (`~/.pushbutton-clusters/NAME`,
see remote_conf.Layout) with its own munge key, socket, pid and log, its own slurm.conf, and
daemons run as the SSH user (SlurmUser = that user): nothing of a machine's own SLURM or munge
is touched, and root (or passwordless sudo) is needed only to install missing packages.

The seam (final signatures; `options` is a SetupOptions or a dict of its fields, `say` prints
one progress line, `nodes` are base.Node records whose `extra["host"]` is the SSH destination —
the node's name when absent — and `head` is the Node that runs slurmctld; it may or may not be
one of `nodes`, which run slurmd):

    plan_steps(nodes, head, options) -> list[str]                    no SSH (for --dry-run)
    check_reachable(nodes, options, say=print) -> dict[str, list[str]]   ssh answers (create)
    setup_nodes(nodes, head, conf_text, munge_key, options, say=print) -> dict[str, list[str]]
        every step on the head first, then on the other machines in parallel; conf_text None
        (recommended): generated here from the nodes (name, addr, cpus, memory, gres) and
        options (partition, slurm extras), ports chosen on the head and kept while they stay
        free; a given text is used verbatim and must use the paths of Layout.make(cluster,
        head's home, user, cluster_dir). munge_key None: the head's existing key, else a new
        one. Fills node.extra["pb"] (layout, programs),
        node.addr. Returns, per machine, one line per step.
    start_controller(head, options, say=print) -> list[str]          slurmctld on the head
    start_slurmd(nodes, options, say=print) -> dict[str, list[str]]  slurmd on each node
        (munged first, one machine after the other; restarted where slurm.conf changed)
    wait_idle(nodes, head, options, timeout=120, say=print) -> dict[str, str]
    node_states(head, options) -> dict[str, str]                     sinfo on the head
    drain_nodes(nodes, head, options, timeout=600, say=print) -> list[str]
        nodes about to leave: drained, then waited for until they run no job
    stop_slurmd(nodes, options, say=print) -> dict[str, list[str]]
    stop_controller(head, options, say=print) -> list[str]
    remove_nodes(nodes, head, options, say=print) -> dict[str, list[str]]
        nodes leaving a cluster that stays: slurmd stopped, their files gone (and munged and
        the folders on machines that do not share them with the head); then setup_nodes on
        the rest rewrites slurm.conf without them
    stop_all(nodes, head, options, say=print, remove=False) -> dict[str, list[str]]
        jobs cancelled, every daemon stopped; remove=True also deletes the per-cluster folders
        (never packages, never the work folder with its results)
    target_fields(name, head, options) -> dict                       for targets.Target(**...)
    ssh_argv(node, options, conf=None) -> list[str]                  an interactive ssh there

One call form: the positional one above. The cloud providers hold their SSH access as a dict
(`{"user", "identity_file", "options", "hosts": {node: destination}}`): from_access(nodes, head,
ssh, template, state) turns it into (compute nodes, head, SetupOptions) for these functions, and
run_action(action, nodes, head, ssh, template, state, say) does setup | start | stop with it.

A daemon is restarted only when the file it was started with (munge key, slurm.conf) changed
since; running any of these twice does nothing the second time but say "already".
"""
from __future__ import annotations

import base64
import secrets

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.remote_conf import (Layout, conf_ports, expand_home, gres_conf,
                                             slurm_conf)
from pushbutton.clusters.remote_daemons import (  # the seam, re-exported
    SetupOptions, _ctx, _head_first, _host, _machines, _parallel, _remember, _steps_runner,
    drain_nodes, node_states, remove_nodes, ssh_argv, start_controller, start_slurmd, stop_all,
    stop_controller, stop_slurmd, target_fields, wait_idle)
from pushbutton.clusters.remote_lib import PORTS_PY
from pushbutton.clusters.remote_steps import CONFIG_STEPS, PROBE_STEPS, Ctx, sha

__all__ = ["SetupOptions", "from_access", "run_action", "plan_steps", "check_reachable",
           "setup_nodes", "start_controller", "start_slurmd", "wait_idle", "node_states",
           "drain_nodes", "stop_slurmd", "stop_controller", "remove_nodes",
           "stop_all", "target_fields", "ssh_argv"]


# -- plan -----------------------------------------------------------------------------------
def plan_steps(nodes, head, options) -> list[str]:
    """What setup and start would do on each machine, without SSH."""
    o = SetupOptions.of(options)
    names = {n.name for n in nodes}
    lines = []
    for m in _machines(nodes, head):
        is_head, compute = m.name == head.name, m.name in names
        steps = [s.name for s in PROBE_STEPS + CONFIG_STEPS
                 if (s.only == "all" or (s.only == "head" and is_head) or
                     (s.only == "compute" and compute)) and (s.name != "setup" or o.setup)]
        steps += (["slurmctld"] if is_head else []) + (["slurmd"] if compute else [])
        role = " + ".join((["head (slurmctld)"] if is_head else []) +
                          (["node (slurmd)"] if compute else []))
        lines.append(f"{m.name} [{role}] via ssh {_host(m)}: {', '.join(steps)}")
    for s in PROBE_STEPS + CONFIG_STEPS:
        if s.name != "setup" or o.setup:
            lines.append(f"  {s.name}: {s.doc}")
    lines.append("  slurmctld / slurmd: started as the SSH user, restarted only when slurm.conf "
                 "changed")
    lines.append(f"  files: {o.cluster_dir}/{o.cluster} on every machine (sockets and spools "
                 f"in /tmp/pbc-*); work folder {o.workdir} shared by all")
    return lines


def check_reachable(nodes, options, say=print) -> dict[str, list[str]]:
    """The first step only (ssh answers; what the machine is), on every node in parallel."""
    o = SetupOptions.of(options)
    ctxs = [_ctx(n, o, None, False) for n in nodes]
    report: dict[str, list[str]] = {c.name: [] for c in ctxs}
    _parallel(_steps_runner(PROBE_STEPS[:2], report, say), ctxs)
    return report


# -- setup ----------------------------------------------------------------------------------
def _addr(c: Ctx) -> str:
    a = c.node.addr or c.facts.get("addr")
    if not a:
        raise c.remote.fail("reachable", "cannot tell the address the head reaches this "
                            "machine at (no SSH_CONNECTION there)",
                            "give the node an address (Node.addr)")
    return a


def _existing_key(hc: Ctx) -> bytes | None:
    """The munge key already on the head (so that a second setup keeps it), if any."""
    if hc.remote.lib("munge key", "pb_sha", hc.lay.key).stdout.strip() == "none":
        return None
    r = hc.remote.run("munge key", ["sh", "-c", 'base64 < "$1"', "pb", hc.lay.key],
                      check=False, shown=["base64", hc.lay.key])
    try:
        key = base64.b64decode(r.stdout) if r.returncode == 0 else b""
    except ValueError:
        return None
    return key if len(key) >= 32 else None


def _ports(hc: Ctx) -> tuple[int, int]:
    old = conf_ports(hc.remote.lib("slurm.conf", "pb_cat", hc.lay.conf).stdout)
    st = hc.remote.lib("slurmctld", "pb_status", hc.lay.pidfile("slurmctld"), "slurmctld",
                       hc.lay.record("slurmctld")).stdout.split()
    if old and st and st[0] == "running":
        return old
    r = hc.remote.run("slurm.conf", [hc.bin("python3"), "-c", PORTS_PY,
                                      *(map(str, old) if old else [])],
                      shown=["python3", "-c", "<pick 2 free ports>"])
    a, b = r.stdout.split()
    return int(a), int(b)


def _check_users(ctxs: list[Ctx]) -> None:
    hc = next(c for c in ctxs if c.is_head)
    for c in ctxs:
        if c.facts.get("uid") != hc.facts.get("uid") or c.facts.get("user") != \
                hc.facts.get("user"):
            raise c.remote.fail(
                "reachable", f"reached as user {c.facts.get('user')} (uid {c.facts.get('uid')})"
                f", the head as {hc.facts.get('user')} (uid {hc.facts.get('uid')})",
                "the daemons run as the SSH user, so every machine must be reached as the same "
                "user with the same uid: set `user = ...` in the template's ssh table")


def setup_nodes(nodes, head, conf_text, munge_key, options, say=print) -> dict[str, list[str]]:
    o = SetupOptions.of(options)
    names = {n.name for n in nodes}
    ctxs = [_ctx(m, o, head, m.name in names) for m in _machines(nodes, head)]
    report: dict[str, list[str]] = {c.name: [] for c in ctxs}
    _head_first(_steps_runner(PROBE_STEPS, report, say), ctxs)
    _check_users(ctxs)
    hc = ctxs[0]
    versions = {c.facts.get("slurm", "") for c in ctxs}
    if len(versions) > 1:  # SLURM allows slurmd up to two releases older than slurmctld
        line = "versions: warning: the machines run different SLURM versions (" + ", ".join(
            f"{c.name} {c.facts.get('slurm') or '?'}" for c in ctxs) + "); slurmctld must be " \
            "the newest, slurmd at most two releases older"
        report[hc.name].append(line)
        say(f"{hc.name}: {line}")
    lay = Layout.make(o.cluster, hc.facts["home"], hc.facts["user"], o.cluster_dir)
    problem = lay.check()
    if problem:
        raise ClusterError(f"cluster '{o.cluster}': {problem}",
                           "set cluster_dir to an absolute folder (or one under ~)")
    for c in ctxs:
        c.lay = lay
    key = munge_key or _existing_key(hc) or secrets.token_bytes(1024)
    conf_nodes = list(o.conf_nodes or [c.node for c in ctxs if c.compute])
    for c in ctxs:
        if c.compute and not c.node.addr:
            c.node.addr = _addr(c)
    if conf_text is None:
        ports = _ports(hc)
        conf_text = slurm_conf(lay, user=hc.facts["user"], head_host=hc.facts["hostname"],
                               head_addr=_addr(hc), ctld_port=ports[0], slurmd_port=ports[1],
                               nodes=conf_nodes, partition=o.partition, extra=o.slurm)
    gres = gres_conf(conf_nodes)
    workdir = expand_home(o.workdir, hc.facts["home"])
    token = secrets.token_hex(16)
    for c in ctxs:
        c.conf_text, c.gres_text, c.key, c.key_sha = conf_text, gres, key, sha(key)
        c.workdir, c.token = workdir, token
    run = _steps_runner(CONFIG_STEPS, report, say)

    def head_then_token(c: Ctx):
        run(c)
        c.remote.lib("work folder", "pb_write", f"{workdir}/.pb-cluster-{lay.cluster}.check",
                     token)
    try:
        head_then_token(hc)
        _parallel(run, ctxs[1:])
    finally:
        hc.remote.lib("work folder", "pb_rm", f"{workdir}/.pb-cluster-{lay.cluster}.check",
                      check=False)
    for c in ctxs:
        _remember(c)
    return report


# -- the cloud providers' SSH access ----------------------------------------------------------
def from_access(nodes, head, ssh: dict | None, template, state):
    """(compute nodes, head, SetupOptions) from a cloud provider's SSH access: ssh = {"user",
    "identity_file", "options": [...], "hosts": {node: destination}, "workdir",
    "cluster_dir"}. A head of node group
    'head' runs slurmctld only; else the head runs slurmd too. Cloud machines share no
    filesystem by themselves, so a work folder not shared is a warning there, not an error."""
    ssh = dict(ssh or {})
    hosts = ssh.get("hosts") or {}
    everyone = list(nodes) + ([head] if head is not None else [])
    for n in everyone:
        if n.name in hosts:
            n.extra = dict(n.extra or {}, host=hosts[n.name])
    head = head if head is not None else nodes[0]
    compute = [n for n in nodes if n.group != "head"] if head.group == "head" else list(nodes)
    opts = SetupOptions(
        cluster=getattr(state, "name", None) or getattr(template, "name", None) or "cluster",
        user=ssh.get("user"),
        ssh_options=(["-i", ssh["identity_file"]] if ssh.get("identity_file") else []) +
        list(ssh.get("options") or []),
        setup=[list(map(str, a)) for a in (getattr(template, "setup", None) or [])],
        partition=getattr(template, "partition", None) or "main",
        slurm=dict(getattr(template, "slurm", None) or {}), shared_workdir=False,
        **{k: ssh[k] for k in ("workdir", "cluster_dir") if ssh.get(k)})
    return compute, head, opts


def run_action(action: str, nodes, head, ssh, template, state, say=print) -> dict:
    """setup | start | stop of `nodes` (a cloud provider's call). setup writes slurm.conf with
    every node the cluster state knows (or those given) and starts slurmctld."""
    compute, head, o = from_access(nodes, head, ssh, template, state)
    if action == "setup":
        saved = getattr(state, "nodes", None)
        saved = list(saved.values()) if isinstance(saved, dict) else list(saved or [])
        conf = {n.name: n for n in saved if hasattr(n, "group")}
        conf.update({n.name: n for n in compute})
        if head.group == "head":
            conf.pop(head.name, None)
        o.conf_nodes = list(conf.values()) if saved else None
        report = setup_nodes(compute, head, None, None, o, say)
        report.setdefault(head.name, []).extend(start_controller(head, o, say))
        return report
    if action == "start":
        report = {head.name: start_controller(head, o, say)}
        for k, v in start_slurmd(compute, o, say).items():
            report.setdefault(k, []).extend(v)
        wait_idle(compute, head, o, say=say)
        return report
    if action == "stop":
        return stop_slurmd(compute, o, say)
    raise ClusterError(f"unknown setup action '{action}'", "use setup, start or stop")

