"""Start, stop and watch the daemons of a cluster on machines reached over SSH, and the contexts
(one per machine) that remote_setup's steps and these functions share. See remote_setup for the
seam; everything here is re-exported there.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.remote_conf import Layout
from pushbutton.clusters.remote_lib import Remote
from pushbutton.clusters.remote_steps import CONFIG_STEPS, Ctx

_UP = ("idle", "mixed", "allocated", "completing")


@dataclass
class SetupOptions:
    cluster: str                                  # the cluster's name
    user: str | None = None                       # ssh -l USER
    ssh_config: str | None = None                 # ssh -F FILE
    ssh_options: list[str] = field(default_factory=list)
    connect_timeout: int = 10
    cluster_dir: str = "~/.pushbutton-clusters"   # the per-cluster folder is cluster_dir/NAME
    workdir: str = "~/.pushbutton-remote"         # the target's work folder (code, bundles)
    shared_workdir: bool = True                   # a node not sharing it is an error
    install: bool = True                          # install missing packages
    setup: list[list[str]] = field(default_factory=list)   # the template's setup argv lists
    partition: str = "main"
    slurm: dict = field(default_factory=dict)     # extra slurm.conf keys
    python: str = "python3"                       # the target's python
    conf_nodes: list | None = None                # every node of slurm.conf (default: nodes)
    install_timeout: float = 1200
    setup_timeout: float = 1800

    @classmethod
    def of(cls, options) -> "SetupOptions":
        if isinstance(options, cls):
            return options
        known = {f.name for f in fields(cls)}
        d = dict(options)
        bad = sorted(set(d) - known)
        if bad:
            raise ClusterError(f"unknown setup option(s) {', '.join(bad)}",
                               f"known: {', '.join(sorted(known))}")
        return cls(**d)


# -- machines and their contexts -----------------------------------------------------------
def _host(node) -> str:
    return (node.extra or {}).get("host") or node.name


def _machines(nodes, head) -> list:
    """The head first, then the nodes, each machine once."""
    out = [head] if head is not None else []
    for n in nodes:
        if all(n.name != m.name for m in out):
            out.append(n)
    return out


def _remote(node, o: SetupOptions) -> Remote:
    return Remote(node.name, host=_host(node), user=o.user, ssh_config=o.ssh_config,
                  ssh_options=o.ssh_options, connect_timeout=o.connect_timeout)


def _ctx(node, o: SetupOptions, head, compute: bool) -> Ctx:
    return Ctx(node=node, remote=_remote(node, o), opts=o,
               is_head=head is not None and node.name == head.name, compute=compute)


def _parallel(fn, items: list) -> list:
    """fn on every item (at most 16 at once); the first error raised after all are done."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    errors, results = [], []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as ex:
        futs = [ex.submit(fn, i) for i in items]
        for f in futs:
            try:
                results.append(f.result())
            except ClusterError as e:
                errors.append(e)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            raise ClusterError(first.message + f"\n  ({len(errors) - 1} more machine(s) "
                               "failed too)", first.fix)
        raise first
    return results


def _head_first(fn, ctxs: list[Ctx]) -> None:
    heads = [c for c in ctxs if c.is_head]
    for c in heads:
        fn(c)
    _parallel(fn, [c for c in ctxs if not c.is_head])


def _steps_runner(steps, report: dict, say):
    def run(c: Ctx):
        for st in steps:
            if not st.applies(c) or (st.name == "setup" and not c.opts.setup):
                continue
            line = f"{st.name}: {st.run(c)}"
            report[c.name].append(line)
            say(f"{c.name}: {line}")
    return run


def _saved(c: Ctx) -> dict:
    return (c.node.extra or {}).get("pb") or {}


def _remember(c: Ctx) -> None:
    keep = {k: v for k, v in c.facts.items() if k.startswith("bin_") and v}
    keep.update({k: c.facts.get(k, "") for k in ("hostname", "user", "uid", "home", "os",
                                                  "slurm", "python3", "cpus", "mem_mb")})
    c.node.extra = dict(c.node.extra or {}, host=_host(c.node),
                        pb={"layout": c.lay.to_json(), "facts": keep})


def _known(ctxs: list[Ctx], o: SetupOptions, head) -> None:
    """Fill each context's layout and program paths from node.extra (else by probing)."""
    hc = next((c for c in ctxs if c.is_head), None)
    lay = None
    for c in ctxs:
        s = _saved(c)
        if s.get("layout"):
            lay = lay or Layout.from_json(s["layout"])
            c.facts = dict(s.get("facts") or {})
    if lay is None:  # never set up from here: the layout follows from the head's home
        if hc is None:
            hc = _ctx(head, o, head, compute=False) if head is not None else ctxs[0]
        f = hc.facts or hc.probe()
        lay = Layout.make(o.cluster, f["home"], f["user"], o.cluster_dir)
    for c in ctxs:
        c.lay = lay
        if not c.facts:
            c.probe()

