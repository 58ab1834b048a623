"""Provider `ssh`: machines that exist already (a lab's workstations, a departmental server),
reached over SSH, made a SLURM cluster through the idempotent steps of remote_setup.

    [templates.lab]
    provider = "ssh"
    [templates.lab.ssh]
    hosts = ["ws1", "ws2", "ws3"]     # SSH destinations (aliases of ~/.ssh/config work)
    head = "ws1"                      # runs slurmctld (default: the first host); when it is not
                                      # one of hosts it runs slurmctld only
    user = "me"                       # optional: ssh -l
    ssh_config = "~/.ssh/config.lab"  # optional: ssh -F
    ssh_options = ["-p", "2222"]      # optional
    connect_timeout = 10
    workdir = "~/.pushbutton-remote"  # the target's work folder: must be shared by all machines
    cluster_dir = "~/.pushbutton-clusters"   # the per-cluster folders live under it

`create` only checks that the machines answer (they exist already); `destroy` stops the
cluster's daemons and removes its per-cluster folders, never a package. One node per host,
named after it (`node_name`: ws1, 10-0-0-5): the framework plans them through `node_name(group,
i)` (the i-th host), and each node's `extra["host"]` is its SSH destination (a node without one
gets the host it is named after, else the next free one; `nodes_for_hosts()` makes them all).
A head that is not one of hosts is no node record: it is kept in the cluster's provider data.
"""
from __future__ import annotations

import difflib
import re
import shutil
from typing import ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pushbutton.clusters import remote_setup as rs
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers.base import Node, Provider
from pushbutton.clusters.providers.remote_ctl import RemoteController
from pushbutton.clusters.remote_conf import Layout


class SSHOptions(BaseModel):
    """The `[templates.NAME.ssh]` table."""
    model_config = ConfigDict(extra="forbid")
    hosts: list[str] = Field(min_length=1)
    head: Optional[str] = None
    user: Optional[str] = None
    ssh_config: Optional[str] = None
    ssh_options: list[str] = []
    connect_timeout: int = Field(10, ge=1, le=300)
    workdir: str = "~/.pushbutton-remote"
    cluster_dir: str = "~/.pushbutton-clusters"
    shared_workdir: bool = True
    install: bool = True
    python: str = "python3"

    @field_validator("ssh_options", mode="before")
    @classmethod
    def _split(cls, v):
        import shlex
        return shlex.split(v) if isinstance(v, str) else v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v):
        for h in v:
            _check_host(h)
        dup = sorted({h for h in v if v.count(h) > 1})
        if dup:
            raise ValueError(f"host {dup[0]!r} is listed twice")
        return v

    @field_validator("head", "user")
    @classmethod
    def _one(cls, v):
        if v is not None:
            _check_host(v)
        return v

    @field_validator("workdir", "cluster_dir")
    @classmethod
    def _folder(cls, v):
        if not (v.startswith("/") or v == "~" or v.startswith("~/")):
            raise ValueError("give an absolute path or one starting with ~/")
        return v


def _check_host(h: str) -> None:
    if not isinstance(h, str) or not h.strip():
        raise ValueError("a host is a non-empty string")
    if h.startswith("-") or re.search(r"\s", h):
        raise ValueError(f"{h!r} is not an SSH destination (no spaces, no leading '-')")


def node_name(host: str) -> str:
    """A SLURM node name for an SSH destination: user@ws1.lab.org -> ws1, 10.0.0.5 -> 10-0-0-5."""
    h = host.rsplit("@", 1)[-1]
    h = h.replace(".", "-") if re.fullmatch(r"[\d.]+|[\da-fA-F:]+", h) else h.split(".")[0]
    return re.sub(r"[^a-z0-9_-]", "-", h.lower()).strip("-") or "node"


