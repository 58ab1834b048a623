"""Cluster templates: what `pb cluster up TEMPLATE` builds, validated with located errors.

Read in this order, a later definition of a name replacing an earlier one (keys it does not set
come from the built-in of that name, if any): the built-ins (`local`, `netns`, `ssh`, `gce`,
`aws`, `openstack`), the user's `~/.config/pushbutton/clusters.toml` (`$XDG_CONFIG_HOME`), the
project's `pushbutton-clusters.toml`. Flags of `pb cluster up` (`--nodes`, `--cpus`, `--memory`,
`--gres`, `--option`, and `--host` for provider ssh) override the result.

    [templates.lab]
    provider = "netns"                  # local | netns | ssh | gce | aws | openstack
    partition = "main"
    slurm = { SchedulerParameters = "bf_interval=5" }   # extra slurm.conf keys (checked names)
    setup = [["python3", "-m", "pip", "install", "numpy"]]   # argv lists run on every node
    [templates.lab.nodes.compute]       # node groups; without any there is one, "compute"
    count = 3                           # static nodes (resize may grow a group up to `max`)
    cpus = 1
    memory = 1024                       # MB
    gres = "gpu:1"                      # optional
    # an elastic group gives min/max instead of count (SLURM's power saving starts/stops them)
    [templates.lab.elastic]
    suspend_time = 60
    resume_timeout = 120
    [templates.lab.netns]               # the provider's own table: ssh, cloud or netns
    subnet = "10.77.3.0/24"             # (validated by the provider)
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.slurm_conf import KNOWN_KEYS, OWNED_KEYS, memory_total_mb
from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError
from pushbutton.core.files import config_dir

PROJECT_FILE = "pushbutton-clusters.toml"
PROVIDERS = ("local", "netns", "ssh", "gce", "aws", "openstack")
OPTION_TABLE = {"ssh": "ssh", "gce": "cloud", "aws": "cloud", "openstack": "cloud",
                "netns": "netns", "local": None}
DEFAULT_GROUP = "compute"
SLOTS = 32           # a static group may grow by this many nodes beyond its count by default
_GROUP = re.compile(r"[a-z]{1,8}")
_GRES = re.compile(r"[a-z][a-z0-9_]*(:[A-Za-z0-9_.-]+)?:\d+(,[a-z][a-z0-9_]*(:[A-Za-z0-9_.-]+)?"
                   r":\d+)*")


class Group(BaseModel):
    """A node group: `count` static nodes (resize keeps it within `max`), or an elastic group
    with `min`/`max` and no count."""
    model_config = ConfigDict(extra="forbid")
    count: Optional[int] = None
    min: Optional[int] = None
    max: Optional[int] = None
    cpus: int = 1
    memory: int = 1024
    gres: Optional[str] = None

    @field_validator("count", "min", "max")
    @classmethod
    def _count(cls, v):
        if v is not None and (isinstance(v, bool) or v < 0):
            raise ValueError("must be a whole number >= 0")
        return v

    @field_validator("cpus", "memory")
    @classmethod
    def _pos(cls, v):
        if isinstance(v, bool) or v < 1:
            raise ValueError("must be a whole number >= 1 (memory in MB)")
        return v

    @field_validator("gres")
    @classmethod
    def _gres(cls, v):
        if v is not None and not _GRES.fullmatch(v):
            raise ValueError(f"{v!r} is not a GRES: write NAME[:TYPE]:COUNT, e.g. 'gpu:1' or "
                             "'gpu:a100:2'")
        return v

    @model_validator(mode="after")
    def _shape(self):
        if self.count is None and self.max is None:
            if self.min is not None:
                raise ValueError("an elastic group needs max (and min, default 0)")
            self.count = 1
        if self.count is not None:
            if self.min is not None:
                raise ValueError("give either count (static nodes) or min/max (an elastic "
                                 "group), not both")
            if self.max is None:
                self.max = self.count + SLOTS
            elif self.max < self.count:
                raise ValueError(f"max ({self.max}) is below count ({self.count})")
        else:
            self.min = self.min or 0
            if self.min > self.max:
                raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @property
    def elastic(self) -> bool:
        return self.count is None


class Elastic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suspend_time: int = 60       # s idle before SLURM suspends a node
    resume_timeout: int = 120    # s a resumed node has to register
    suspend_timeout: int = 30

    @field_validator("suspend_time", "resume_timeout", "suspend_timeout")
    @classmethod
    def _pos(cls, v):
        if isinstance(v, bool) or v < 1:
            raise ValueError("must be a whole number of seconds >= 1")
        return v


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    provider: Literal["local", "netns", "ssh", "gce", "aws", "openstack"]
    description: str = ""
    partition: str = "main"
    slurm: dict[str, Union[bool, int, float, str]] = {}
    setup: list[list[str]] = []
    nodes: dict[str, Group] = {}
    elastic: Elastic = Elastic()
    ssh: Optional[dict] = None
    cloud: Optional[dict] = None
    netns: Optional[dict] = None
    file: Optional[str] = None     # where it was defined ("built-in" for the built-ins)

    @field_validator("partition")
    @classmethod
    def _partition(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", v):
            raise ValueError("a partition name is letters, digits, '_' or '-'")
        return v

    @field_validator("slurm")
    @classmethod
    def _slurm(cls, v):
        for k, x in v.items():
            why = slurm_key_problem(k)
            if why:
                raise ValueError(why[0])
            if isinstance(x, str) and ("\n" in x or "\r" in x):
                raise ValueError(f"the value of '{k}' has a line break")
        return v

    @field_validator("setup", mode="before")
    @classmethod
    def _setup(cls, v):
        if isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str)
                                                                    for x in v)):
            raise ValueError("setup is a list of argv lists, e.g. "
                             "[[\"python3\", \"-m\", \"pip\", \"install\", \"numpy\"]]")
        if isinstance(v, list) and any(isinstance(x, list) and not x for x in v):
            raise ValueError("a setup step is an empty argv list")
        return v

    @field_validator("nodes")
    @classmethod
    def _groups(cls, v):
        for g in v:
            if not _GROUP.fullmatch(g):
                raise ValueError(f"node group name '{g}': 1-8 lowercase letters (they prefix "
                                 "node names)")
        if "n" in v and DEFAULT_GROUP in v:
            raise ValueError("group 'n' would name its nodes like group 'compute' (n1, n2...)")
        return v or {DEFAULT_GROUP: Group(count=1)}

    @model_validator(mode="after")
    def _tables(self):
        own = OPTION_TABLE[self.provider]
        for table in ("ssh", "cloud", "netns"):
            if getattr(self, table) is not None and table != own:
                raise ValueError(f"the [{table}] table is for provider "
                                 f"{'gce/aws/openstack' if table == 'cloud' else table}, not "
                                 f"'{self.provider}'")
        return self

    @property
    def options(self) -> dict:
        """The provider's own table as a plain dict (validated by the provider)."""
        table = OPTION_TABLE[self.provider]
        return dict(getattr(self, table) or {}) if table else {}

    def static_groups(self) -> list[str]:
        return [g for g, grp in self.nodes.items() if not grp.elastic]