# -- daemons ------------------------------------------------------------------------------
def _ensure_munged(c: Ctx, lines: list[str], say=None) -> None:
    """munged up with the key file there (after a reboot the run folder is gone: made again)."""
    step = next(s for s in CONFIG_STEPS if s.name == "munged")
    c.remote.lib("munged", "pb_mkdirs", *c.lay.folders)
    if not c.key_sha:
        c.key_sha = c.remote.lib("munged", "pb_sha", c.lay.key).stdout.strip()
        if c.key_sha == "none":
            raise c.remote.fail("munged", f"no munge key at {c.lay.key}",
                                "run `pb cluster up` for this cluster first (setup writes it)")
    found = step.check(c)
    if found is None:
        lines.append(f"munged: {step.apply(c)}")
        if say:
            say(f"{c.name}: {lines[-1]}")


def _daemon(c: Ctx, daemon: str, say, munged_done: bool = False) -> list[str]:
    lines: list[str] = []
    if not munged_done:
        _ensure_munged(c, lines)
    node = None if daemon == "slurmctld" else c.name
    pf, rec = c.lay.pidfile(daemon, node), c.lay.record(daemon, node)
    conf_sha = c.remote.lib(daemon, "pb_sha", c.lay.conf).stdout.strip()
    if conf_sha == "none":
        raise c.remote.fail(daemon, f"no slurm.conf at {c.lay.conf}",
                            "run `pb cluster up` for this cluster first (setup writes it)")
    st = c.remote.lib(daemon, "pb_status", pf, daemon, rec).stdout.split()
    if st[0] == "running" and st[2] == conf_sha:
        lines.append(f"{daemon}: {daemon} already running (pid {st[1]})")
    else:
        if st[0] == "running":
            c.remote.lib(daemon, "pb_stop", pf, daemon, rec)
        argv = [c.bin(daemon), "-f", c.lay.conf] + (["-N", c.name] if node else [])
        dlog = c.lay.log(daemon, node)
        c.remote.lib(daemon, "pb_start", c.lay.log("start", c.name), pf, daemon, rec, conf_sha,
                     dlog, *argv, timeout=60,
                     fix=f"see {dlog} on the machine; then run the same command again")
        lines.append(f"{daemon}: " + ("restarted " + daemon + " (slurm.conf changed)"
                                      if st[0] == "running" else f"started {daemon}"))
    for ln in lines:
        say(f"{c.name}: {ln}")
    return lines


def _contexts(machines, head, o: SetupOptions, compute_names: set[str]) -> list[Ctx]:
    if not machines:  # e.g. no compute node (a resize to 0)
        return []
    ctxs = [_ctx(m, o, head, m.name in compute_names) for m in machines]
    _known(ctxs, o, head)
    return ctxs


def start_controller(head, options, say=print) -> list[str]:
    o = SetupOptions.of(options)
    (c,) = _contexts([head], head, o, set())
    return _daemon(c, "slurmctld", say)


def start_slurmd(nodes, options, say=print) -> dict[str, list[str]]:
    o = SetupOptions.of(options)
    ctxs = _contexts(nodes, None, o, {n.name for n in nodes})
    pre: dict[str, list[str]] = {c.name: [] for c in ctxs}
    for c in ctxs:  # one after the other: machines may share one munged
        _ensure_munged(c, pre[c.name], say)
    out = _parallel(lambda c: (c.name, pre[c.name] + _daemon(c, "slurmd", say, True)), ctxs)
    return dict(out)


def _stop(c: Ctx, daemon: str, node: str | None) -> str:
    r = c.remote.lib(daemon, "pb_stop", c.lay.pidfile(daemon, node), daemon,
                     c.lay.record(daemon, node), timeout=60)
    return f"{daemon}: " + (f"stopped {daemon}" if r.stdout.startswith("stopped") else
                            f"{daemon} already stopped")


def stop_slurmd(nodes, options, say=print) -> dict[str, list[str]]:
    o = SetupOptions.of(options)
    ctxs = _contexts(nodes, None, o, {n.name for n in nodes})

    def one(c):
        line = _stop(c, "slurmd", c.name)
        say(f"{c.name}: {line}")
        return c.name, [line]
    return dict(_parallel(one, ctxs))


def stop_controller(head, options, say=print) -> list[str]:
    o = SetupOptions.of(options)
    (c,) = _contexts([head], head, o, set())
    line = _stop(c, "slurmctld", None)
    say(f"{c.name}: {line}")
    return [line]


