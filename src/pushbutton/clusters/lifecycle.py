"""`pb cluster up` and `down`: build a cluster from a template, bring it back, take it away.

`up` is a reconciliation, safe to repeat: it records the resolved template and the planned
nodes first, then walks the steps — prepare (the provider's cluster-wide part), create the
nodes, the controller (munged + slurmctld, for providers whose controller is this host), setup,
start each slurmd, wait until every node takes jobs, register the target — and each step looks
at what is really there (a daemon that died is started again, a namespace that vanished is
made again). Every node's stage is saved the moment it changes, so an `up` that failed half-way
resumes where it stopped; each action prints one line, and an `up` with nothing to do says so.

Providers whose controller is a head node they reach over SSH (ssh, gce, aws, openstack:
`controller()` names it) are given every node for setup and start (slurm.conf names them all,
the head is one of them or kept by the provider), wait for their nodes themselves, and keep
their records in the node objects: `state.call` saves those after every call, also when it
fails, so a create that made two machines of three has them on record for the next `up`.
"""
from __future__ import annotations

import shutil
import time

from pushbutton.clusters import controller, elastic, procs, target
from pushbutton.clusters.cluster import Cluster, ClusterError, check_name
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.resize import finish_removal
from pushbutton.clusters.state import call, plan_nodes, provider_for, remote, template_of
from pushbutton.clusters.templates import Template, get as get_template, with_flags

READY_TIMEOUT = 120


class Say:
    """`say` that counts what it said, so `up` knows whether it did anything (a line saying a
    remote step found everything done does not count)."""
    QUIET = (" already ", ": ok (", "slurm sees ")

    def __init__(self, say):
        self.say, self.n = say, 0

    def __call__(self, line: str) -> None:
        if not any(q in f" {line}" for q in self.QUIET):
            self.n += 1
        self.say(line)


def _resolve(template: str, name: str | None, flags: dict, root) -> tuple[Cluster, Template]:
    """Which cluster `up TEMPLATE [NAME]` means, and its template."""
    from pushbutton.execution.targets import BUILTIN
    if name is None:
        name = template if template not in BUILTIN else f"{template}1"
    cl = Cluster(name)
    if cl.exists():
        t = template_of(cl)
        if template not in (t.name, cl.name):
            raise ClusterError(f"cluster '{name}' exists, built from template '{t.name}'",
                               f"`pb cluster up {t.name} {name}` resumes it; `pb cluster down "
                               f"{name} --delete` removes it first")
        if any(flags.values()):
            want = with_flags(t, **flags)
            if want.model_dump(exclude={"file"}) != t.model_dump(exclude={"file"}):
                fix = _change_fix(name, t, want)
                raise ClusterError(f"cluster '{name}' exists and the flags ask for a different "
                                   "cluster", fix)
        return cl, t
    check_name(name)
    return cl, with_flags(get_template(template, root), **flags)


def _change_fix(name: str, t: Template, want: Template) -> str:
    """The command that makes an existing cluster what the new flags ask for."""
    if t.provider == "ssh" and want.options.get("hosts") != t.options.get("hosts") and \
            want.model_dump(exclude={"file", "ssh", "nodes"}) == \
            t.model_dump(exclude={"file", "ssh", "nodes"}):
        hosts = " ".join(f"--host {h}" for h in want.options.get("hosts") or [])
        return f"`pb cluster resize {name} {hosts}` makes these its machines"
    same_shape = all(want.nodes[g].model_dump(exclude={"count", "max"}) ==
                     t.nodes[g].model_dump(exclude={"count", "max"}) for g in t.nodes) and \
        want.model_dump(exclude={"file", "nodes"}) == t.model_dump(exclude={"file", "nodes"})
    changed = [g for g in t.nodes if want.nodes[g].count != t.nodes[g].count]
    if same_shape and len(changed) == 1:
        g = changed[0]
        group = "" if g == t.static_groups()[0] or g == "compute" else f" --group {g}"
        return (f"`pb cluster resize {name} ={want.nodes[g].count}{group}` changes the number "
                "of nodes")
    return f"`pb cluster down {name} --delete`, then up with the new flags"


