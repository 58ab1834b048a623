"""The read-only side of `pb cluster`: status (nodes and their SLURM state from one sinfo call),
list, templates, and what `ssh` runs."""
from __future__ import annotations

import os
import shlex

from pushbutton.clusters import controller, elastic, target
from pushbutton.clusters.cluster import Cluster, ClusterError, list_names
from pushbutton.clusters.providers.remote_ctl import CONTROLLER
from pushbutton.clusters.state import existing, provider_for, template_of
from pushbutton.clusters.templates import files as template_files, load_all


def status(name: str, cl: Cluster | None = None) -> dict:
    cl = cl or existing(name)
    t = template_of(cl)
    prov = provider_for(cl, t)
    here = prov.controller() is None
    pid = controller.slurmctld_pid(cl) if here else None
    if here:
        info = controller.nodes_info(cl) if pid else None
    else:  # sinfo on the head, over SSH (None: it does not answer)
        states = prov.node_states() if cl.done("setup") else None
        info = None if states is None else {k: {"state": v} for k, v in states.items()}
    nodes = []
    for n in cl.nodes:
        s = (info or {}).get(n.name, {})
        slurmd = getattr(prov, "slurmd_pid", lambda n: None)(n)
        slurm = s.get("state") or ("-" if info is None else "not in slurm")
        nodes.append({"name": n.name, "group": n.group, "stage": n.stage, "addr": n.addr,
                      "slurm": slurm, "cpus": n.cpus, "memory": n.memory, "gres": n.gres,
                      "reason": s.get("reason"), "slurmd_pid": slurmd,
                      "leaving": bool(n.extra.get("leaving")), "elastic": n.elastic,
                      "power": elastic.power_of(t, n, slurm if info is not None else None),
                      "power_record": n.extra.get("power")})
    def takes(x):  # jobs, or is the head that runs slurmctld only (ssh, cloud)
        return controller.ready(x["slurm"]) or x["slurm"] == CONTROLLER
    ready = [x for x in nodes if takes(x)]
    answering = info is not None
    fixed = [x for x in nodes if not x["elastic"]]  # elastic ones are off until jobs come
    up = answering and all(takes(x) for x in fixed) and cl.done("ready")
    return {"name": cl.name, "template": t.name, "template_file": t.file,
            "provider": t.provider, "up": up,
            "state": "up" if up else ("partial" if answering or cl.data.get("steps") else
                                       "down"),
            "controller": {"slurmctld_pid": pid, "munged_pid": controller.munged_pid(cl)
                           if here else None, **controller.ctl(cl)},
            "remote": None if here else _remote(cl, prov),
            "nodes": nodes, "ready": len(ready),
            "cpus": sum(x["cpus"] for x in ready if x["slurm"] != CONTROLLER),
            "steps": sorted(cl.data.get("steps", {}), key=cl.data.get("steps", {}).get),
            "target": cl.name if target.registered(cl) else None,
            "problems": elastic.problems(cl),
            "elastic": {"suspend_time": t.elastic.suspend_time,
                        "resume_timeout": t.elastic.resume_timeout,
                        "log": str(cl.log_dir / "power.log")} if elastic.has_elastic(t)
            else None,
            "conf": str(cl.conf), "dir": str(cl.dir),
            "provider_data": dict(cl.provider_data)}


def _remote(cl: Cluster, prov) -> dict:
    """Where a remote controller is: its node, its SSH destination, its slurm.conf there."""
    try:
        _, head, _ = prov.access()
        conf = prov.conf_path()
    except ClusterError:
        return {"head": prov.controller(), "host": None, "conf": None}
    return {"head": head.name, "host": (head.extra or {}).get("host"), "conf": conf}


def list_clusters() -> list[dict]:
    out = []
    for name in list_names():
        try:
            s = status(name)
        except ClusterError as e:
            out.append({"name": name, "template": "?", "provider": "?", "up": False,
                        "state": f"unreadable: {e.message}", "nodes": [], "ready": 0,
                        "cpus": 0, "target": None})
            continue
        out.append({k: s[k] for k in ("name", "template", "provider", "up", "state", "ready",
                                      "cpus", "target")} | {"nodes": len(s["nodes"])})
    return out


def templates(root=None) -> list[dict]:
    """Every template (built-in and from files), where each is defined, its node groups."""
    found = load_all(root)
    out = []
    for name, t in sorted(found.items()):
        groups = []
        for g, grp in t.nodes.items():
            size = f"{grp.count}" if not grp.elastic else f"{grp.min}-{grp.max} elastic"
            if t.provider == "ssh" and len(t.nodes) == 1:
                size = f"{grp.count} (one per host)" if t.options.get("hosts") else \
                    "one per --host"
            groups.append(f"{g}: {size} x {grp.cpus} CPU, {grp.memory} MB"
                          + (f", {grp.gres}" if grp.gres else ""))
        out.append({"name": name, "provider": t.provider, "nodes": "; ".join(groups),
                    "defined": t.file, "description": t.description})
    return out


def template_files_read(root=None) -> list[str]:
    return [str(p) for p in template_files(root) if p.exists()]


def shell(name: str, node: str | None = None, command: tuple[str, ...] = ()) -> tuple[list[str],
                                                                                     dict]:
    """(argv, env) of `pb cluster ssh NAME [NODE] [-- COMMAND]`: on this host with the cluster's
    SLURM_CONF, or inside NODE (netns: its namespace and hostname); for a remote controller
    (ssh, cloud) ssh to NODE, else to the head (SLURM_CONF set there once setup ran)."""
    cl = existing(name)
    t = template_of(cl)
    prov = provider_for(cl, t)
    n = None
    if node is not None:
        n = cl.node(node)
        if n.stage == "planned":
            raise ClusterError(f"node {node} of '{name}' does not exist now (stage planned)",
                               f"`pb cluster up {name}` builds it")
    if prov.controller() is not None:  # ssh to the node, or to the head
        prov.access()  # which node is the head
        if command:
            return prov.command_argv(n, list(command)), dict(os.environ)
        return prov.shell(n), dict(os.environ)
    if command and n is None:
        return list(command), cl.env()
    if command and hasattr(prov, "wrap"):  # nodes on this host
        return prov.wrap(n, list(command)), cl.env()
    try:
        argv = prov.shell(n)
    except NotImplementedError as e:
        raise ClusterError(str(e), f"`{export_line(cl)}` and use SLURM's commands") from None
    return [*argv, *command], cl.env()


def export_line(cl: Cluster | str) -> str:
    cl = existing(cl) if isinstance(cl, str) else cl
    return f"export SLURM_CONF={shlex.quote(str(cl.conf))}"

