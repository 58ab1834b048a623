"""The one provider interface: what `pb cluster` asks of a place that has machines.

A provider makes machines exist (`create`), makes munge and SLURM installed and configured on them
(`setup`), starts and stops their slurmd (`start`/`stop`) and makes them go away (`destroy`).
Every method takes the nodes it acts on and must be safe to repeat: `pb cluster up` after a
partial failure calls them again for the nodes not yet done, and a node record says how far it
got. Progress goes through `say` (one line per step, never silence during a long step).

Where slurmctld runs is the provider's choice (`controller`): on this host (local, netns) or on
a head node it built (ssh, cloud), reached over SSH by the target `up` registers.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Callable, ClassVar

# how far a node got; `up` resumes each node from its stage
STAGES = ("planned", "created", "configured", "running", "stopped")


@dataclass
class Node:
    name: str                    # the SLURM NodeName (also the hostname where the provider sets it)
    group: str                   # the template's node group it belongs to
    cpus: int = 1
    memory: int = 1024           # MB offered to jobs (RealMemory)
    gres: str | None = None      # e.g. "gpu:1"
    addr: str | None = None      # where slurmctld reaches its slurmd (NodeAddr)
    stage: str = "planned"       # one of STAGES
    elastic: bool = False        # started and stopped by SLURM's power saving (State=CLOUD)
    extra: dict = field(default_factory=dict)  # the provider's own data (netns, cloud id, ssh host)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Node":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Provider(ABC):
    """One kind of place machines come from. `state` is the cluster's state on disk (its folder,
    its saved metadata), `template` the resolved template, `say` prints one progress line."""
    name: ClassVar[str]

    def __init__(self, state, template, say: Callable[[str], None] = print):
        self.state, self.template, self.say = state, template, say

    def check(self) -> None:
        """Raise ClusterError (what is missing and the fix) before anything is built."""

    def plan(self, nodes: list[Node]) -> list[str]:
        """Lines for `--dry-run`: what would be made (machine types, count, image, cost)."""
        return [f"{n.name}: {n.cpus} CPUs, {n.memory} MB" + (f", {n.gres}" if n.gres else "")
                for n in nodes]

    @abstractmethod
    def create(self, nodes: list[Node]) -> None:
        """Make the machines exist; fill each node's addr/extra and set stage 'created'."""

    @abstractmethod
    def setup(self, nodes: list[Node]) -> None:
        """Make munge and SLURM installed and configured on the nodes (stage 'configured')."""

    @abstractmethod
    def start(self, nodes: list[Node]) -> None:
        """Start each node's slurmd (stage 'running')."""

    @abstractmethod
    def stop(self, nodes: list[Node]) -> None:
        """Stop each node's slurmd (stage 'stopped'); the machine stays."""

    @abstractmethod
    def destroy(self, nodes: list[Node]) -> None:
        """Make the machines go away; nothing of them is left behind."""

    def controller(self) -> str | None:
        """None when slurmctld runs on this host; else the name of the node that runs it."""
        return None

    # -- optional hooks (defaults fit a provider without cluster-wide resources) ------------
    def prepare(self) -> None:
        """Make what the cluster needs as a whole, before any node and even with none (a
        network, a bridge holding the controller's address). Safe to repeat."""

    def teardown(self) -> None:
        """Remove what `prepare` made; called by `down` after every node is destroyed."""

    def controller_address(self) -> str | None:
        """Where the nodes reach a slurmctld on this host (None: by this host's name)."""
        return None

    def node_name(self, group: str, index: int) -> str:
        """The SLURM NodeName of the index-th node (from 1) of a group: n1, n2, ... for group
        'compute', else the group's name and the index (gpu1)."""
        return f"{'n' if group == 'compute' else group}{index}"

    def target(self) -> dict:
        """Fields of the target `up` registers (execution.targets.Target), beyond name and
        description; {} means this host with the cluster's SLURM_CONF in its env."""
        return {}

    def shell(self, node: Node | None) -> list[str]:
        """The argv `pb cluster ssh NAME [NODE]` runs (an interactive shell there)."""
        raise NotImplementedError(f"provider {self.name} has no shell")