class SSHProvider(RemoteController, Provider):
    name: ClassVar[str] = "ssh"

    def __init__(self, state, template, say=print):
        super().__init__(state, template, say)
        self._opts: SSHOptions | None = None
        self._seen: dict[str, Node] = {}
        self._head: Node | None = None

    # -- options ------------------------------------------------------------------------------
    @property
    def cluster(self) -> str:
        return getattr(self.state, "name", None) or getattr(self.template, "name", "cluster")

    def _where(self) -> str:
        t = self.template
        file = getattr(t, "file", None)
        return file if file not in (None, "built-in") else f"template '{getattr(t, 'name', '?')}'"

    @property
    def opts(self) -> SSHOptions:
        if self._opts is None:
            self._opts = validate(self.template)
        return self._opts

    def setup_options(self, conf_nodes: list[Node] | None = None) -> rs.SetupOptions:
        o, t = self.opts, self.template
        return rs.SetupOptions(
            cluster=self.cluster, user=o.user, ssh_config=o.ssh_config,
            ssh_options=list(o.ssh_options), connect_timeout=o.connect_timeout,
            cluster_dir=o.cluster_dir, workdir=o.workdir, shared_workdir=o.shared_workdir,
            install=o.install, python=o.python,
            setup=[list(map(str, a)) for a in (getattr(t, "setup", None) or [])],
            partition=getattr(t, "partition", None) or "main",
            slurm=dict(getattr(t, "slurm", None) or {}), conf_nodes=conf_nodes)

    # -- nodes ----------------------------------------------------------------------------------
    def host_names(self) -> dict[str, str]:
        """{node name: host} for every host, in order (names made distinct: ws1, ws1-2)."""
        out: dict[str, str] = {}
        for h in self.opts.hosts:
            n, i = node_name(h), 2
            base = n
            while n in out:
                n, i = f"{base}-{i}", i + 1
            out[n] = h
        return out

    def nodes_for_hosts(self, cpus: int = 1, memory: int = 1024) -> list[Node]:
        """One node per compute host, named after the host."""
        return [Node(name=n, group="compute", cpus=cpus, memory=memory, extra={"host": h})
                for n, h in self.host_names().items()]

    def node_name(self, group: str, index: int) -> str:
        """The index-th host's node name (from 1, across groups in the template's order: the
        framework skips names in use); n<index> beyond the hosts (then `create` says so)."""
        names = list(self.host_names())
        return names[index - 1] if index <= len(names) else f"n{index}"

    def _assign(self, nodes: list[Node]) -> None:
        used = {n.extra.get("host") for n in self._all(nodes) if n.extra.get("host")}
        by_name = self.host_names()
        for n in nodes:
            h = by_name.get(n.name)
            if not n.extra.get("host") and h and h not in used:
                n.extra = dict(n.extra, host=h)
                used.add(h)
        free = [h for h in self.opts.hosts if h not in used]
        for n in nodes:
            if not n.extra.get("host"):
                if not free:
                    raise ClusterError(
                        f"{self._where()}: the template has more nodes than key "
                        f"'templates.{getattr(self.template, 'name', '?')}.ssh.hosts' lists "
                        f"machines ({len(self.opts.hosts)})",
                        "list more hosts, or ask for fewer nodes (--nodes)")
                n.extra = dict(n.extra, host=free.pop(0))

    def _all(self, nodes: list[Node]) -> list[Node]:
        """Every node of the cluster: those given, the cluster state's, those seen here."""
        saved = getattr(self.state, "nodes", None)
        if isinstance(saved, dict):
            saved = list(saved.values())
        out: dict[str, Node] = {}
        for n in list(saved or []) + list(self._seen.values()) + list(nodes):
            if isinstance(n, dict):
                n = Node.from_json(n)
            if isinstance(n, Node) and n.extra.get("role") != "controller":
                out[n.name] = n
        for n in nodes:
            self._seen[n.name] = n
        return list(out.values())

    def head_node(self, nodes: list[Node]) -> Node:
        want = self.opts.head or self.opts.hosts[0]
        for n in self._all(nodes):
            if n.extra.get("host") == want:
                self._head = n
                return n
        if self._head is None or self._head.extra.get("host") != want:
            saved = self._provider_data().get("head")
            self._head = Node.from_json(saved) if saved and saved.get("extra", {}).get(
                "host") == want else Node(name=node_name(want), group="head",
                                          extra={"host": want, "role": "controller"})
        return self._head

    def _provider_data(self) -> dict:
        pd = getattr(self.state, "provider_data", None)
        return pd if isinstance(pd, dict) else {}

    def _keep_head(self, head: Node) -> None:
        """A head that is no node record: its layout kept in the cluster's provider data."""
        if head.extra.get("role") == "controller" and hasattr(self.state, "save") and \
                isinstance(getattr(self.state, "provider_data", None), dict):
            self.state.provider_data["head"] = head.to_json()
            self.state.save()

    def access(self, extra: list[Node] = ()) -> tuple[list[Node], Node, rs.SetupOptions]:
        every = self._all(list(extra))
        self._assign([n for n in every if not n.extra.get("host")])
        return every, self.head_node(every), self.setup_options(conf_nodes=every)

    # -- the provider interface -----------------------------------------------------------------
    def check(self) -> None:
        self.opts
        if not shutil.which("ssh"):
            raise ClusterError("the OpenSSH client 'ssh' is not installed on this machine",
                               "install it (apt-get install openssh-client)")

    def plan(self, nodes: list[Node]) -> list[str]:
        self._assign(nodes)
        lines = [f"{n.name}: {n.cpus} CPUs, {n.memory} MB" + (f", {n.gres}" if n.gres else "")
                 + f" on {n.extra['host']}" for n in nodes]
        return lines + rs.plan_steps(nodes, self.head_node(nodes), self.setup_options())

    def create(self, nodes: list[Node]) -> None:
        """The machines exist already: check that each answers over SSH."""
        self._assign(nodes)
        head = self.head_node(nodes)
        machines = ([head] if head.extra.get("role") == "controller" else []) + list(nodes)
        rs.check_reachable(machines, self.setup_options(), self.say)
        for n in nodes:
            n.stage = "created" if n.stage == "planned" else n.stage

    def setup(self, nodes: list[Node]) -> None:
        """Steps on every machine of the cluster (slurm.conf names them all; the ones done say
        'already'), then slurmctld on the head."""
        self._assign(nodes)
        every = self._all(nodes)
        head = self.head_node(nodes)
        opts = self.setup_options(conf_nodes=every)
        try:
            rs.setup_nodes(every, head, None, None, opts, self.say)
        finally:
            self._keep_head(head)
        rs.start_controller(head, opts, self.say)
        self._restart_running(every, nodes, opts)
        for n in nodes:
            n.stage = "configured"

    def _restart_running(self, every: list[Node], skip: list[Node], opts) -> None:
        """The running slurmd of the other nodes, restarted when slurm.conf changed (a node
        added or removed changes it on every machine)."""
        names = {n.name for n in skip}
        running = [n for n in every if n.stage == "running" and n.name not in names]
        if running:
            rs.start_slurmd(running, opts, self.say)

    def start(self, nodes: list[Node]) -> None:
        head = self.head_node(nodes)
        opts = self.setup_options()
        rs.start_controller(head, opts, self.say)
        rs.start_slurmd(nodes, opts, self.say)
        rs.wait_idle(nodes, head, opts, say=self.say)
        for n in nodes:
            n.stage = "running"

    def stop(self, nodes: list[Node]) -> None:
        every = self._all(nodes)
        opts = self.setup_options()
        if {n.name for n in every} <= {n.name for n in nodes}:
            rs.stop_all(every, self.head_node(nodes), opts, self.say)
        else:
            rs.stop_slurmd(nodes, opts, self.say)
        for n in nodes:
            n.stage = "stopped"

    def destroy(self, nodes: list[Node]) -> None:
        """All nodes: every daemon stopped and the per-cluster folders removed. Some nodes: those
        leave (slurmd stopped, their files removed) and the others get the slurm.conf without
        them (slurmctld and the running slurmd restarted by the steps)."""
        every = self._all(nodes)
        head = self.head_node(nodes)
        gone = {n.name for n in nodes}
        rest = [n for n in every if n.name not in gone]
        if not rest or head.name in gone:
            rs.stop_all(every, head, self.setup_options(), self.say, remove=True)
        else:
            rs.remove_nodes(nodes, head, self.setup_options(), self.say)
            opts = self.setup_options(conf_nodes=rest)
            rs.setup_nodes(rest, head, None, None, opts, self.say)
            rs.start_controller(head, opts, self.say)
            self._restart_running(rest, [], opts)
        for n in nodes:
            self._seen.pop(n.name, None)
            n.stage = "planned"
        if not rest and hasattr(self.state, "provider_data"):
            self._provider_data().pop("head", None)

    def controller(self) -> str | None:
        return self.head_node([]).name

    def shell(self, node: Node | None) -> list[str]:
        target = node or self.head_node([])
        if not target.extra.get("host"):
            self._assign([target])
        lay = (self.head_node([]).extra.get("pb") or {}).get("layout")
        return rs.ssh_argv(target, self.setup_options(),
                           Layout.from_json(lay).conf if lay else None)

    def target_fields(self, nodes: list[Node] | None = None) -> dict:
        """The fields of the target `up` registers (targets.Target(**fields))."""
        return rs.target_fields(self.cluster, self.head_node(nodes or []), self.setup_options())


