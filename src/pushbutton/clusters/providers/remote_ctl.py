"""What the providers whose slurmctld runs on a head node reached over SSH (`ssh`, and `gce`,
`aws`, `openstack` once their machines exist) give `pb cluster` beyond the provider interface:

* `target()`: the target `up` registers: SSH to the head, the cluster's SLURM_CONF there;
* `node_states()`: SLURM's view of the nodes (sinfo on the head), for `status` and `up`;
* `command_argv(node, command)`: a command on a node (`pb cluster ssh NAME NODE -- CMD`);
* `drain(nodes, timeout)`: nodes a resize removes take no new job, and their jobs end first.

A provider says how its machines are reached through `access()`; everything else goes through
`pushbutton.clusters.remote_setup`, as setup does.
"""
from __future__ import annotations

import shlex

from pushbutton.clusters import remote_setup as rs
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.remote_conf import Layout

CONTROLLER = "controller"     # what status shows for a head that runs slurmctld only


class RemoteController:
    """Mixed into a Provider whose `controller()` is a machine reached over SSH."""

    def access(self, extra: list[Node] = ()) -> tuple[list[Node], Node, rs.SetupOptions]:
        """(every node that runs slurmd, the head, the SSH setup options) of the cluster as its
        state records it; `extra` nodes (records read elsewhere) get their SSH destination too."""
        raise NotImplementedError

    def target(self) -> dict:
        _, head, o = self.access()
        fields = rs.target_fields(self.cluster, head, o)
        return {k: v for k, v in fields.items() if k not in ("name", "description")}

    def node_states(self) -> dict[str, str] | None:
        """{node: SLURM state} from sinfo on the head (a head running slurmctld only shows as
        'controller'); None when the head or its slurmctld does not answer."""
        try:
            compute, head, o = self.access()
            states = rs.node_states(head, o)
        except ClusterError:
            return None
        if not states and compute:
            return None
        if head.name not in {n.name for n in compute}:
            states[head.name] = CONTROLLER
        return states

    def conf_path(self) -> str | None:
        """The cluster's slurm.conf on the machines (known once setup ran)."""
        _, head, _ = self.access()
        lay = ((head.extra or {}).get("pb") or {}).get("layout")
        return Layout.from_json(lay).conf if lay else None

    def command_argv(self, node: Node | None, command: list[str]) -> list[str]:
        """ssh to the node (the head when None) running `command` with SLURM_CONF set."""
        compute, head, o = self.access([node] if node is not None else [])
        there = head if node is None else next(
            (n for n in [*compute, head] if n.name == node.name), node)
        conf = self.conf_path()
        argv = [a for a in rs.ssh_argv(there, o) if a != "-t"]
        return argv + ["--", shlex.join((["env", f"SLURM_CONF={conf}"] if conf else []) +
                                        list(command))]

    def drain(self, nodes: list[Node], timeout: float, say) -> list[str]:
        _, head, o = self.access()
        return rs.drain_nodes(nodes, head, o, timeout, say)
