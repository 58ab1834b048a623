"""The recorded cluster: its template, its provider, its planned nodes (shared by up/down,
resize and the read-only commands)."""
from __future__ import annotations

from pushbutton.clusters import controller
from pushbutton.clusters.cluster import Cluster, ClusterError
from pushbutton.clusters.providers import provider_class
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.templates import Template


def template_of(cl: Cluster) -> Template:
    """The template the cluster was built from (resolved, flags applied), as recorded."""
    rec = cl.data.get("template")
    if not rec:
        raise ClusterError(f"cluster '{cl.name}' has no recorded template (a damaged "
                           f"{cl.meta_path})", f"`pb cluster down {cl.name} --delete`, then "
                           "up again")
    t = Template.model_validate({k: v for k, v in rec.items() if k != "file"})
    t.file = rec.get("file")
    return t


def provider_for(cl: Cluster, t: Template, say=print):
    return provider_class(t.provider)(cl, t, say)


def call(cl: Cluster, method, nodes: list[Node]) -> None:
    """A provider method on `nodes`, then their records saved as the method left them
    (providers set each node's stage and data on the objects they are given)."""
    try:
        method(nodes)
    finally:
        names = {n.name for n in cl.nodes}
        for n in nodes:
            if n.name in names:
                cl.update_node(n)


def remote(prov) -> bool:
    """slurmctld runs on a machine the provider reaches over SSH (ssh, cloud), not here."""
    return prov.controller() is not None


def existing(name: str) -> Cluster:
    cl = Cluster(name)
    if not cl.exists():
        raise ClusterError(f"no cluster named '{name}'", "`pb cluster list` shows them; "
                           "`pb cluster up TEMPLATE NAME` builds one")
    return cl


def plan_nodes(t: Template, prov, have: list[Node] | None = None) -> list[Node]:
    """The nodes of the template's groups, keeping those recorded: a static group's `count`;
    an elastic group's `max`, of which the first `min` are always on (started by `up`) and the
    rest are `elastic` (State=CLOUD: SLURM's power saving starts and stops them)."""
    out = list(have or [])  # (ssh: prov.node_name names the i-th host's node)
    for group, g in t.nodes.items():
        mine = [n for n in out if n.group == group]
        i = 1
        while len(mine) < (g.max if g.elastic else g.count):
            name = prov.node_name(group, i)
            if all(n.name != name for n in out):
                n = Node(name=name, group=group, cpus=g.cpus, memory=g.memory, gres=g.gres,
                         elastic=g.elastic and i > g.min)
                out.append(n)
                mine.append(n)
            i += 1
    return out


def rewrite_conf(cl: Cluster, t: Template, prov) -> None:
    """The slurm.conf of the cluster's current nodes, for the next start (a running slurmctld
    does not re-read it; it learns of nodes through scontrol)."""
    if prov.controller() is None and controller.ctl(cl).get("ctld_port"):
        controller.write_conf(cl, t, prov)
