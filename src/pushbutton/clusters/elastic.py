"""Elastic node groups: SLURM's own power saving starts and stops pushbutton's nodes.

A group with `min`/`max` instead of `count` has `max` nodes in slurm.conf. The first `min` are
ordinary nodes that `up` starts and SLURM never suspends (`SuspendExcNodes`, which also names
every static node and free slot). The others are `State=CLOUD`: slurmctld starts with them
powered down (sinfo: `idle~`, listed thanks to `PrivateData=cloud`). When a job needs one,
slurmctld runs `ResumeProgram` with their names; when one has been idle for `SuspendTime`
seconds, `SuspendProgram`; when one did not register within `ResumeTimeout`,
`ResumeFailProgram`. Those three are small scripts `up` writes into the cluster's folder
(`power/`): they name the Python interpreter, the folder holding this package and the
cluster's folder by absolute path (slurmctld runs them with an almost empty environment) and
call `python -m pushbutton cluster _power ACTION --dir FOLDER HOSTLIST`, which runs here:
`resume` creates, sets up and starts exactly those nodes through the cluster's provider (and
tells slurmctld each one's address), `suspend` stops them, `resume-fail` records the failure.
Each call holds the cluster's lock (slurmctld may run several at once) and writes one line per
step to `log/power.log`. A node whose resume fails is set DOWN in SLURM with a reason (its
jobs go elsewhere, SLURM does not try it again) and its record says what failed and the fix;
`pb cluster up NAME` puts it back in the pool once fixed.

Needs slurmctld on this host (provider netns): the programs run where slurmctld runs.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from pushbutton.clusters import controller
from pushbutton.clusters.cluster import Cluster, ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.slurm_conf import _hostlist
from pushbutton.clusters.state import call, provider_for, template_of
from pushbutton.clusters.templates import Template

ACTIONS = ("resume", "suspend", "resume-fail")
# slurm.conf keys pushbutton writes for elastic groups ([templates.X.elastic] sets the times)
POWER_KEYS = ("SuspendProgram", "ResumeProgram", "ResumeFailProgram", "SuspendTime",
              "ResumeTimeout", "SuspendTimeout", "SuspendExcNodes")
REASON = "pb: resume failed, see pb cluster status"


def has_elastic(t: Template) -> bool:
    return any(g.elastic for g in t.nodes.values())


def check(t: Template, prov) -> None:
    """An elastic template that pushbutton can run: slurmctld on this host, and no power key
    in its `slurm` table (they come from [templates.X.elastic])."""
    if not has_elastic(t):
        return
    groups = [g for g, grp in t.nodes.items() if grp.elastic]
    try:
        remote = prov.controller() is not None
    except ClusterError:  # a provider that cannot name its head yet has one elsewhere
        remote = True
    if remote:
        raise ClusterError(f"elastic node groups ({', '.join(groups)}) need slurmctld on this "
                           f"host; provider {t.provider} runs it on a head node, where SLURM's "
                           "power programs cannot reach pushbutton (not built)",
                           "give the groups a count, or use provider netns",
                           file=t.file, key=f"templates.{t.name}.nodes.{groups[0]}")
    for k in t.slurm:
        if k in POWER_KEYS:
            raise ClusterError(f"slurm.conf key '{k}' is written by pushbutton for the elastic "
                               "groups", f"remove it; set suspend_time, resume_timeout or "
                               f"suspend_timeout in [templates.{t.name}.elastic]",
                               file=t.file, key=f"templates.{t.name}.slurm.{k}")


# -- slurm.conf and the programs -------------------------------------------------------------
def programs_dir(cl: Cluster) -> Path:
    return cl.dir / "power"


def package_root() -> Path:
    """The folder on sys.path that holds this package (a source tree's src/ or site-packages):
    this file is pushbutton/clusters/elastic.py in it."""
    return Path(__file__).resolve().parents[2]


def program_text(cl: Cluster, action: str) -> str:
    """The script slurmctld runs: everything by absolute path, nothing from its environment."""
    pypath = [str(package_root())] + [p for p in os.environ.get("PYTHONPATH", "").split(":")
                                      if p and os.path.isabs(p) and p != str(package_root())]
    env = {"PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONPATH": ":".join(pypath)}
    for k in ("HOME", "LANG", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    log = cl.log_dir / "power.log"
    argv = [sys.executable, "-m", "pushbutton", "cluster", "_power", action, "--dir",
            str(cl.dir)]
    key = {"resume": "ResumeProgram", "suspend": "SuspendProgram",
           "resume-fail": "ResumeFailProgram"}[action]
    return "\n".join([
        "#!/bin/sh",
        f"# SLURM's {key} for cluster {cl.name!r}, written by `pb cluster up`;",
        "# $1 is the hostlist slurmctld names. What it does: " + str(log),
        *[f"{k}={shlex.quote(v)}; export {k}" for k, v in env.items()],
        f"exec {shlex.join(argv)} \"$@\" >>{shlex.quote(str(log))} 2>&1 </dev/null", ""])


# SLURM's PrologSlurmctld for a cluster with elastic groups. A job given a powered-down node
# stays CONFIGURING until slurmctld sees the node ready, which it checks on a fixed 30-s timer
# (job_time_limit) -- or when the job's slurmctld prolog ends. This prolog waits until none of
# the job's nodes is still powering up (or ResumeTimeout has passed; a node whose resume failed
# is DOWN and ends the wait too), so a job starts as soon as its nodes registered. It always
# exits 0: it never holds or requeues a job. A template's own PrologSlurmctld replaces it.
PROLOG = r"""#!/bin/sh
# SLURM's PrologSlurmctld for cluster {name}, written by `pb cluster up`: waits until the
# job's nodes are no longer powering up, so the job starts as soon as they registered.
SLURM_CONF={conf}; export SLURM_CONF
PATH={path}; export PATH
end=$(( $(date +%s) + {wait} ))
while [ "$(date +%s)" -lt "$end" ]; do
  if out=$(scontrol -o show node "$SLURM_JOB_NODELIST" 2>/dev/null); then
    case "$out" in *POWERING_UP*|*POWERED_DOWN*) ;; *) exit 0 ;; esac
    case "$out" in *State=DOWN*) exit 0 ;; esac
  fi  # slurmctld busy: ask again
  sleep 0.2