def slurm_key_problem(k: str) -> tuple[str, str] | None:
    """(what is wrong, fix) for a key of a template's `slurm` table, or None."""
    if k in OWNED_KEYS:
        return (f"slurm.conf key '{k}' is written by pushbutton from the cluster's state",
                "remove it from the template")
    if k not in KNOWN_KEYS:
        near = difflib.get_close_matches(k, sorted(KNOWN_KEYS), n=1)
        return (f"'{k}' is not a slurm.conf key",
                f"did you mean '{near[0]}'?" if near else
                "see `man slurm.conf` (names are case-sensitive)")
    return None


def node_prefix(group: str) -> str:
    """Node names of a group: n1, n2, ... for 'compute', else gpu1, gpu2, ..."""
    return "n" if group == DEFAULT_GROUP else group


# -- built-ins ---------------------------------------------------------------------------------
def builtins() -> dict[str, dict]:
    """The built-in templates as template bodies (computed: `local` offers this host). `ssh`
    has one node per host (`--host`, or hosts in its ssh table); the clouds a one-node `head`
    group (slurmctld only) and a `compute` group (`--nodes` sizes it), their machine types,
    image and region from the template's cloud table (or `--option`)."""
    cloud = {"head": {"count": 1, "max": 1, "cpus": 1, "memory": 1024},
             "compute": {"count": 1, "cpus": 1, "memory": 1024}}
    return {
        "local": {"provider": "local", "description": "a one-host SLURM on this machine",
                  "nodes": {"compute": {"count": 1, "max": 1, "cpus": os.cpu_count() or 1,
                                        "memory": memory_total_mb()}}},
        "netns": {"provider": "netns", "description": "N nodes on this host, each a network "
                  "namespace with its own address, hostname and slurmd",
                  "nodes": {"compute": {"count": 2, "cpus": 1, "memory": 1024}}},
        "ssh": {"provider": "ssh", "description": "existing machines over SSH, one node per "
                "host (--host ws1 --host ws2; the first runs slurmctld)",
                "nodes": {"compute": {"cpus": 1, "memory": 1024}}, "ssh": {}},
        **{p: {"provider": p, "description": f"virtual machines on {label} (Apache Libcloud)",
               "nodes": cloud, "cloud": {}}
           for p, label in (("gce", "Google Compute Engine"), ("aws", "Amazon EC2"),
                            ("openstack", "OpenStack"))},
    }


