"""Provider `local`: a one-host SLURM on this machine. Its one node is this host (NodeName = the
host's name), slurmd runs here beside slurmctld and munged; `resize =0` / `=1` stop and bring
back that node like any other provider's."""
from __future__ import annotations

import os

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.controller import hostname
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.providers.onhost import OnHost


class LocalProvider(OnHost):
    name = "local"

    def check(self) -> None:
        super().check()
        groups = self.template.nodes
        if len(groups) != 1 or any(g.elastic or g.max > 1 for g in groups.values()):
            raise ClusterError("the local template has one node, this host",
                               "give one node group with count = 0 or 1 (and no max above "
                               "1), or use provider netns for several nodes",
                               file=self.template.file, key=f"templates.{self.template.name}"
                               ".nodes")

    def node_name(self, group: str, index: int) -> str:
        return hostname()

    def gres_files(self, node: Node, name: str, count: int) -> str:
        """This host's GPUs (/dev/nvidia0...) when it has that many, else placeholders."""
        if name == "gpu" and all(os.path.exists(f"/dev/nvidia{i}") for i in range(count)):
            return "/dev/nvidia0" if count == 1 else f"/dev/nvidia[0-{count - 1}]"
        return super().gres_files(node, name, count)

    def create(self, nodes: list[Node]) -> None:
        for n in nodes:
            if n.stage == "planned":
                self._save(n, "created")

    def destroy(self, nodes: list[Node]) -> None:
        self.stop(nodes)
        for n in nodes:
            self._save(n, "planned")