def up(template: str, name: str | None = None, *, nodes=(), cpus=(), memory=(), gres=(),
       options=(), hosts=(), dry_run: bool = False, timeout: float = READY_TIMEOUT, say=print,
       root=None) -> dict:
    """Build cluster NAME from TEMPLATE, or resume/bring it back; register its target."""
    flags = dict(nodes=nodes, cpus=cpus, memory=memory, gres=gres, options=options,
                 hosts=hosts)
    cl, t = _resolve(template, name, flags, root)
    say = Say(say)
    prov = provider_for(cl, t, say)
    elastic.check(t, prov)  # the template's mistakes before the host's
    fresh = not cl.exists()
    if dry_run:
        return _dry_run(cl, t, prov, fresh, say)
    prov.check()
    with cl.lock(say=say.say):  # SLURM's power programs write the state too
        fresh = not cl.exists()
        if fresh:
            planned = plan_nodes(t, prov)
            cl.data.update(name=cl.name, created=time.time(), provider=t.provider, steps={},
                           template=t.model_dump())
            cl.put_nodes(planned)
            say(f"cluster '{cl.name}': template {t.name} ({t.file}), provider {t.provider}, "
                f"{len(planned)} node(s)" + _elastic_note(planned))
        else:
            done = ", ".join(cl.data.get("steps", {})) or "none"
            say.say(f"cluster '{cl.name}' exists (template {t.name}); steps done before: "
                    f"{done}")
        try:
            _reconcile(cl, t, prov, say, timeout)
        except ClusterError as e:
            raise ClusterError(e.message, (e.fix + "; " if e.fix else "") +
                               f"`pb cluster up {cl.name}` resumes (`pb cluster status "
                               f"{cl.name}` shows each node's stage)", file=e.file,
                               key=e.key) from None
    return {"name": cl.name, "acted": say.n > 0}


def _elastic_note(nodes: list[Node]) -> str:
    k = sum(n.elastic for n in nodes)
    return f", {k} of them elastic (SLURM starts them when jobs need them)" if k else ""


def _dry_run(cl: Cluster, t: Template, prov, fresh: bool, say) -> dict:
    """The plan first (a bad template is an error already there), then the checks `up` makes
    before anything is built: what fails (no credentials, no root) is an error after the plan,
    so --dry-run shows e.g. the cost before the credentials are set up."""
    planned = plan_nodes(t, prov, None if fresh else cl.nodes)
    plan = prov.plan(planned)
    say(f"cluster '{cl.name}' (template {t.name}, provider {t.provider}"
        + (", already built" if not fresh else "") + f"): {len(planned)} node(s)"
        + _elastic_note(planned))
    for line in plan:
        say(f"  {line}")
    try:
        prov.check()
    except ClusterError as e:
        raise ClusterError(f"dry run: nothing was made, and `up` would stop here: {e.message}",
                           e.fix, file=e.file, key=e.key) from None
    say(f"dry run: nothing was made; `pb cluster up {t.name} {cl.name}` builds it")
    return {"name": cl.name, "dry_run": True, "plan": plan}


def _reconcile(cl: Cluster, t: Template, prov, say: Say, timeout: float) -> None:
    before = say.n
    far = remote(prov)   # slurmctld on a head node reached over SSH (ssh, cloud)
    nodes = cl.nodes
    leaving = [n for n in nodes if n.extra.get("leaving")]
    if leaving:
        say(f"finishing the removal of {', '.join(n.name for n in leaving)} (an earlier resize)")
        finish_removal(cl, t, prov, leaving, say)
        nodes = cl.nodes
    prov.prepare()
    cl.step_done("prepare")
    nodes = _fixed(cl)  # elastic nodes are SLURM's to start (its power saving)
    if nodes:
        call(cl, prov.create, nodes)  # makes what is missing (says so), keeps what is there
    cl.step_done("create")
    nodes = _fixed(cl)
    elastic.configure(cl, t, prov)
    if not far:
        _controller(cl, t, prov, say, cl.nodes)
    cl.step_done("controller")
    need = [n for n in nodes if n.stage == "created"]
    if need:
        if t.setup:
            say(f"setting up {len(need)} node(s) ({len(t.setup)} step(s) each)")
        call(cl, prov.setup, nodes if far else need)  # remote: slurm.conf names them all
    cl.step_done("setup")
    nodes = _fixed(cl)
    known = controller.nodes_info(cl) if not far else None
    for n in nodes:  # a node slurmctld holds as a FUTURE slot (a resize was interrupted)
        if known is not None and n.name not in known:
            say(f"  {n.name}: activating its slot in slurmctld")
            controller.activate(cl, n)
    if nodes:
        call(cl, prov.start, nodes)  # a remote provider waits until SLURM sees them up
    cl.step_done("start")
    if far:
        got = prov.node_states() or {}
        states = {n.name: got[n.name] for n in nodes if n.name in got}
    elif nodes:
        if say.n > before:
            say(f"waiting for {len(nodes)} node(s) to take jobs")
        states = controller.wait_ready(cl, [n.name for n in nodes], timeout, say)
    else:
        states = {}
    if elastic.has_elastic(t):
        elastic.reconcile(cl, t, prov, say)
        k = sum(n.elastic for n in cl.nodes)
        states[f"{k} elastic"] = "on demand"
    cl.step_done("ready")
    registered = target.registered(cl)
    path = target.register(cl, prov.target(), f"pb cluster {cl.name} (template {t.name}, "
                           f"provider {t.provider})")
    cl.step_done("target")
    summary = ", ".join(f"{n} {s}" for n, s in states.items()) or "no nodes"
    if say.n == before and registered:
        say(f"cluster '{cl.name}' is already up ({summary}); nothing to do")
    else:
        say(f"cluster '{cl.name}' is up ({summary}); target '{cl.name}' in {path}")
        say(f"  pb run SPEC.toml --on {cl.name}")


