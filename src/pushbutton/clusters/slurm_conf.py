"""The slurm.conf of a cluster pushbutton builds (any number of nodes), and the host facts it
needs: free ports and the memory a node may offer.

`render` is pure (text in, text out), so a provider that runs slurmctld elsewhere (ssh, cloud)
writes the same file there. Nodes:
* the cluster's nodes, each on its own line with NodeAddr (State=UNKNOWN: they register);
* elastic nodes (SLURM's power saving starts them) with State=CLOUD;
* free slots up to each group's `max` with State=FUTURE and no address: `pb cluster resize`
  activates one with `scontrol update NodeName=X NodeAddr=A NodeHostname=X State=RESUME`, so
  slurmctld sees a new node at once, without a restart (SLURM 22.05's documented use of FUTURE
  nodes), and a removed node goes back to State=FUTURE.
The file is rewritten after each resize (so a restart knows the nodes); a slurmd started later
then reads a file that differs from slurmctld's, hence `DebugFlags=NO_CONF_HASH`.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path

# top-level slurm.conf keys a template may set (`slurm = {...}`), from slurm.conf(5) of 22.05
KNOWN_KEYS = frozenset("""
AccountingStorageBackupHost AccountingStorageEnforce AccountingStorageExternalHost
AccountingStorageHost AccountingStorageParameters AccountingStoragePass AccountingStoragePort
AccountingStorageTRES AccountingStorageType AccountingStorageUser AccountingStoreFlags
AcctGatherEnergyType AcctGatherFilesystemType AcctGatherInterconnectType AcctGatherNodeFreq
AcctGatherProfileType AllowSpecResourcesUsage AuthAltParameters AuthAltTypes BatchStartTimeout
BcastExclude BcastParameters BurstBufferType CliFilterPlugins CommunicationParameters
CompleteWait CoreSpecPlugin CpuFreqDef CpuFreqGovernors DebugFlags DefCpuPerGPU DefMemPerCPU
DefMemPerGPU DefMemPerNode DependencyParameters DisableRootJobs EioTimeout EnforcePartLimits
Epilog EpilogMsgTime EpilogSlurmctld ExtSensorsFreq ExtSensorsType FairShareDampeningFactor
FederationParameters FirstJobId GetEnvTimeout GpuFreqDef GroupUpdateForce GroupUpdateTime
HealthCheckInterval HealthCheckNodeState HealthCheckProgram InactiveLimit InteractiveStepOptions
JobAcctGatherFrequency JobAcctGatherParams JobAcctGatherType JobCompHost JobCompLoc
JobCompParams JobCompPass JobCompPort JobCompType JobCompUser JobContainerType JobFileAppend
JobRequeue JobSubmitPlugins KeepPartInfo KeepPartState KillOnBadExit KillWait LaunchParameters
LaunchType Licenses LogTimeFormat MCSParameters MCSPlugin MailDomain MailProg MaxArraySize
MaxDBDMsgs MaxJobCount MaxJobId MaxMemPerCPU MaxMemPerNode MaxNodeCount MaxStepCount
MaxTasksPerNode MessageTimeout MinJobAge MpiDefault MpiParams NodeFeaturesPlugins OverTimeLimit
PluginDir PlugStackConfig PowerParameters PowerPlugin PreemptExemptTime PreemptMode PreemptType
PrEpParameters PrEpPlugins PriorityCalcPeriod PriorityDecayHalfLife PriorityFavorSmall
PriorityFlags PriorityMaxAge PriorityParameters PrioritySiteFactorParameters
PrioritySiteFactorPlugin PriorityType PriorityUsageResetPeriod PriorityWeightAge
PriorityWeightAssoc PriorityWeightFairshare PriorityWeightJobSize PriorityWeightPartition
PriorityWeightQOS PriorityWeightTRES PrivateData ProctrackType Prolog PrologEpilogTimeout
PrologFlags PrologSlurmctld PropagatePrioProcess PropagateResourceLimits
PropagateResourceLimitsExcept RebootProgram ReconfigFlags RequeueExit RequeueExitHold
ResumeFailProgram ResumeProgram ResumeRate ResumeTimeout ResvEpilog ResvOverRun ResvProlog
ReturnToService RoutePlugin SchedulerParameters SchedulerTimeSlice SchedulerType
ScronParameters SelectType SelectTypeParameters SlurmctldDebug SlurmctldParameters
SlurmctldPlugstack SlurmctldPrimaryOffProg SlurmctldPrimaryOnProg SlurmctldSyslogDebug
SlurmctldTimeout SlurmdDebug SlurmdParameters SlurmdSyslogDebug SlurmdTimeout SlurmSchedLogFile
SlurmSchedLogLevel SrunEpilog SrunPortRange SrunProlog SuspendExcNodes SuspendExcParts
SuspendProgram SuspendRate SuspendTime SuspendTimeout SwitchParameters SwitchType TaskEpilog
TaskPlugin TaskPluginParam TaskProlog TCPTimeout TmpFS TopologyParam TopologyPlugin TrackWCKey
TreeWidth UnkillableStepProgram UnkillableStepTimeout UsePAM VSizeFactor WaitTime
""".split())

# keys pushbutton writes itself from the cluster's state: a template may not set them
OWNED_KEYS = frozenset("""
ClusterName SlurmctldHost ControlMachine ControlAddr BackupController BackupAddr SlurmctldPort
SlurmdPort SlurmUser SlurmdUser AuthType CredType AuthInfo StateSaveLocation SlurmdSpoolDir
SlurmctldPidFile SlurmdPidFile SlurmctldLogFile SlurmdLogFile NodeName PartitionName GresTypes
DownNodes NodeSet FrontendName
""".split())

DEFAULTS = {
    "SlurmdParameters": "config_overrides",  # a node may offer what the template says
    "ProctrackType": "proctrack/linuxproc",
    "TaskPlugin": "task/none",
    "JobAcctGatherType": "jobacct_gather/none",
    "AccountingStorageType": "accounting_storage/none",
    "JobCompType": "jobcomp/none",
    "MpiDefault": "none",
    "SwitchType": "switch/none",
    "SelectType": "select/cons_tres",
    "SelectTypeParameters": "CR_Core",
    "ReturnToService": 2,          # a node that was down comes back when its slurmd registers
    "SlurmctldTimeout": 30,
    "SlurmdTimeout": 15,           # a dead node reads down* within ~40 s
    "InactiveLimit": 0,
    "KillWait": 2,
    "MinJobAge": 300,
    "MaxArraySize": 10001,
    "MaxJobCount": 20000,
    "TreeWidth": 65533,            # slurmctld talks to each slurmd itself (no forwarding)
    "SlurmctldDebug": "info",
    "SlurmdDebug": "info",
    "SchedulerType": "sched/backfill",
    "SchedulerParameters": "batch_sched_delay=0,sched_min_interval=100000,bf_interval=5",
}


def free_ports(n: int) -> list[int]:
    """n free TCP ports on this host, no two adjacent."""
    out: list[int] = []
    while len(out) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p not in out and p + 1 not in out and p - 1 not in out:
            out.append(p)
    return out


def port_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def memory_total_mb() -> int:
    """90% of this host's memory in MB (what the node offers to jobs); 1024 when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(int(line.split()[1]) / 1024 * 0.9)
    except (OSError, ValueError, IndexError):
        pass
    return 1024


