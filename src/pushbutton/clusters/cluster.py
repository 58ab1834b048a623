"""A cluster pushbutton built: its name, its folder and its state on disk.

State lives in `$XDG_STATE_HOME/pushbutton/clusters/NAME/` (default `~/.local/state/...`):
`cluster.json` (written atomically: the resolved template, the node records, the steps done, the
controller's ports, the provider's own data), `slurm.conf`, `munge/`, `state/` (slurmctld's),
`log/`. `pb cluster up` reads it to resume where a previous `up` stopped.

This module is the bottom of the clusters floor: `ClusterError` and `Cluster` are used by the
templates, the controller, every provider and the commands (lifecycle, resize, info).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from pushbutton.clusters.providers.base import Node
from pushbutton.core import pathnames
from pushbutton.core.errors import PushbuttonError
from pushbutton.core.files import state_dir, write_json

NAME_MAX = 64


class ClusterError(PushbuttonError):
    """What went wrong, where (file, key) and the next command (fix). The CLI prints it without a
    traceback."""

    def __init__(self, message: str, fix: str | None = None, *, file: str | None = None,
                 key: str | None = None):
        self.message, self.fix, self.file, self.key = message, fix, file, key
        where = (file or "") + (f"{': ' if file else ''}key '{key}'" if key else "")
        text = f"{where}: {message}" if where else message
        super().__init__(text + (f"\n  fix: {fix}" if fix else ""))


def clusters_dir() -> Path:
    return state_dir() / "clusters"


def check_name(name: str) -> str:
    """A cluster name that can become a folder, a target and part of interface names."""
    from pushbutton.execution.targets import BUILTIN
    pathnames.check(name, "cluster name", max_len=NAME_MAX, error=ClusterError)
    if name in BUILTIN:
        raise ClusterError(f"'{name}' is a built-in target name",
                           f"give the cluster another name, e.g. `pb cluster up {name} "
                           f"{name}1`")
    return name


class Cluster:
    """One cluster's folder and state. `data` is cluster.json's content; `save()` writes it."""

    def __init__(self, name: str):
        # checked before any path is made of it: `down ../../x --delete` must not reach x
        pathnames.check(name, "cluster name", max_len=NAME_MAX, error=ClusterError)
        self.name = name
        self.dir = clusters_dir() / name
        self._data: dict | None = None

    # -- files -----------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.dir / "slurm.conf"

    @property
    def meta_path(self) -> Path:
        return self.dir / "cluster.json"

    @property
    def munge_dir(self) -> Path:
        return self.dir / "munge"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    @property
    def run_dir(self) -> Path:
        """Where sockets go (munge's, slurmd's per-step ones): the state folder, or a short
        folder in the temp dir when its path is too long for a unix socket (108 bytes)."""
        if len(str(self.dir)) <= 60:
            return self.dir
        h = hashlib.sha1(str(self.dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"pb-cluster-{os.getuid()}-{h}"

    @property
    def socket(self) -> Path:
        return self.run_dir / "munge.socket" if self.run_dir != self.dir else \
            self.munge_dir / "munge.socket"

    def pidfile(self, daemon: str, node: str | None = None) -> Path:
        if daemon == "munged":
            return self.munge_dir / "munged.pid"
        if daemon == "slurmd" and node:
            return self.dir / f"slurmd-{node}.pid"
        return self.dir / f"{daemon}.pid"

    def env(self) -> dict[str, str]:
        """The environment of every SLURM command for this cluster (never the caller's
        SLURM_CONF)."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    # -- state -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta_path.exists()

    @property
    def data(self) -> dict:
        if self._data is None:
            self._data = self.load()
        return self._data

    def load(self) -> dict:
        try:
            d = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ClusterError(f"cannot read the state of cluster '{self.name}': {e}",
                               f"look at {self.meta_path}; `pb cluster down {self.name} "
                               "--delete` forgets the cluster") from None
        return d if isinstance(d, dict) else {}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        write_json(self.meta_path, self.data)

    @property
    def nodes(self) -> list[Node]:
        return [Node.from_json(d) for d in self.data.get("nodes", [])]

    def put_nodes(self, nodes: list[Node]) -> None:
        """Replace the node records with `nodes` (in order) and save."""
        self.data["nodes"] = [n.to_json() for n in nodes]
        self.save()

    def update_node(self, node: Node) -> None:
        """Write one node record (added when new) and save: a node's stage is on disk the
        moment it changes, so `up` resumes from it."""
        nodes = self.nodes
        for i, n in enumerate(nodes):
            if n.name == node.name:
                nodes[i] = node
                break
        else:
            nodes.append(node)
        self.put_nodes(nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"cluster '{self.name}' has no node '{name}'",
                           f"its nodes: {', '.join(n.name for n in self.nodes) or 'none'} "
                           f"(`pb cluster status {self.name}`)")

    @property
    def provider_data(self) -> dict:
        """The provider's own data (netns: subnet, bridge); saved with the state."""
        return self.data.setdefault("provider_data", {})

    def step_done(self, step: str) -> None:
        self.data.setdefault("steps", {})[step] = time.time()
        self.save()

    def forget_step(self, step: str) -> None:
        self.data.setdefault("steps", {}).pop(step, None)
        self.save()

    def done(self, step: str) -> bool:
        return step in self.data.get("steps", {})


def list_names() -> list[str]:
    d = clusters_dir()
    if not d.is_dir():
        return []
    return [p.name for p in sorted(d.iterdir())
            if (p / "cluster.json").exists() and pathnames.problem(p.name, NAME_MAX) is None]