# -- files -------------------------------------------------------------------------------------
def user_file() -> Path:
    return config_dir() / "clusters.toml"


def project_file(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.getcwd()) / PROJECT_FILE


def files(root: str | os.PathLike | None = None) -> list[Path]:
    """The template files in the order they are read (later ones win)."""
    return [user_file(), project_file(root)]


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model whose keys live at `loc` inside a template (for did-you-mean)."""
    if not loc[:-1]:
        return Template
    if loc[0] == "nodes" and len(loc) == 3:
        return Group
    if loc[0] == "elastic" and len(loc) == 2:
        return Elastic
    return None


def validate(name: str, body: dict, file: str | None = None) -> Template:
    """One template's table (merged onto the built-in of that name) -> Template; errors name
    the file, the key and the fix."""
    where = f"templates.{name}"
    why = pathnames.problem(name, 64)
    if why:
        raise ClusterError(f"bad template name {name!r}: {why}", "use e.g. 'lab-3'",
                           file=file, key=where)
    if not isinstance(body, dict):
        raise ClusterError("a template is a table of keys", f"write [{where}] followed by "
                           "provider = \"netns\" ...", file=file, key=where)
    base = builtins().get(name, {})
    merged = {**base, **body, "name": name}
    if isinstance(merged.get("slurm"), dict):
        for k in merged["slurm"]:
            why = slurm_key_problem(str(k))
            if why:
                raise ClusterError(why[0], why[1], file=file, key=f"{where}.slurm.{k}")
    if "provider" not in merged:
        raise ClusterError("the template names no provider",
                           f"add provider = \"netns\" (one of: {', '.join(PROVIDERS)})",
                           file=file, key=f"{where}.provider")
    if merged.get("provider") == "ssh":
        merged = _ssh_count(merged, file, where)
    try:
        t = Template.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join([where, *loc]) if loc else where
        msg = err["msg"].removeprefix("Value error, ")
        fix = None
        if err["type"] == "extra_forbidden":
            model = _model_at(tuple(err["loc"]))
            known = [k for k in (model.model_fields if model else {}) if k not in ("name",
                                                                                     "file")]
            near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            msg = f"unknown key '{err['loc'][-1]}'"
            fix = (f"did you mean '{near[0]}'? " if near else "") + \
                ("known keys: " + ", ".join(known) if known else "remove it")
        elif err["type"] == "literal_error":
            fix = f"provider is one of: {', '.join(PROVIDERS)}"
        elif err["type"] in ("int_type", "int_parsing", "int_from_float"):
            fix = "give a whole number, e.g. 2"
        elif "below count" in msg:
            fix = "raise max or lower count"
        elif "min/max" in msg or "count" in msg:
            fix = "a static group: count = N (max optional); an elastic one: min, max"
        elif loc and loc[0] == "setup":
            fix = "setup = [[\"python3\", \"-m\", \"pip\", \"install\", \"numpy\"]]"
        elif loc and loc[0] == "slurm":
            fix = "remove it, or give a slurm.conf key from `man slurm.conf`"
        elif loc and loc[0] == "nodes":
            fix = f"see [{where}.nodes.GROUP] in docs/CLUSTERS.md"
        raise ClusterError(msg, fix, file=file, key=key) from None
    t.file = file or "built-in"
    return t


def _ssh_count(merged: dict, file: str | None, where: str) -> dict:
    """Provider ssh: one node per host, so a template with one node group gets count =
    len(hosts) (a count that differs is an error); with several groups, their counts take the
    hosts in order."""
    hosts = merged.get("ssh", {}).get("hosts") if isinstance(merged.get("ssh"), dict) else None
    groups = merged.get("nodes") or {DEFAULT_GROUP: {}}
    if not isinstance(hosts, list) or not isinstance(groups, dict) or len(groups) != 1:
        return merged
    (name, g), = groups.items()
    if not isinstance(g, dict):
        return merged
    if g.get("count") is not None and g["count"] != len(hosts):
        raise ClusterError(f"provider ssh makes one node per host: count is {g['count']}, "
                           f"ssh.hosts lists {len(hosts)} machine(s)",
                           "remove count (it follows hosts), or list the machines in hosts",
                           file=file, key=f"{where}.nodes.{name}.count")
    return {**merged, "nodes": {name: {**g, "count": len(hosts)}}}


def parse(data: dict, file: str | None = None) -> dict[str, Template]:
    if not isinstance(data, dict):
        raise ClusterError("a cluster templates file is a TOML table", file=file)
    for k in data:
        if k != "templates":
            raise ClusterError(f"unknown top-level key '{k}'",
                               f"put each template in a table [templates.NAME], e.g. "
                               f"[templates.{k}]", file=file, key=k)
    tables = data.get("templates", {})
    if not isinstance(tables, dict):
        raise ClusterError("'templates' must be a table of tables", "write [templates.NAME] "
                           "sections", file=file, key="templates")
    return {name: validate(name, body, file) for name, body in tables.items()}


def _read(path: Path) -> dict:
    from pushbutton.spec.model import read_toml
    try:
        return read_toml(path)
    except SpecError as e:
        raise ClusterError(e.message, e.fix, file=str(path)) from None


def load_all(root: str | os.PathLike | None = None) -> dict[str, Template]:
    out = {name: validate(name, body) for name, body in builtins().items()}
    for path in files(root):
        if path.exists():
            out.update(parse(_read(path), str(path)))
    return out


def get(name: str, root: str | os.PathLike | None = None) -> Template:
    templates = load_all(root)
    if name in templates:
        return templates[name]
    near = difflib.get_close_matches(name, list(templates), n=1)
    raise ClusterError(f"no cluster template named '{name}'",
                       (f"did you mean '{near[0]}'? " if near else "") +
                       f"templates: {', '.join(sorted(templates))} (`pb cluster templates`); "
                       f"define one as [templates.{name}] in {PROJECT_FILE} or {user_file()}",
                       key="TEMPLATE")


# -- flags -------------------------------------------------------------------------------------
def _split_flag(flag: str, value: str, t: Template) -> tuple[str, str]:
    """'3' -> (default group, '3'); 'gpu=2' -> ('gpu', '2')."""
    if "=" in value:
        group, _, v = value.partition("=")
        if group not in t.nodes:
            raise ClusterError(f"{flag} {value}: template '{t.name}' has no node group "
                               f"'{group}'", f"its groups: {', '.join(t.nodes)}")
        return group, v
    if len(t.nodes) == 1:
        return next(iter(t.nodes)), value
    if DEFAULT_GROUP in t.nodes:
        return DEFAULT_GROUP, value
    raise ClusterError(f"{flag} {value}: template '{t.name}' has several node groups",
                       f"name the group: {flag} {next(iter(t.nodes))}={value}")


def _parse_option(text: str):
    """--option KEY=VALUE: VALUE as TOML (a list, a number, a quoted string) or else a string."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    key, _, raw = text.partition("=")
    if not key or not _:
        raise ClusterError(f"--option {text!r} is not KEY=VALUE",
                           "e.g. --option subnet=10.77.3.0/24 or --option 'hosts=[\"a\",\"b\"]'")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def with_flags(t: Template, nodes=(), cpus=(), memory=(), gres=(), options=(),
               hosts=()) -> Template:
    """The template with the flags of `pb cluster up` applied (each flag may repeat, as
    N or GROUP=N; `hosts`: the machines of provider ssh, `--host`), validated again."""
    body = t.model_dump(exclude={"name", "file"}, exclude_none=True)
    groups = body["nodes"]
    if t.provider == "ssh" and nodes:
        raise ClusterError("--nodes: provider ssh has one node per machine",
                           "name the machines: --host ws1 --host ws2 (the first runs slurmctld)")
    if hosts and t.provider != "ssh":
        raise ClusterError(f"--host is for provider ssh; template '{t.name}' has provider "
                           f"'{t.provider}'", "leave --host out, or use a template of "
                           "provider ssh (`pb cluster up ssh NAME --host ws1`)")
    for flag, values, key in (("--nodes", nodes, "count"), ("--cpus", cpus, "cpus"),
                              ("--memory", memory, "memory"), ("--gres", gres, "gres")):
        for value in values:
            group, v = _split_flag(flag, str(value), t)
            g = groups[group]
            if key == "gres":
                g["gres"] = v
                continue
            try:
                n = int(v)
            except ValueError:
                raise ClusterError(f"{flag} {value}: not a whole number",
                                   f"e.g. {flag} 2") from None
            if key == "count":
                if t.nodes[group].elastic:
                    raise ClusterError(f"--nodes: group '{group}' is elastic (min/max)",
                                       "set min/max in the template")
                if g.get("max") is not None and g["max"] == t.nodes[group].count + SLOTS:
                    g.pop("max")  # the default slots follow the new count
            g[key] = n
    table = OPTION_TABLE[t.provider]
    for text in options:
        if not table:
            raise ClusterError(f"--option: provider '{t.provider}' takes no options")
        k, v = _parse_option(text)
        body.setdefault(table, {})[k] = v
    if hosts:
        body.setdefault("ssh", {})["hosts"] = list(hosts)
    if t.provider == "ssh" and body.get("ssh", {}).get("hosts") != t.options.get("hosts") \
            and len(groups) == 1:  # other machines: the count follows them
        g = next(iter(groups.values()))
        if g.get("max") == g.get("count", 0) + SLOTS:
            g.pop("max")
        g.pop("count", None)
    try:
        out = validate(t.name, body)
    except ClusterError as e:
        field = (e.key or "").rsplit(".", 1)[-1]
        flag = {"count": "--nodes", "cpus": "--cpus", "memory": "--memory",
                "gres": "--gres"}.get(field, "the flags")
        raise ClusterError(f"{flag}: {e.message} (template '{t.name}', key {e.key})",
                           e.fix if flag == "the flags" else f"e.g. {flag} 2"
                           if flag != "--gres" else "e.g. --gres gpu:1") from None
    out.file = t.file
    return out