def cluster_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())[:30] or "pb"


def _value(v) -> str:
    if isinstance(v, bool):
        return "YES" if v else "NO"
    return str(v)


def _hostlist(names: list[str]) -> str:
    """n4,n5,n6,n9 -> n[4-6,9] (names sharing a prefix and numbered)."""
    m = [re.fullmatch(r"(.*?)(\d+)", n) for n in names]
    if not names or not all(m) or len({x.group(1) for x in m}) != 1 or \
            any(x.group(2).startswith("0") and x.group(2) != "0" for x in m):
        return ",".join(names)
    prefix, nums = m[0].group(1), sorted(int(x.group(2)) for x in m)
    if len(nums) == 1:
        return f"{prefix}{nums[0]}"
    runs, start = [], nums[0]
    for a, b in zip(nums, nums[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return f"{prefix}[{','.join(runs)}]"


def _node_attrs(n) -> str:
    out = f"CPUs={n.cpus} RealMemory={n.memory}"
    return out + (f" Gres={n.gres}" if n.gres else "")


def render(*, name: str, ctl_host: str, ctl_addr: str | None, ctld_port: int, slurmd_port: int,
           user: str, state_dir: Path, log_dir: Path, spool_dir: Path, pid_dir: Path,
           munge_socket: Path | None, nodes: list, future: list, partition: str = "main",
           extra: dict | None = None, power: dict | None = None, provider: str = "") -> str:
    """slurm.conf's text. `nodes`: the cluster's Node records (elastic ones State=CLOUD),
    `future`: free slots (Node-like, no address), `extra`: the template's `slurm` table,
    `power`: power-saving keys (SuspendProgram, ResumeProgram, SuspendTime, ...)."""
    keys = dict(DEFAULTS)
    keys.update(extra or {})
    keys.update(power or {})  # the template may not set these (elastic.check); lists merged
    flags = [f for f in str(keys.pop("DebugFlags", "")).split(",") if f]
    keys["DebugFlags"] = ",".join(flags + ([] if "NO_CONF_HASH" in flags else ["NO_CONF_HASH"]))
    lines = [f"# Generated by `pb cluster` for cluster {name!r}"
             + (f" (provider {provider})" if provider else "") + "; rewritten by pb cluster.",
             f"ClusterName={cluster_name(name)}",
             f"SlurmctldHost={ctl_host}" + (f"({ctl_addr})" if ctl_addr else ""),
             f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
             f"SlurmUser={user}", f"SlurmdUser={user}",
             "AuthType=auth/munge", "CredType=cred/munge"]
    if munge_socket:
        lines.append(f"AuthInfo=socket={munge_socket}")
    lines += [f"StateSaveLocation={state_dir}",
              f"SlurmdSpoolDir={spool_dir}/slurmd-%n",
              f"SlurmctldPidFile={pid_dir}/slurmctld.pid",
              f"SlurmdPidFile={pid_dir}/slurmd-%n.pid",
              f"SlurmctldLogFile={log_dir}/slurmctld.log",
              f"SlurmdLogFile={log_dir}/slurmd-%n.log"]
    lines += [f"{k}={_value(v)}" for k, v in keys.items()]
    gres = sorted({g.split(":")[0] for g in (n.gres for n in [*nodes, *future]) if g})
    if gres:
        lines.append(f"GresTypes={','.join(gres)}")
    for n in nodes:
        addr = f" NodeAddr={n.addr} NodeHostname={n.name}" if n.addr else ""
        lines.append(f"NodeName={n.name}{addr} {_node_attrs(n)} "
                     f"State={'CLOUD' if n.elastic else 'UNKNOWN'}")
    # free slots: one line per run of alike nodes
    by_kind: dict[tuple, list[str]] = {}
    for n in future:
        by_kind.setdefault((_node_attrs(n),), []).append(n.name)
    for (attrs,), names in by_kind.items():
        groups: dict[str, list[str]] = {}
        for nm in names:
            groups.setdefault(re.sub(r"\d+$", "", nm), []).append(nm)
        for members in groups.values():
            lines.append(f"NodeName={_hostlist(members)} {attrs} State=FUTURE")
    if not nodes and not future:  # SLURM needs a node line; one slot that never runs
        lines.append("NodeName=pb-none CPUs=1 RealMemory=1 State=FUTURE")
    lines.append(f"PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


# GRES with a plugin of their own: SLURM counts only the devices named by File=
DEVICE_GRES = ("gpu", "mps", "shard", "nic")


def gres_items(gres: str | None) -> list[tuple[str, str | None, int]]:
    """'gpu:a100:2,foo:1' -> [('gpu', 'a100', 2), ('foo', None, 1)]."""
    out = []
    for item in (gres or "").split(","):
        if not item:
            continue
        parts = item.split(":")
        count = int(parts[-1]) if parts[-1].isdigit() else 1
        names = parts[:-1] if parts[-1].isdigit() else parts
        out.append((names[0], names[1] if len(names) > 1 else None, count))
    return out


def gres_conf(nodes: list, files=None) -> str | None:
    """gres.conf for nodes with GRES, or None. `files(node, name, count)` gives the File=
    value of a device GRES (gpu, ...: SLURM counts only the devices named); other GRES are
    count-only."""
    out = []
    for n in nodes:
        for name, typ, count in gres_items(n.gres):
            line = f"NodeName={n.name} Name={name}" + (f" Type={typ}" if typ else "")
            f = files(n, name, count) if files and name in DEVICE_GRES else None
            out.append(line + (f" File={f}" if f else f" Count={count}"))
    return "\n".join(["# Generated by `pb cluster`", *out]) + "\n" if out else None
