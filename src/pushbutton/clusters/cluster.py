"""A cluster pushbutton built: its name, its folder and its state on disk.

State lives in `$XDG_STATE_HOME/pushbutton/clusters/NAME/` (default `~/.local/state/...`):
`cluster.json` (written atomically: the resolved template, the node records, the steps done, the
controller's ports, the provider's own data), `slurm.conf`, `munge/`, `state/` (slurmctld's),
`log/`. `pb cluster up` reads it to resume where a previous `up` stopped.

This module is the bottom of the clusters floor: `ClusterError` and `Cluster` are used by the
templates, the controller, every provider and the commands (lifecycle, resize, info).
"""
from __future__ import annotations

import contextlib
import fcntl
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
        self._locked = 0

    @classmethod
    def at(cls, folder: str | os.PathLike) -> "Cluster":
        """The cluster whose state folder is `folder` (the power programs SLURM runs are told
        the folder: they do not depend on slurmctld's environment)."""
        folder = Path(folder).resolve()
        cl = cls(folder.name)
        cl.dir = folder
        return cl

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

    # -- one writer at a time ----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 900, say=None, create: bool = True):
        """Hold the cluster's lock (a flock on DIR/.lock) around a read-modify-write of its
        state: `up`, `down`, `resize` and the power programs SLURM runs (several at once) each
        take it, and the state is read afresh inside, so no writer loses another's change.
        Re-entrant within one Cluster object; released by the OS when the holder dies.
        `create=False`: a cluster whose folder is gone is an error, not made again."""
        if self._locked:
            self._locked += 1
            try:
                yield self
            finally:
                self._locked -= 1
            return
        if not create and not self.dir.is_dir():
            raise ClusterError(f"cluster '{self.name}' is gone ({self.dir})")
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline, told = time.time() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text(errors="replace").strip() or "?"
                if time.time() > deadline:
                    os.close(fd)
                    raise ClusterError(f"cluster '{self.name}' is busy: another command holds "
                                       f"its lock (pid {holder}) for over {timeout:g}s",
                                       "wait for it to end, then repeat") from None
                if say and not told:
                    say(f"waiting for another command on cluster '{self.name}' (pid {holder})")
                    told = True
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._data, self._locked = None, 1
        try:
            yield self
        finally:
            self._locked = 0
            os.close(fd)

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