def _fixed(cl: Cluster) -> list[Node]:
    """The nodes `up` starts: every node but the elastic ones."""
    return [n for n in cl.nodes if not n.elastic]


def _controller(cl: Cluster, t: Template, prov, say: Say, nodes: list[Node]) -> None:
    """munged + slurmctld on this host, with a slurm.conf written from the state."""
    running = controller.slurmctld_pid(cl)
    if running and controller.ping(cl):
        return
    say(f"starting the controller of '{cl.name}'")
    if running:  # alive but not answering: start it afresh
        procs.stop_daemon(cl.pidfile("slurmctld"), "slurmctld")
    live = [n for n in nodes if prov.slurmd_pid(n)]  # providers on this host (OnHost)
    if controller.ensure_ports(cl, prov.controller_address(), slurmd_too=not live):
        say("  the recorded ports are taken: new ports; running slurmds start again")
        call(cl, prov.stop, live)
        live = []
    controller.ensure_munge(cl, say)
    controller.write_conf(cl, t, prov, cl.nodes)
    cl.save()
    controller.start_slurmctld(cl, clean=not live, say=say)


def down(name: str, delete: bool = False, say=print, force: bool = False) -> None:
    """Stop every daemon and take every node away (their records stay, so `up` rebuilds the
    same cluster); with delete, also forget the cluster: its folder and its target. With force
    (and delete), a machine that cannot be reached does not stop the forgetting: what is left
    there is named, to be removed by hand."""
    cl = Cluster(name)
    if not cl.exists():
        if delete and cl.dir.exists():  # a folder without state: remove what is there
            shutil.rmtree(cl.dir, ignore_errors=True)
            say(f"deleted {cl.dir}")
            return
        raise ClusterError(f"no cluster named '{name}'", "`pb cluster list` shows them")
    t = template_of(cl)
    prov = provider_for(cl, t, say)
    with cl.lock(say=say):  # a power program SLURM runs meanwhile waits, then does nothing
        nodes = cl.nodes
        # elastic ones SLURM started too; a cloud machine is on record (by id) before it runs
        live = [n for n in nodes if n.stage != "planned" or n.extra.get("id")]
        try:
            stopped = _take_away(cl, prov, live)
        except ClusterError as e:
            if not (delete and force):
                raise ClusterError(e.message, (e.fix + "; " if e.fix else "") + "a machine "
                                   f"gone for good: `pb cluster down {name} --delete --force` "
                                   "forgets the cluster anyway", file=e.file,
                                   key=e.key) from None
            stopped = []
            say(f"could not take every node away: {e.message.splitlines()[0]}")
            say("forgetting the cluster anyway (--force); what may be left, to remove by hand: "
                + "; ".join(f"{n.name} ({_where(n)})" for n in cl.nodes
                            if n.stage != "planned" or n.extra.get("id")))
        prov.teardown()
        nodes = cl.nodes
        for n in nodes:  # every machine is gone: `up` makes them again
            if n.name in {x.name for x in live}:
                n.stage = "planned"
            n.extra.pop("power", None)
        cl.data["steps"] = {}
        cl.put_nodes(nodes)
    woke = [n.name for n in live if n.elastic]
    say(f"cluster '{name}' is down: " + (f"stopped {', '.join(stopped)}; " if stopped else "")
        + (f"{len(live)} node(s) taken away" if live else "no node was up")
        + (f" ({', '.join(woke)} started by SLURM)" if woke else ""))
    if delete:
        removed = target.remove(cl)
        if cl.run_dir != cl.dir:
            shutil.rmtree(cl.run_dir, ignore_errors=True)
        shutil.rmtree(cl.dir, ignore_errors=True)
        say(f"deleted {cl.dir}" + (f" and target '{name}'" if removed else ""))


def _take_away(cl: Cluster, prov, live: list[Node]) -> list[str]:
    """Every daemon stopped and every live node taken away; the daemons stopped on this host."""
    if remote(prov):  # destroy stops every daemon first (ssh), or takes the machines (cloud)
        if live:
            call(cl, prov.destroy, live)
        return []
    if live:
        call(cl, prov.stop, live)
    stopped = controller.stop(cl)
    if live:
        call(cl, prov.destroy, live)
    return stopped


def _where(n: Node) -> str:
    e = n.extra or {}
    pb = (e.get("pb") or {}).get("layout") or {}
    bits = [f"machine {e['id']}" if e.get("id") else None, f"ssh {e['host']}" if e.get("host")
            else None, pb.get("root"), e.get("netns")]
    return ", ".join(b for b in bits if b) or "no record of where"
