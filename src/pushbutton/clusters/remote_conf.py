"""Where a cluster's files live on machines reached over SSH, and its multi-node slurm.conf.

Everything of cluster NAME on a machine lives under one per-cluster folder (`Layout.root`,
default `~/.pushbutton-clusters/NAME`, resolved against the head's home so that the path is the
same on every machine) plus one short machine-local folder for sockets and spools
(`Layout.run`, `/tmp/pbc-<hash>`: a unix socket path must stay under 108 bytes, and a socket or
a spool on an NFS home would be shared by machines that must not share it). Files of one node
carry its name (`%n` in slurm.conf), so machines that share the per-cluster folder (NFS homes,
network-namespace nodes on one host) never write the same file.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# slurm.conf keys this module writes itself; a template's `slurm = {...}` may override them
_BASE = """ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
MaxArraySize=10001
MaxJobCount=20000
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,bf_interval=5"""


def expand_home(path: str, home: str) -> str:
    """`~` or `~/x` against a remote home folder; other paths unchanged."""
    if path == "~":
        return home
    if path.startswith("~/"):
        return home.rstrip("/") + "/" + path[2:]
    return path


@dataclass(frozen=True)
class Layout:
    """The paths of one cluster on every machine (the same on all of them)."""
    cluster: str
    root: str     # per-cluster folder (absolute)
    run: str      # machine-local folder for sockets and spools (absolute, short)

    @classmethod
    def make(cls, cluster: str, home: str, user: str,
             cluster_dir: str = "~/.pushbutton-clusters") -> "Layout":
        root = expand_home(cluster_dir, home).rstrip("/") + "/" + cluster
        h = hashlib.sha1(f"{user}:{root}".encode()).hexdigest()[:12]
        return cls(cluster=cluster, root=root, run=f"/tmp/pbc-{h}")

    @classmethod
    def from_json(cls, d: dict) -> "Layout":
        return cls(cluster=d["cluster"], root=d["root"], run=d["run"])

    def to_json(self) -> dict:
        return {"cluster": self.cluster, "root": self.root, "run": self.run}

    def check(self) -> str | None:
        """Why these paths are unsafe to create and remove (None when fine)."""
        if not self.root.startswith("/") or self.root.count("/") < 2 or \
                not self.root.endswith("/" + self.cluster) or "/../" in self.root + "/":
            return f"cluster folder {self.root!r} is not an absolute path ending in the cluster name"
        if not re.fullmatch(r"/tmp/pbc-[0-9a-f]{12}", self.run):
            return f"run folder {self.run!r} is not one this module makes"
        return None

    # files
    @property
    def conf(self) -> str:
        return f"{self.root}/slurm.conf"

    @property
    def gres_conf(self) -> str:
        return f"{self.root}/gres.conf"  # SLURM reads it next to slurm.conf

    @property
    def key(self) -> str:
        return f"{self.root}/munge.key"

    @property
    def socket(self) -> str:
        return f"{self.run}/munge.socket"

    @property
    def folders(self) -> list[str]:
        return [self.root, f"{self.root}/log", f"{self.root}/run", f"{self.root}/state", self.run]

    def pidfile(self, daemon: str, node: str | None = None) -> str:
        if daemon == "munged":
            return f"{self.run}/munged.pid"
        return f"{self.root}/run/{daemon}-{node}.pid" if node else \
            f"{self.root}/run/{daemon}.pid"

    def record(self, daemon: str, node: str | None = None) -> str:
        """The file holding the hash of the key/config a daemon was started with."""
        return self.pidfile(daemon, node)[:-4] + ".started"

    def log(self, what: str, node: str | None = None) -> str:
        return f"{self.root}/log/{what}-{node}.log" if node else f"{self.root}/log/{what}.log"

    def setup_record(self, node: str) -> str:
        return f"{self.root}/run/setup-{node}.done"

    def node_files(self, node: str) -> list[str]:
        """Files that belong to one node only (removed when that node leaves)."""
        return [self.pidfile("slurmd", node), self.record("slurmd", node),
                self.log("slurmd", node), self.log("start", node), self.log("munged", node),
                self.setup_record(node)]

    def spool(self, node: str) -> str:
        return f"{self.run}/spool-{node}"


def cluster_name(name: str) -> str:
    """SLURM's ClusterName: lower case letters and digits, at most 30."""
    return re.sub(r"[^a-z0-9]", "", name.lower())[:30] or "pb"


