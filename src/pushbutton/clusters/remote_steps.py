"""The idempotent steps that make one machine a node of a cluster, each with `check` (is it done
already? returns what it found, or None) and `apply` (do it; returns what it did).

A step's line says what happened: a check step says "ok ...", an action step either
"... already ..." (nothing changed) or what it changed ("installed munge slurm-wlm",
"wrote slurm.conf (changed)", "started munged").
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from pushbutton.clusters.remote_conf import Layout
from pushbutton.clusters.remote_lib import Remote, parse_facts

# programs each machine needs, by role
NEED_ALL = ("python3", "munged", "munge", "unmunge", "sha256sum", "base64")
NEED_COMPUTE = ("slurmd",)
NEED_HEAD = ("slurmctld", "sinfo", "sbatch", "squeue", "scancel", "scontrol")

# the package that brings each program, by package manager
PACKAGES = {
    "apt-get": {"python3": "python3", "munged": "munge", "munge": "munge", "unmunge": "munge",
                "slurmd": "slurm-wlm", "slurmctld": "slurm-wlm", "sinfo": "slurm-wlm",
                "sbatch": "slurm-wlm", "squeue": "slurm-wlm", "scancel": "slurm-wlm",
                "scontrol": "slurm-wlm", "sha256sum": "coreutils", "base64": "coreutils"},
    "dnf": {"python3": "python3", "munged": "munge", "munge": "munge", "unmunge": "munge",
            "slurmd": "slurm-slurmd", "slurmctld": "slurm-slurmctld", "sinfo": "slurm",
            "sbatch": "slurm", "squeue": "slurm", "scancel": "slurm", "scontrol": "slurm",
            "sha256sum": "coreutils", "base64": "coreutils"},
}
PACKAGES["yum"] = PACKAGES["dnf"]


def needed(is_head: bool, compute: bool) -> list[str]:
    return list(NEED_ALL) + (list(NEED_COMPUTE) if compute else []) + \
        (list(NEED_HEAD) if is_head else [])


def missing_programs(facts: dict, is_head: bool, compute: bool) -> list[str]:
    return [p for p in needed(is_head, compute) if not facts.get(f"bin_{p}")]


def packages_for(pm: str, programs: list[str]) -> list[str]:
    """The packages that bring `programs` with package manager pm (apt-get, dnf, yum)."""
    table = PACKAGES.get(pm, {})
    out: list[str] = []
    for p in programs:
        pkg = table.get(p)
        if pkg and pkg not in out:
            out.append(pkg)
    return out


def install_commands(facts: dict, packages: list[str]) -> list[list[str]]:
    """The argv lists that install `packages` there, in order (apt-get: a second try after
    `apt-get update` is done by the step when the first fails). [] when nothing to install."""
    if not packages:
        return []
    pm = facts.get("pm", "")
    sudo = [] if facts.get("uid") == "0" else ["sudo", "-n"]
    if pm == "apt-get":
        return [sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                        "-o", "DPkg::Lock::Timeout=600", "--no-install-recommends", *packages]]
    if pm in ("dnf", "yum"):
        return [sudo + [pm, "install", "-y", *packages]]
    return []


def privileges(facts: dict) -> str:
    """'root', 'sudo' (passwordless) or 'none'."""
    if facts.get("uid") == "0":
        return "root"
    return "sudo" if facts.get("sudo") == "yes" else "none"


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass
class Ctx:
    """One machine during setup."""
    node: object                  # the Node record
    remote: Remote
    opts: object                  # SetupOptions
    is_head: bool
    compute: bool                 # runs slurmd
    facts: dict = field(default_factory=dict)
    lay: Layout | None = None
    conf_text: str = ""
    gres_text: str = ""
    key: bytes = b""
    key_sha: str = ""             # of the key (setup), or of the key file there (start)
    workdir: str = ""             # the work folder, absolute (the head's path)
    token: str = ""               # what the head wrote into the work folder

    @property
    def name(self) -> str:
        return self.node.name

    def bin(self, prog: str) -> str:
        return self.facts.get(f"bin_{prog}") or prog

    def probe(self, step: str = "reachable") -> dict:
        r = self.remote.lib(step, "pb_probe", timeout=max(30, self.opts.connect_timeout + 20),
                            fix=f"make `ssh {self.remote.host} true` work without a password "
                                "(an SSH key, BatchMode), then run the same command again")
        self.facts = parse_facts(r.stdout)
        return self.facts


@dataclass
class Step:
    name: str
    doc: str
    check: Callable[[Ctx], str | None]
    apply: Callable[[Ctx], str] | None = None
    only: str = "all"             # all | head | compute

    def applies(self, c: Ctx) -> bool:
        return self.only == "all" or (self.only == "head" and c.is_head) or \
            (self.only == "compute" and c.compute)

    def run(self, c: Ctx) -> str:
        found = self.check(c)
        if found is not None:
            return found
        return self.apply(c)


# -- check steps --------------------------------------------------------------------------
def _reachable(c: Ctx) -> str:
    c.probe()
    return f"ok (ssh {c.remote.host}, user {c.facts.get('user')}, host {c.facts.get('hostname')}, " \
        f"address {c.node.addr or c.facts.get('addr') or '?'})"


def _system(c: Ctx) -> str:
    f = c.facts
    pm = f.get("pm") or "no known package manager"
    return f"ok ({f.get('os', '?').strip()}, {pm}, {f.get('cpus', '?')} CPUs, " \
        f"{f.get('mem_mb', '?')} MB)"


def _python3(c: Ctx) -> str | None:
    if c.facts.get("python3"):
        return f"ok (python3 {c.facts['python3']})"
    if c.opts.install:
        return None  # installed by the packages step
    raise c.remote.fail("python3", "python3 is not installed (pushbutton's worker runs with it)",
                        "install it there (apt-get install python3 / dnf install python3)")


def _python3_later(c: Ctx) -> str:
    return "missing: the packages step installs it"


def _privileges(c: Ctx) -> str:
    p = privileges(c.facts)
    if p == "none":
        return f"ok (user {c.facts.get('user')} is not root and has no passwordless sudo; " \
            "needed only to install packages)"
    return f"ok ({'root' if p == 'root' else 'passwordless sudo'})"


# -- action steps -------------------------------------------------------------------------
def _packages_check(c: Ctx) -> str | None:
    miss = missing_programs(c.facts, c.is_head, c.compute)
    if not miss:
        return f"munge and slurm already installed ({c.facts.get('slurm') or 'slurm'})"
    return None


def _packages_apply(c: Ctx) -> str:
    miss = missing_programs(c.facts, c.is_head, c.compute)
    pm = c.facts.get("pm", "")
    pkgs = packages_for(pm, miss)
    fix_pm = "install them by hand: on Debian/Ubuntu `apt-get install munge slurm-wlm " \
        "python3`, on RHEL-likes `dnf install epel-release && dnf install munge slurm " \
        "slurm-slurmd slurm-slurmctld python3`"
    if not pkgs:
        raise c.remote.fail("packages", f"{', '.join(miss)} missing and no apt-get, dnf or yum "
                            "to install them with", fix_pm)
    if not c.opts.install:
        raise c.remote.fail("packages", f"{', '.join(miss)} missing (packages "
                            f"{' '.join(pkgs)}) and installing is turned off", fix_pm)
    if privileges(c.facts) == "none":
        raise c.remote.fail("packages", f"{', '.join(miss)} missing (packages {' '.join(pkgs)})"
                            f"; user {c.facts.get('user')} is not root and has no passwordless "
                            "sudo", "install them as root once, or give the user passwordless "
                            "sudo (only installing needs it; the daemons run as the user)")
    argv = install_commands(c.facts, pkgs)[0]
    r = c.remote.run("packages", argv, timeout=c.opts.install_timeout, check=False)
    if r.returncode != 0 and pm == "apt-get":
        c.remote.run("packages", argv[:argv.index("env")] + ["apt-get", "update", "-q"],
                     timeout=c.opts.install_timeout, check=False)
        r = c.remote.run("packages", argv, timeout=c.opts.install_timeout, check=False)
    if r.returncode != 0:
        raise c.remote.fail("packages", f"installing {' '.join(pkgs)} failed (exit status "
                            f"{r.returncode})", fix_pm, cmd=argv, stderr=r.stderr or r.stdout)
    c.probe("packages")
    still = missing_programs(c.facts, c.is_head, c.compute)
    if still:
        raise c.remote.fail("packages", f"{', '.join(still)} still missing after installing "
                            f"{' '.join(pkgs)}", fix_pm)
    return f"installed {' '.join(pkgs)} ({c.facts.get('slurm') or 'slurm'})"


def _folders_check(c: Ctx) -> str | None:
    r = c.remote.lib("folders", "pb_dirs", *c.lay.folders)
    return f"folders already there ({c.lay.root})" if r.stdout.strip() == "there" else None


def _folders_apply(c: Ctx) -> str:
    c.remote.lib("folders", "pb_mkdirs", *c.lay.folders,
                 fix=f"make {c.lay.root} and {c.lay.run} creatable by user "
                     f"{c.facts.get('user')}, or set cluster_dir to a folder the user owns")
    return f"made {c.lay.root} and {c.lay.run}"


def _put(c: Ctx, step: str, path: str, data: bytes, mode: str) -> None:
    c.remote.lib(step, "pb_put", path, mode, input=base64.b64encode(data).decode() + "\n")


def _key_check(c: Ctx) -> str | None:
    r = c.remote.lib("munge key", "pb_sha", c.lay.key)
    return "munge key already in place" if r.stdout.strip() == c.key_sha else None


def _key_apply(c: Ctx) -> str:
    old = c.remote.lib("munge key", "pb_sha", c.lay.key).stdout.strip()
    _put(c, "munge key", c.lay.key, c.key, "400")
    return "wrote munge key (" + ("new" if old == "none" else "changed") + ")"


def _conf_check(c: Ctx) -> str | None:
    r = c.remote.lib("slurm.conf", "pb_sha", c.lay.conf, c.lay.gres_conf)
    have = r.stdout.split()
    want = [sha(c.conf_text), sha(c.gres_text) if c.gres_text else "none"]
    return "slurm.conf already up to date" if have == want else None


def _conf_apply(c: Ctx) -> str:
    have = c.remote.lib("slurm.conf", "pb_sha", c.lay.conf, c.lay.gres_conf).stdout.split()
    _put(c, "slurm.conf", c.lay.conf, c.conf_text.encode(), "644")
    if c.gres_text:
        _put(c, "slurm.conf", c.lay.gres_conf, c.gres_text.encode(), "644")
    elif have[1:] != ["none"]:
        c.remote.lib("slurm.conf", "pb_rm", c.lay.gres_conf)
    return "wrote slurm.conf (" + ("new" if have[:1] == ["none"] else "changed") + ")"


def _workdir_check(c: Ctx) -> str | None:
    if c.is_head:
        r = c.remote.lib("work folder", "pb_dirs", c.workdir)
        return f"work folder {c.workdir} already there" if r.stdout.strip() == "there" else None
    got = c.remote.lib("work folder", "pb_cat", _token_file(c)).stdout.strip()
    if got == c.token:
        return f"ok (work folder {c.workdir} shared with the head)"
    what = f"the work folder {c.workdir} is not shared with the head (a file the head wrote " \
        "there is not seen here)"
    if c.opts.shared_workdir:
        raise c.remote.fail("work folder", what, "jobs read and write the work folder on the "
                            "node: mount it from the head (NFS) or set workdir to a folder on a "
                            "filesystem all machines share; `shared_workdir = false` turns "
                            "this check into a warning")
    return "warning: " + what


def _workdir_apply(c: Ctx) -> str:
    c.remote.lib("work folder", "pb_mkdirs", c.workdir,
                 fix="set workdir to a folder the user may create")
    return f"made work folder {c.workdir}"


def _token_file(c: Ctx) -> str:
    return f"{c.workdir}/.pb-cluster-{c.lay.cluster}.check"


def munged_status(c: Ctx) -> tuple[str, str]:
    """('running'|'stopped', the key hash it was started with)."""
    r = c.remote.lib("munged", "pb_status", c.lay.pidfile("munged"), "munged",
                     c.lay.record("munged"))
    bits = r.stdout.split()
    return (bits[0], bits[2]) if bits and bits[0] == "running" else ("stopped", "")


def _munge_roundtrip(c: Ctx) -> bool:
    r = c.remote.lib("munged", "pb_munge_ok", c.bin("munge"), c.bin("unmunge"), c.lay.socket,
                     check=False, timeout=30)
    return r.returncode == 0


def _munged_check(c: Ctx) -> str | None:
    state, keysha = munged_status(c)
    if state == "running" and keysha == c.key_sha and _munge_roundtrip(c):
        return "munged already running (it answers the cluster's socket with its key)"
    return None


def _munged_apply(c: Ctx) -> str:
    state, keysha = munged_status(c)
    if state == "running":
        c.remote.lib("munged", "pb_stop", c.lay.pidfile("munged"), "munged",
                     c.lay.record("munged"))
    c.remote.lib("munged", "pb_rm", c.lay.socket, c.lay.socket + ".lock")
    log = c.lay.log("munged", c.name)
    c.remote.lib("munged", "pb_start", c.lay.log("start", c.name), c.lay.pidfile("munged"),
                 "munged", c.lay.record("munged"), c.key_sha, log, c.bin("munged"), "--force",
                 f"--socket={c.lay.socket}", f"--key-file={c.lay.key}",
                 f"--pid-file={c.lay.pidfile('munged')}", f"--log-file={log}",
                 f"--seed-file={c.lay.run}/munged.seed", timeout=60,
                 fix=f"see {log} on the machine")
    if not _munge_roundtrip(c):
        raise c.remote.fail("munged", f"munged started but a credential round trip through "
                            f"{c.lay.socket} fails", f"see {log} on the machine")
    if state == "running":
        return "restarted munged (" + ("key changed" if keysha != c.key_sha else
                                       "it did not answer") + ")"
    return "started munged"


def _setup_hash(c: Ctx) -> str:
    return sha(json.dumps(c.opts.setup))


def _setup_check(c: Ctx) -> str | None:
    got = c.remote.lib("setup", "pb_cat", c.lay.setup_record(c.name)).stdout.strip()
    n = len(c.opts.setup)
    return f"setup already done ({n} command{'s' if n != 1 else ''})" \
        if got == _setup_hash(c) else None


def _setup_apply(c: Ctx) -> str:
    c.remote.lib("setup", "pb_rm", c.lay.setup_record(c.name))
    for i, argv in enumerate(c.opts.setup):
        c.remote.run("setup", argv, timeout=c.opts.setup_timeout,
                     fix=f"fix setup[{i}] of the template (or the machine), then run the same "
                         "`pb cluster up` again: the steps done are skipped")
    c.remote.lib("setup", "pb_write", c.lay.setup_record(c.name), _setup_hash(c))
    n = len(c.opts.setup)
    return f"ran {n} setup command{'s' if n != 1 else ''}"


PROBE_STEPS = [
    Step("reachable", "ssh to the machine (BatchMode, ConnectTimeout) and read its facts",
         _reachable),
    Step("system", "detect the OS, its package manager (apt-get, dnf/yum), CPUs, memory",
         _system),
    Step("python3", "python3 is there (pushbutton's worker runs with it)", _python3,
         _python3_later),
    Step("privileges", "root or passwordless sudo (needed only to install packages)",
         _privileges),
    Step("packages", "install munge and SLURM (slurm-wlm; slurm, slurm-slurmd, slurm-slurmctld "
         "on RHEL-likes) only when missing", _packages_check, _packages_apply),
]
CONFIG_STEPS = [
    Step("folders", "make the per-cluster folder and the machine-local run folder",
         _folders_check, _folders_apply),
    Step("munge key", "write the cluster's munge key when its hash differs", _key_check,
         _key_apply),
    Step("slurm.conf", "write slurm.conf (and gres.conf) when the hash differs", _conf_check,
         _conf_apply),
    Step("work folder", "the head makes the work folder; each node sees it (shared filesystem)",
         _workdir_check, _workdir_apply),
    Step("munged", "munged answers the cluster's socket with the cluster's key (else start it)",
         _munged_check, _munged_apply),
    Step("setup", "run the template's setup commands (again only when the list changes)",
         _setup_check, _setup_apply),
]