done
exit 0
"""


def prolog_text(cl: Cluster, t: Template) -> str:
    return PROLOG.format(name=shlex.quote(cl.name), conf=shlex.quote(str(cl.conf)),
                         path=shlex.quote(os.environ.get("PATH") or
                                          "/usr/sbin:/usr/bin:/sbin:/bin"),
                         wait=int(t.elastic.resume_timeout) + 5)


def _merge(value, extra) -> str:
    items = [x for x in str(value or "").split(",") if x]
    return ",".join(items + [x for x in str(extra).split(",") if x and x not in items])


def configure(cl: Cluster, t: Template, prov) -> None:
    """Write the power programs and record the power-saving keys slurm.conf gets
    (`cl.data['power']`); a template without elastic groups gets none."""
    if not has_elastic(t):
        cl.data.pop("power", None)
        return
    d = programs_dir(cl)
    d.mkdir(parents=True, exist_ok=True)
    cl.log_dir.mkdir(parents=True, exist_ok=True)
    progs = {}
    for action in (*ACTIONS, "prolog"):
        path = d / action
        text = prolog_text(cl, t) if action == "prolog" else program_text(cl, action)
        if not path.exists() or path.read_text() != text:
            tmp = path.with_name(f".{action}.{os.getpid()}")
            tmp.write_text(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        progs[action] = str(path)
    e = t.elastic
    always = [n.name for n in cl.nodes if not n.elastic] + \
        [n.name for n in controller.slots(cl, t, cl.nodes, prov)]
    by_prefix: dict[str, list[str]] = {}
    for name in always:
        by_prefix.setdefault(name.rstrip("0123456789"), []).append(name)
    power = {"SuspendProgram": progs["suspend"], "ResumeProgram": progs["resume"],
             "ResumeFailProgram": progs["resume-fail"], "SuspendTime": e.suspend_time,
             "ResumeTimeout": e.resume_timeout, "SuspendTimeout": e.suspend_timeout,
             # powered-down CLOUD nodes are listed by sinfo (pb cluster status) only with this
             "PrivateData": _merge(t.slurm.get("PrivateData"), "cloud"),
             # the power thread looks for idle nodes this often (default 10 s)
             "SlurmctldParameters": _merge(t.slurm.get("SlurmctldParameters"),
                                           f"power_save_interval="
                                           f"{max(1, min(10, e.suspend_time // 2))}")}
    if "PrologSlurmctld" not in t.slurm:  # jobs start when their nodes registered (PROLOG)
        power["PrologSlurmctld"] = progs["prolog"]
    if always:
        power["SuspendExcNodes"] = ",".join(_hostlist(v) for v in by_prefix.values())
    if cl.data.get("power") != power:
        cl.data["power"] = power
        cl.save()


# -- the power records -----------------------------------------------------------------------
def _mark(cl: Cluster, name: str, state: str, keep_error: bool = False, **more) -> Node:
    """Record a node's power state with its record in cluster.json (`keep_error`: a failed
    node that SLURM suspends stays failed until `up` puts it back)."""
    n = cl.node(name)
    old = n.extra.get("power") or {}
    rec = {k: old[k] for k in ("error", "fix", "failed_at") if k in old} if keep_error else {}
    rec.update(state=state, at=time.time(), **{k: v for k, v in more.items() if v is not None})
    n.extra["power"] = rec
    cl.update_node(n)
    return n


def power_of(t: Template, n: Node, slurm: str | None) -> str | None:
    """What `pb cluster status` says of a node's power: None for a static group's node."""
    g = t.nodes.get(n.group)
    if g is None or not g.elastic:
        return None
    if not n.elastic:
        return "always on"
    rec = n.extra.get("power") or {}
    s = slurm or ""
    if rec.get("error"):
        return "resume failed"
    if s.endswith("~"):  # allocated~: a job waits, the resume is about to be asked
        return "powering up" if s.startswith(("alloc", "mix")) else "off"
    if s.endswith("#"):
        return "powering up"
    if s.endswith("%"):
        return "powering down"
    if s.endswith("!"):
        return "power down pending"
    if rec.get("state") == "resuming":
        return "powering up"
    if controller.ready(s):
        return "on"
    return rec.get("state") or "off"


def problems(cl: Cluster) -> list[str]:
    """A line per elastic node whose last resume failed: what, when, the fix, the next
    command."""
    out = []
    for n in cl.nodes:
        rec = n.extra.get("power") or {}
        if not rec.get("error"):
            continue
        when = time.strftime("%H:%M:%S", time.localtime(rec.get("failed_at") or rec["at"]))
        out.append(f"{n.name}: SLURM asked to start it at {when} and that failed: "
                   f"{rec['error']}" + (f"\n    fix: {rec['fix']}" if rec.get("fix") else "")
                   + f"\n    SLURM keeps it down (its jobs go to other nodes) until `pb cluster "
                   f"up {cl.name}` puts it back in the pool; log: {cl.log_dir / 'power.log'}")
    return out


def reconcile(cl: Cluster, t: Template, prov, say) -> None:
    """At `up`: elastic nodes that failed (or SLURM holds down) go back to the pool, powered
    down, so SLURM starts them again when a job needs them."""
    info = controller.nodes_info(cl) or {}
    for n in cl.nodes:
        if not n.elastic:
            continue
        rec = n.extra.get("power") or {}
        state = info.get(n.name, {}).get("state", "")
        if not (rec.get("error") or state.startswith(("down", "fail"))):
            continue
        why = rec.get("error") or f"SLURM had it {state}"
        say(f"  {n.name}: back in the pool (was: {why}); SLURM starts it when a job needs it")
        call(cl, prov.stop, [cl.node(n.name)])
        if n.name in info:
            controller.return_to_pool(cl, n.name)
        _mark(cl, n.name, "off")


# -- the programs' side: `pb cluster _power ACTION --dir FOLDER HOSTLIST` --------------------
class _Log:
    """One timestamped line per step in log/power.log (never making a folder that `down
    --delete` removed meanwhile: then the line goes to stderr)."""

    def __init__(self, cl: Cluster, action: str):
        self.cl, self.path, self.action = cl, cl.log_dir / "power.log", action

    def __call__(self, line: str) -> None:
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {self.action}: {line}\n"
        if self.cl.dir.is_dir():
            self.path.parent.mkdir(exist_ok=True)
            with open(self.path, "a") as f:
                f.write(text)
        else:
            sys.stderr.write(text)


def run(action: str, folder: str, hostlist: str) -> int:
    """What slurmctld's power programs run. Always exits 0 after logging: SLURM learns of a
    failure from the node's state (DOWN with a reason), not from the exit status."""
    if action not in ACTIONS:
        raise ClusterError(f"unknown power action {action!r}", f"one of: {', '.join(ACTIONS)}")
    cl = Cluster.at(folder)
    log = _Log(cl, action)
    if not cl.exists():
        log(f"{hostlist}: no cluster state in {cl.dir}; nothing done")
        return 0
    t0 = time.time()
    try:
        names = controller.hostnames(cl, hostlist)
        t = template_of(cl)
        log(f"slurmctld asks for {', '.join(names)}")
        with cl.lock(timeout=max(10.0, t.elastic.resume_timeout - 5), say=log, create=False):
            if not cl.exists() or not cl.done("controller"):
                log("the cluster is down (or going down): nothing done")
                return 0
            prov = provider_for(cl, t, say=log)
            {"resume": _resume, "suspend": _suspend, "resume-fail": _resume_failed}[action](
                cl, t, prov, names, log)
    except Exception as e:  # the boundary with slurmctld: whatever went wrong is logged
        log(f"FAILED: {_what(e)}" + (f"; fix: {e.fix}" if getattr(e, "fix", None) else ""))
        if not isinstance(e, ClusterError):
            log(traceback.format_exc().rstrip())
        return 0
    log(f"done in {time.time() - t0:.1f}s")
    return 0