EMPTY = "pb-empty"      # the FUTURE node of a cluster without nodes


def slurm_conf(lay: Layout, *, user: str, head_host: str, head_addr: str, ctld_port: int,
               slurmd_port: int, nodes, partition: str = "main",
               extra: dict | None = None) -> str:
    """slurm.conf of a cluster whose slurmctld runs on the head (hostname head_host, reached at
    head_addr) and whose slurmd run on `nodes` (Node records: name, addr, cpus, memory, gres),
    all daemons as `user`."""
    lines = [
        f"# Generated by `pb cluster` for cluster {lay.cluster!r} (provider ssh); rewritten.",
        f"ClusterName={cluster_name(lay.cluster)}",
        f"SlurmctldHost={head_host}({head_addr})",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={lay.socket}",
        f"StateSaveLocation={lay.root}/state",
        f"SlurmdSpoolDir={lay.run}/spool-%n",
        f"SlurmctldPidFile={lay.pidfile('slurmctld')}",
        f"SlurmdPidFile={lay.root}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={lay.log('slurmctld')}",
        f"SlurmdLogFile={lay.root}/log/slurmd-%n.log",
    ]
    body = dict(line.split("=", 1) for line in _BASE.splitlines())
    body.update({str(k): str(v) for k, v in (extra or {}).items()})
    gres_types = sorted({g.split(":")[0] for n in nodes for g in (n.gres or "").split(",") if g})
    if gres_types:
        body["GresTypes"] = ",".join(gres_types)
    lines += [f"{k}={v}" for k, v in body.items()]
    for n in nodes:
        line = (f"NodeName={n.name} NodeAddr={n.addr} CPUs={n.cpus} RealMemory={n.memory}")
        if n.gres:
            line += f" Gres={n.gres}"
        lines.append(line + " State=UNKNOWN")
    names = ",".join(n.name for n in nodes)
    if not names:  # no node (a resize to 0): slurmctld wants one; a FUTURE slot holds the
        names = EMPTY  # partition, so jobs wait there until nodes join
        lines.append(f"NodeName={EMPTY} CPUs=1 RealMemory=1 State=FUTURE")
    lines.append(f"PartitionName={partition} Nodes={names} Default=YES MaxTime=INFINITE "
                 "State=UP")
    return "\n".join(lines) + "\n"


def gres_conf(nodes) -> str:
    """gres.conf for the nodes with GRES (counts only: `gpu:2` -> Name=gpu Count=2)."""
    out = []
    for n in nodes:
        for g in (n.gres or "").split(","):
            if not g:
                continue
            bits = g.split(":")
            count = bits[-1] if len(bits) > 1 and bits[-1].isdigit() else "1"
            typ = f" Type={bits[1]}" if len(bits) == 3 else ""
            out.append(f"NodeName={n.name} Name={bits[0]}{typ} Count={count}")
    return ("# Generated by `pb cluster` (provider ssh); rewritten.\n" + "\n".join(out) + "\n"
            if out else "")


def conf_ports(text: str) -> tuple[int, int] | None:
    """(SlurmctldPort, SlurmdPort) of an existing slurm.conf text, when both are there."""
    got = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(SlurmctldPort|SlurmdPort)\s*=\s*(\d+)\s*", line)
        if m:
            got[m.group(1)] = int(m.group(2))
    if "SlurmctldPort" in got and "SlurmdPort" in got:
        return got["SlurmctldPort"], got["SlurmdPort"]
    return None