def validate(template) -> SSHOptions:
    """The template's ssh table as SSHOptions; errors name file, key and fix."""
    name = getattr(template, "name", "?")
    file = getattr(template, "file", None)
    where = file if file not in (None, "built-in") else f"template '{name}'"
    table = getattr(template, "options", None)
    if not table:
        raise ClusterError(("" if where.startswith("template ") else f"{where}: ") +
                           f"template '{name}' (provider ssh) names no machines",
                           f"give them: `pb cluster up {name} NAME --host ws1 --host ws2` (SSH "
                           "destinations; the first runs slurmctld), or a table "
                           f"[templates.{name}.ssh] with hosts = [\"ws1\", \"ws2\"] in "
                           "pushbutton-clusters.toml")
    if not isinstance(table, dict):
        raise ClusterError(f"{where}: key 'templates.{name}.ssh' must be a table",
                           f"write [templates.{name}.ssh] followed by hosts = [...]")
    try:
        return SSHOptions.model_validate(table)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        key = f"templates.{name}.ssh" + (f".{loc}" if loc else "")
        msg = err["msg"].removeprefix("Value error, ")
        known = list(SSHOptions.model_fields)
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            msg = f"unknown key '{err['loc'][-1]}'"
            fix = (f"did you mean '{near[0]}'? " if near else "") + "known keys: " + \
                ", ".join(known)
        elif err["type"] == "missing":
            fix = "list the machines: hosts = [\"ws1\", \"ws2\"]"
        elif err["type"] == "too_short":
            msg = "lists no machines"
            fix = "give at least one SSH destination: hosts = [\"ws1\"]"
        else:
            fix = f"see the keys of [templates.{name}.ssh] in docs/CLUSTERS.md (provider ssh)"
        raise ClusterError(f"{where}: key '{key}': {msg}", fix) from None
