"""`pb cluster resize NAME +K|-K|=K`: nodes join and leave a running cluster, and SLURM sees
it at once — no restart of slurmctld.

How (SLURM 22.05, verified): slurm.conf names every free slot of a group up to its `max` as
`State=FUTURE` (without an address). A joining node is created and set up by its provider, then
`scontrol update NodeName=X NodeAddr=A NodeHostname=X State=RESUME` turns its slot into a node
slurmctld schedules on, and its slurmd starts and registers. A leaving node is drained
(`State=DRAIN`), waited for until it runs no job, its slurmd stopped, its slot set back to
`State=FUTURE` (slurmctld forgets it: sinfo no longer lists it) and the provider takes it away.
Zero nodes is a legal size: sbatch still queues jobs (pending) until nodes join again. The
slurm.conf is rewritten after each change, for the next start of slurmctld.

A remote controller (ssh, cloud: slurmctld on a head node) has no FUTURE slots: the provider
writes the slurm.conf of the new set of nodes on every machine and restarts slurmctld and the
running slurmds (jobs survive that); leaving nodes are drained there first. An ssh cluster's
nodes are its machines: `resize NAME --host ws1 --host ws3` makes those its machines (hosts
not listed leave, new ones join; the head stays).
"""
from __future__ import annotations

import json
import re
import time

from pushbutton.clusters import controller, target
from pushbutton.clusters.cluster import Cluster, ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.state import (call, existing, provider_for, rewrite_conf,
                                       template_of)
from pushbutton.clusters.templates import DEFAULT_GROUP, Template, with_flags

DRAIN_TIMEOUT = 600
REASON = "pb_cluster_resize"


def parse_change(text: str, have: int) -> int:
    """'+2' / '-1' / '=3' (or '3') -> the new node count."""
    m = re.fullmatch(r"\s*([+=-]?)\s*(\d+)\s*", text or "")
    if not m:
        raise ClusterError(f"resize {text!r}: not +K, -K or =K",
                           "e.g. `pb cluster resize NAME +1`, `-2` or `=0`")
    op, k = m.group(1), int(m.group(2))
    return have + k if op == "+" else have - k if op == "-" else k


def _group(t: Template, group: str | None, name: str = "NAME") -> str:
    static = t.static_groups()
    if group == "head" and t.provider in ("gce", "aws", "openstack"):
        raise ClusterError("group 'head' is the node that runs slurmctld: it stays",
                           "resize the compute nodes (leave out --group)")
    elastic = [g for g in t.nodes if g not in static]
    if (group in elastic) or (not group and not static):
        g = group or elastic[0]
        raise ClusterError(f"node group '{g}' is elastic: SLURM starts and stops its nodes "
                           f"(between min {t.nodes[g].min} and max {t.nodes[g].max}) as jobs "
                           "need them", f"change min/max in [templates.{t.name}.nodes.{g}] "
                           f"({t.file}), then `pb cluster down {name} --delete` and up again",
                           file=t.file, key=f"templates.{t.name}.nodes.{g}")
    if group:
        if group not in static:
            raise ClusterError(f"template '{t.name}' has no static node group '{group}'",
                               f"its groups: {', '.join(static) or 'none'}")
        return group
    if len(static) == 1:
        return static[0]
    if DEFAULT_GROUP in static:
        return DEFAULT_GROUP
    raise ClusterError("the cluster has several node groups", f"name one: --group {static[0]}")


def resize(name: str, change: str | None, group: str | None = None, *, hosts=(),
           timeout: float = 120, drain_timeout: float = DRAIN_TIMEOUT, say=print) -> dict:
    cl = existing(name)
    with cl.lock(say=say):  # one writer of the state (SLURM's power programs write it too)
        return _resize(cl, name, change, group, hosts, timeout, drain_timeout, say)