def _what(e: BaseException) -> str:
    return e.message if isinstance(e, ClusterError) else f"{type(e).__name__}: {e}"


def _elastic_nodes(cl: Cluster, names: list[str], log) -> list[str]:
    out = []
    for name in names:
        try:
            n = cl.node(name)
        except ClusterError:
            log(f"{name}: not a node of cluster '{cl.name}'; left alone")
            continue
        if not n.elastic:
            log(f"{name}: an always-on node; left alone")
            continue
        out.append(name)
    return out


def _resume(cl: Cluster, t: Template, prov, names: list[str], log) -> None:
    for name in _elastic_nodes(cl, names, log):
        t0 = time.time()
        n = _mark(cl, name, "resuming")  # the providers update this record as they go
        try:
            call(cl, prov.create, [n])
            if n.addr:  # where slurmctld reaches it (a CLOUD node has no address before)
                controller.set_address(cl, n)
            if n.stage == "created":
                call(cl, prov.setup, [n])
            call(cl, prov.start, [n])
        except Exception as e:
            fix = getattr(e, "fix", None)
            log(f"{name}: resume FAILED after {time.time() - t0:.1f}s: {_what(e)}"
                + (f"; fix: {fix}" if fix else ""))
            if not isinstance(e, ClusterError):
                log(traceback.format_exc().rstrip())
            try:
                call(cl, prov.stop, [cl.node(name)])  # nothing half-started stays
            except Exception as e2:
                log(f"{name}: stopping what was started failed too: {_what(e2)}")
            _mark(cl, name, "failed", error=_what(e), fix=fix, failed_at=time.time())
            controller.set_down(cl, name, REASON)
            log(f"{name}: set DOWN in SLURM (its jobs go to other nodes)")
            continue
        _mark(cl, name, "on")
        log(f"{name}: started in {time.time() - t0:.1f}s"
            + (f" (address {n.addr})" if n.addr else ""))


def _suspend(cl: Cluster, t: Template, prov, names: list[str], log) -> None:
    for name in _elastic_nodes(cl, names, log):
        call(cl, prov.stop, [cl.node(name)])
        _mark(cl, name, "off", keep_error=True)
        log(f"{name}: stopped (SLURM powers it down)")


def _resume_failed(cl: Cluster, t: Template, prov, names: list[str], log) -> None:
    for name in _elastic_nodes(cl, names, log):
        call(cl, prov.stop, [cl.node(name)])
        rec = cl.node(name).extra.get("power") or {}
        if rec.get("error"):
            continue  # our own resume failed and said why
        err = (f"its slurmd did not register with slurmctld within ResumeTimeout "
               f"({t.elastic.resume_timeout}s)")
        _mark(cl, name, "failed", error=err, failed_at=time.time(),
              fix=f"see {cl.log_dir}/slurmd-{name}.log; raise resume_timeout in "
                  f"[templates.{t.name}.elastic] if the node needs longer to start")
        controller.set_down(cl, name, REASON)  # until `up` puts it back, not at random
        log(f"{name}: {err}; set DOWN in SLURM")