def remove_nodes(nodes, head, options, say=print) -> dict[str, list[str]]:
    """Nodes leaving a cluster that stays (its head among them not): slurmd stopped, the node's
    own files removed, and on a machine that does not share them with the head, its munged
    and the per-cluster folders too."""
    o = SetupOptions.of(options)
    ctxs = _contexts(_machines(nodes, head), head, o, {n.name for n in nodes})
    hc, leaving = ctxs[0], ctxs[1:]
    token = os.urandom(8).hex()
    marks = [f"{hc.lay.root}/run/.leave-check", f"{hc.lay.run}/.leave-check"]
    for m in marks:
        hc.remote.lib("remove", "pb_write", m, token)

    def one(c):
        lines = [_stop(c, "slurmd", c.name)]
        c.remote.lib("remove", "pb_rm", *c.lay.node_files(c.name), c.lay.spool(c.name))
        lines.append(f"remove: removed the files of node {c.name}")
        root_shared, run_shared = (c.remote.lib("remove", "pb_cat", m).stdout.strip() == token
                                   for m in marks)
        if not run_shared:
            lines.append(_stop(c, "munged", None))
            c.remote.lib("remove", "pb_rm", c.lay.run)
        if not root_shared:
            c.remote.lib("remove", "pb_rm", c.lay.root)
            c.remote.lib("remove", "pb_rmdir_empty", c.lay.root.rsplit("/", 1)[0])
            lines.append(f"remove: removed {c.lay.root}")
        for ln in lines:
            say(f"{c.name}: {ln}")
        return c.name, lines
    try:
        return dict(_parallel(one, leaving))
    finally:
        hc.remote.lib("remove", "pb_rm", *marks, check=False)


def _slurm(hc: Ctx, argv: list[str], timeout: float = 30, check: bool = False):
    return hc.remote.run("slurm", ["env", f"SLURM_CONF={hc.lay.conf}", hc.bin(argv[0]),
                                   *argv[1:]], timeout=timeout, check=check)


def stop_all(nodes, head, options, say=print, remove: bool = False) -> dict[str, list[str]]:
    o = SetupOptions.of(options)
    names = {n.name for n in nodes}
    ctxs = _contexts(_machines(nodes, head), head, o, names)
    report: dict[str, list[str]] = {c.name: [] for c in ctxs}
    hc = next(c for c in ctxs if c.is_head)

    def note(c, line):
        report[c.name].append(line)
        say(f"{c.name}: {line}")
    st = hc.remote.lib("slurmctld", "pb_status", hc.lay.pidfile("slurmctld"), "slurmctld",
                       hc.lay.record("slurmctld")).stdout.split()
    if st and st[0] == "running":
        r = _slurm(hc, ["scancel", "--user", hc.facts.get("user") or "root"], timeout=30)
        if r.returncode == 0:
            note(hc, "jobs: cancelled the cluster's jobs")
            time.sleep(1)

    def slurmd(c):
        if c.compute:
            note(c, _stop(c, "slurmd", c.name))
    _parallel(slurmd, ctxs)
    note(hc, _stop(hc, "slurmctld", None))

    def munged_and_files(c):
        note(c, _stop(c, "munged", None))
        if remove:
            problem = c.lay.check()
            if problem:
                raise c.remote.fail("remove", problem, "remove the folders by hand")
            c.remote.lib("remove", "pb_rm", c.lay.root, c.lay.run, timeout=120)
            c.remote.lib("remove", "pb_rmdir_empty", c.lay.root.rsplit("/", 1)[0])
            note(c, f"remove: removed {c.lay.root} and {c.lay.run}")
    for c in ctxs:  # one after the other: machines may share the folders
        munged_and_files(c)
    return report


# -- SLURM's view -------------------------------------------------------------------------
def node_states(head, options) -> dict[str, str]:
    """{node: state} from sinfo on the head ({} when slurmctld does not answer)."""
    o = SetupOptions.of(options)
    (hc,) = _contexts([head], head, o, set())
    r = _slurm(hc, ["sinfo", "-h", "-N", "-o", "%N %T"])
    out = {}
    if r.returncode == 0:
        for line in r.stdout.splitlines():
            bits = line.split()
            if len(bits) == 2:
                out[bits[0]] = bits[1]
    return out