def _resize(cl: Cluster, name: str, change: str | None, group: str | None, hosts,
            timeout: float, drain_timeout: float, say) -> dict:
    t = template_of(cl)
    if t.provider == "ssh" or hosts:
        return resize_hosts(cl, t, list(hosts), change, say, timeout, drain_timeout)
    if change is None:
        raise ClusterError("resize needs +K, -K or =K", f"e.g. `pb cluster resize {name} +1`")
    prov = provider_for(cl, t, say)
    group = _group(t, group, name)
    g = t.nodes[group]
    leaving = [n for n in cl.nodes if n.extra.get("leaving")]
    if leaving and _controller_up(cl, prov):
        say(f"finishing the removal of {', '.join(n.name for n in leaving)} (an earlier resize)")
        finish_removal(cl, t, prov, leaving, say, drain_timeout)
    mine = [n for n in cl.nodes if n.group == group]
    want = parse_change(change, len(mine))
    if want < 0:
        raise ClusterError(f"group '{group}' has {len(mine)} node(s); cannot go to {want}",
                           f"`pb cluster resize {name} =0` removes every node")
    if want > g.max:
        where = f"[templates.{t.name}.nodes.{group}] max = N"
        raise ClusterError(f"group '{group}' of '{name}' may have at most {g.max} node(s) (its "
                           "slots in slurm.conf, fixed when the cluster was built)",
                           f"a template with {where} "
                           + (f"(in {t.file}) " if t.file != "built-in" else "(in "
                              "pushbutton-clusters.toml) ") +
                           f"and a new cluster: `pb cluster down {name} --delete`, then up",
                           file=None if t.file == "built-in" else t.file,
                           key=f"templates.{t.name}.nodes.{group}.max")
    if want == len(mine):
        say(f"cluster '{name}' has {want} node(s) in group '{group}'; nothing to do")
        return {"name": name, "nodes": want}
    if not _controller_up(cl, prov):
        _resize_records(cl, t, prov, group, mine, want)
        say(f"cluster '{name}' is not up; it will have {want} node(s) in group '{group}' at "
            f"`pb cluster up {t.name} {name}`")
        return {"name": name, "nodes": want}
    if want > len(mine):
        new = add_records(cl, t, prov, group, want - len(mine))
        say(f"adding {len(new)} node(s) to '{name}': {', '.join(n.name for n in new)}")
        join(cl, t, prov, new, say, timeout)
    else:
        victims = sorted(mine, key=_index)[want:]
        say(f"removing {len(victims)} node(s) from '{name}': "
            f"{', '.join(n.name for n in victims)} (drained first)")
        for n in victims:
            n.extra["leaving"] = True
            cl.update_node(n)
        finish_removal(cl, t, prov, victims, say, drain_timeout)
    rewrite_conf(cl, t, prov)
    target.forget_limits(cl)
    n_now = len([n for n in cl.nodes if n.group == group])
    say(f"cluster '{name}' now has {n_now} node(s) in group '{group}'")
    return {"name": name, "nodes": n_now}


def _index(n: Node) -> int:
    m = re.search(r"(\d+)$", n.name)
    return int(m.group(1)) if m else 0


def _controller_up(cl: Cluster, prov) -> bool:
    if prov.controller() is not None:
        return cl.done("start")
    return bool(controller.slurmctld_pid(cl)) and controller.ping(cl)


def add_records(cl: Cluster, t: Template, prov, group: str, k: int) -> list[Node]:
    g = t.nodes[group]
    names = {n.name for n in cl.nodes}
    new, i = [], 1
    while len(new) < k:
        name = prov.node_name(group, i)
        if name not in names:
            new.append(Node(name=name, group=group, cpus=g.cpus, memory=g.memory,
                            gres=g.gres))
        i += 1
    for n in new:
        cl.update_node(n)
    return new


def _resize_records(cl, t, prov, group, mine, want) -> None:
    if want > len(mine):
        add_records(cl, t, prov, group, want - len(mine))
        return
    drop = {n.name for n in sorted(mine, key=_index)[want:]}
    live = [n for n in cl.nodes if n.name in drop and n.stage != "planned"]
    if live:
        call(cl, prov.stop, live)
        call(cl, prov.destroy, live)
    cl.put_nodes([n for n in cl.nodes if n.name not in drop])


def join(cl: Cluster, t: Template, prov, nodes: list[Node], say, timeout: float) -> None:
    """New nodes into a running cluster: create, set up, activate their slots, start."""
    if prov.controller() is not None:
        return _join_remote(cl, prov, nodes, say)
    here = True
    call(cl, prov.create, nodes)
    need = [n for n in nodes if n.stage == "created"]
    if need:
        call(cl, prov.setup, need)
    rewrite_conf(cl, t, prov)  # the new slurmds read their own lines
    if here:
        known = controller.nodes_info(cl) or {}
        for n in nodes:
            if n.name not in known:
                controller.activate(cl, n)
    call(cl, prov.start, nodes)
    if here:
        states = controller.wait_ready(cl, [n.name for n in nodes], timeout, say)
        say("  " + ", ".join(f"{n} {s}" for n, s in states.items()))


def _join_remote(cl: Cluster, prov, nodes: list[Node], say) -> None:
    """New nodes into a cluster whose slurmctld runs on a head node: made, then every node
    set up (slurm.conf of all on every machine) and started; the provider waits for them."""
    call(cl, prov.create, [cl.node(n.name) for n in nodes])
    call(cl, prov.setup, cl.nodes)
    call(cl, prov.start, cl.nodes)
    states = prov.node_states() or {}
    say("  " + ", ".join(f"{n.name} {states.get(n.name, 'no answer')}" for n in nodes))