def wait_idle(nodes, head, options, timeout: float = 120, say=print) -> dict[str, str]:
    """Until SLURM on the head sees every node up (idle, mixed, allocated); a node that came up
    down or drained is resumed once."""
    o = SetupOptions.of(options)
    (hc,) = _contexts([head], head, o, set())
    want = [n.name for n in nodes]
    t0 = time.time()
    resumed: set[str] = set()
    states: dict[str, str] = {}
    while True:
        r = _slurm(hc, ["sinfo", "-h", "-N", "-o", "%N %T"])
        states = dict(ln.split() for ln in r.stdout.splitlines() if len(ln.split()) == 2) \
            if r.returncode == 0 else {}
        up = {n: states.get(n, "").rstrip("*~#$@+!%^-").startswith(_UP) for n in want}
        if all(up.values()):
            say(f"slurm sees {len(want)} node(s) up: " +
                ", ".join(f"{n} {states[n]}" for n in want))
            return {n: states[n] for n in want}
        for n in want:
            if states.get(n, "").startswith(("drain", "down")) and not \
                    states[n].endswith("*") and n not in resumed:
                _slurm(hc, ["scontrol", "update", f"NodeName={n}", "State=RESUME"])
                resumed.add(n)
        if time.time() - t0 > timeout:
            bad = [n for n in want if not up[n]]
            raise hc.remote.fail(
                "wait", f"node(s) {', '.join(bad)} not up within {timeout:g}s (states: " +
                ", ".join(f"{n} {states.get(n, 'unknown')}" for n in bad) + ")",
                f"see {hc.lay.log('slurmctld')} on the head and {hc.lay.root}/log/slurmd-NODE"
                ".log on the nodes (a firewall between head and nodes? the slurmd port must be "
                "reachable from the head and the slurmctld port from the nodes)")
        time.sleep(1)


def target_fields(name: str, head, options) -> dict:
    """The fields of the targets.Target `up` registers: SSH to the head, SLURM_CONF set."""
    o = SetupOptions.of(options)
    s = (head.extra or {}).get("pb") or {}
    if not s.get("layout"):
        raise ClusterError(f"cluster '{name}' is not set up yet (no layout on its head)",
                           f"run `pb cluster up` for '{name}'")
    lay = Layout.from_json(s["layout"])
    return {"name": name, "scheduler": "slurm", "host": _host(head),
            "ssh_config": o.ssh_config,
            "ssh_options": list(o.ssh_options) + (["-l", o.user] if o.user else []),
            "connect_timeout": int(o.connect_timeout), "workdir": o.workdir,
            "python": o.python, "env": {"SLURM_CONF": lay.conf},
            "description": f"pb cluster {name} (provider ssh, head {_host(head)})"}


def ssh_argv(node, options, conf: str | None = None) -> list[str]:
    """An interactive shell on the node (SLURM_CONF set to the cluster's when given)."""
    import shlex
    o = SetupOptions.of(options)
    argv = ["ssh"] + (["-F", os.path.expanduser(o.ssh_config)] if o.ssh_config else [])
    argv += ["-o", f"ConnectTimeout={o.connect_timeout}", *o.ssh_options]
    argv += (["-l", o.user] if o.user else []) + ["-t", _host(node)]
    if conf:
        argv += ["--", shlex.join(["env", f"SLURM_CONF={conf}", "sh", "-c",
                                   'exec "${SHELL:-/bin/sh}" -l'])]
    return argv


def drain_nodes(nodes, head, options, timeout: float = 600, say=print) -> list[str]:
    """Nodes about to leave: drained in slurmctld on the head (they take no new job), then
    waited for until no job runs there. Returns the names slurmctld knew."""
    o = SetupOptions.of(options)
    (hc,) = _contexts([head], head, o, set())
    r = _slurm(hc, ["sinfo", "-h", "-N", "-o", "%N %T"])
    states = dict(ln.split() for ln in r.stdout.splitlines() if len(ln.split()) == 2) \
        if r.returncode == 0 else {}
    names = [n.name for n in nodes if n.name in states]
    for n in names:
        if not states[n].startswith(("drain", "down")):
            _slurm(hc, ["scontrol", "update", f"NodeName={n}", "State=DRAIN",
                        "Reason=pb_cluster_resize"], check=True)
            say(f"{n}: drained (takes no new job)")
    t0 = last = time.time()
    while names:
        r = _slurm(hc, ["squeue", "-h", "-w", ",".join(names), "-t", "RUNNING,COMPLETING,"
                        "CONFIGURING,SUSPENDED,STOPPED", "-o", "%i"], check=True)
        jobs = r.stdout.split()
        if not jobs:
            break
        if time.time() - t0 > timeout:
            raise ClusterError(f"node(s) {', '.join(names)} still run {len(jobs)} job(s) after "
                               f"{timeout:g}s (drained: they take no new ones)",
                               f"wait and repeat the resize, or cancel the jobs (scancel "
                               f"{' '.join(jobs)} on the head)")
        if time.time() - last >= 10:
            say(f"  waiting for {len(jobs)} running job(s) on {', '.join(names)} to end")
            last = time.time()
        time.sleep(1)
    return names