def finish_removal(cl: Cluster, t: Template, prov, nodes: list[Node], say,
                   drain_timeout: float = DRAIN_TIMEOUT) -> None:
    """Drain, wait until no job runs there, stop slurmd, back to a FUTURE slot, take away.
    A remote controller: drained there, stopped and taken away by the provider, then the
    others set up without them (slurm.conf on every machine, daemons restarted)."""
    local_ctl = prov.controller() is None
    known = (controller.nodes_info(cl) or {}) if local_ctl else {}
    for n in nodes:
        if n.name in known and not known[n.name]["state"].startswith(("drain", "down")):
            controller.drain(cl, n.name, REASON)
    if local_ctl:
        _wait_no_jobs(cl, [n.name for n in nodes if n.name in known], say, drain_timeout)
    elif cl.done("start"):
        prov.drain([cl.node(n.name) for n in nodes], drain_timeout, say)
    for n in nodes:
        n = cl.node(n.name)
        there = local_ctl or n.stage != "planned" or n.extra.get("id")
        if there:
            call(cl, prov.stop, [n])
        if n.name in known:
            controller.retire(cl, n.name)
        if there:
            call(cl, prov.destroy, [n])
        cl.put_nodes([x for x in cl.nodes if x.name != n.name])
        say(f"  {n.name}: removed")
    rest = cl.nodes
    if not local_ctl and rest and cl.done("start"):
        call(cl, prov.setup, rest)   # slurm.conf without them, on every machine
        call(cl, prov.start, cl.nodes)


def _named(nodes: list[Node]) -> str:
    return ", ".join(f"{n.name} ({n.extra.get('host')})" for n in nodes)


def resize_hosts(cl: Cluster, t: Template, hosts: list[str], change: str | None, say,
                 timeout: float, drain_timeout: float) -> dict:
    """Provider ssh: the cluster's machines become `hosts` (the head stays)."""
    name = cl.name
    if t.provider != "ssh":
        raise ClusterError(f"--host is for clusters of provider ssh; '{name}' has provider "
                           f"'{t.provider}'", f"`pb cluster resize {name} +1` adds a node")
    old = list(t.options.get("hosts") or [])
    if change is not None or not hosts:
        now = " ".join(f"--host {h}" for h in old)
        raise ClusterError(f"cluster '{name}' (provider ssh) has one node per machine: name "
                           "the machines it should have",
                           f"`pb cluster resize {name} {now} --host NEWHOST` adds one; leave "
                           "a --host out to remove that machine")
    head = t.options.get("head") or old[0]
    if head in old and head not in hosts:
        raise ClusterError(f"{head} runs slurmctld: it cannot leave the cluster",
                           f"keep --host {head}; another head: `pb cluster down {name} "
                           "--delete`, then up with the new hosts")
    opts = (f"head={json.dumps(head)}",) if "head" not in t.options and hosts[0] != head \
        else ()
    want = with_flags(t, hosts=hosts, options=opts)
    if want.options.get("hosts") == old:
        say(f"cluster '{name}' has these machines already; nothing to do")
        return {"name": name, "nodes": len(cl.nodes)}
    cl.data["template"] = want.model_dump()
    cl.save()
    prov = provider_for(cl, want, say)
    gone = [n for n in cl.nodes if n.extra.get("host") not in hosts]
    used = {n.extra.get("host") for n in cl.nodes}
    group = next(iter(want.nodes))
    g = want.nodes[group]
    names = {n.name for n in cl.nodes}
    new = []
    for nn, h in prov.host_names().items():
        if h in used:
            continue
        base, i = nn, 2
        while nn in names:
            nn, i = f"{base}-{i}", i + 1
        names.add(nn)
        new.append(Node(name=nn, group=group, cpus=g.cpus, memory=g.memory, gres=g.gres,
                        extra={"host": h}))
    up_now = _controller_up(cl, prov)
    if gone:
        say(f"removing {_named(gone)} from '{name}'" + (" (drained first)" if up_now else ""))
        for n in gone:
            n.extra["leaving"] = True
            cl.update_node(n)
        finish_removal(cl, want, prov, gone, say, drain_timeout)
    for n in new:
        cl.update_node(n)
    if new and up_now:
        say(f"adding {_named(new)} to '{name}'")
        _join_remote(cl, prov, new, say)
    elif new:
        say(f"cluster '{name}' is not up; {', '.join(n.name for n in new)} join at "
            f"`pb cluster up {want.name} {name}`")
    say(f"cluster '{name}' now has {len(cl.nodes)} machine(s): "
        + ", ".join(n.extra.get("host", n.name) for n in cl.nodes))
    return {"name": name, "nodes": len(cl.nodes)}


def _wait_no_jobs(cl: Cluster, names: list[str], say, timeout: float) -> None:
    t0 = last = time.time()
    while names:
        busy = {n: controller.jobs_on(cl, n) for n in names}
        busy = {n: j for n, j in busy.items() if j}
        if not busy:
            return
        if time.time() - t0 > timeout:
            raise ClusterError(f"node(s) {', '.join(busy)} still run jobs after {timeout:g}s "
                               "(drained: they take no new ones)",
                               f"wait and repeat the resize, or cancel the jobs (scancel "
                               f"{' '.join(j for js in busy.values() for j in js)})")
        if time.time() - last >= 10:
            say("  waiting for running jobs to end: " +
                ", ".join(f"{n} ({len(j)} job(s))" for n, j in busy.items()))
            last = time.time()
        time.sleep(0.5)
