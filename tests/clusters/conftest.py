"""Fixtures for clusters pushbutton builds on this host: a project folder, private config and
state folders, and netns clusters that are torn down (processes, namespaces, links, files) even
when a test fails. Names of everything the tests make start with "pbc". Without root or the
programs the netns tests skip, except under CI=true, where they fail.

`sshd_machines(tmp, prefix, n)`: n machines for the ssh provider's tests, each a network
namespace PREFIX-nI with its own address, hostname and sshd (the ssh provider's tests use
prefix "pbs", the CLI wiring tests "pbw")."""
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

CI = os.environ.get("CI") == "true"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch", "squeue", "ip",
            "nsenter", "unshare")

TASKS = '''
import time


def slow(x):
    time.sleep(1.0)
    return {"y": x * x}


def quick(x):
    time.sleep(0.3)
    return {"y": x * x}
'''


def _missing(what):
    if CI:
        pytest.fail(f"{what} is not available under CI=true")
    pytest.skip(f"{what} is not available")


def _have(prog: str) -> bool:
    return bool(shutil.which(prog)) or any(os.access(f"{d}/{prog}", os.X_OK)
                                           for d in ("/usr/sbin", "/sbin"))


def pb(*args, check=True, timeout=240, env=None):
    """The real CLI in a subprocess, as a user would run it."""
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def leftovers(prefix: str, folder: Path | None = None) -> dict:
    """What exists of clusters named prefix*: namespaces, links, processes (their command line
    names the cluster's folder), files."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out = {"netns": [ln.split()[0] for ln in ns.splitlines() if ln.startswith(prefix)],
           "links": [ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines()
                     if ln.split(":")[1].strip().startswith(prefix)],
           "procs": []}
    if folder is not None:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (p / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if str(folder) in cmd and state != "Z":
                out["procs"].append(f"{p.name}: {cmd[:120]}")
    return out


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "ctasks.py").write_text(TASKS)
    monkeypatch.chdir(proj)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PUSHBUTTON_TARGETS", raising=False)
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return proj


@pytest.fixture
def netns_clusters(project):
    """Checks root and the programs; yields `track(name)` -> the Cluster; afterwards tears
    every tracked cluster down by hand as well (a failed test leaves nothing behind)."""
    if os.geteuid() != 0:
        _missing("root (network namespaces)")
    missing = [p for p in PROGRAMS if not _have(p)]
    if missing:
        _missing(f"programs {', '.join(missing)} (apt-get install slurm-wlm munge iproute2 "
                 "util-linux)")
    from pushbutton.clusters.cluster import Cluster
    names: list[str] = []

    def track(name: str):
        assert name.startswith(("pbc", "pbe"))  # pbe: the elastic tests
        left = leftovers(name)
        assert not left["netns"] and not left["links"], f"left from before: {left}"
        names.append(name)
        return Cluster(name)

    yield track
    from pushbutton.clusters import controller, hostnet, procs
    for name in names:
        cl = Cluster(name)
        pb("cluster", "down", name, "--delete", check=False, timeout=120)
        for pf in cl.dir.glob("slurmd-*.pid") if cl.dir.exists() else []:
            procs.stop_daemon(pf, "slurmd")
        if cl.dir.exists():
            controller.stop(cl)
        for ns in leftovers(name)["netns"]:
            hostnet.del_netns(ns)
        for link in leftovers(name)["links"]:
            hostnet.del_link(link)
        shutil.rmtree(cl.run_dir, ignore_errors=True)


def status(name: str) -> dict:
    return json.loads(pb("cluster", "status", name, "--json").stdout)


def slurm(cl, *argv, check=True):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SLURM_CONF=str(cl.conf)))
    if check:
        assert r.returncode == 0, f"{argv}: {r.stderr}"
    return r


# -- machines with their own sshd: network namespaces -------------------------------------
def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _free_subnet(first: int) -> str:
    """A 10.247.X.0/24 (X from `first`) no route of this host uses yet."""
    routes = ip("-4", "route").stdout
    for x in range(first, first + 30):
        if f"10.247.{x}." not in routes:
            return f"10.247.{x}"
    raise RuntimeError("no free 10.247.X.0/24")


# A command's bash over these sshds does not source ~/.bashrc (bash skips it below SHLVL 2):
# on a developer machine it may run version-manager hooks costing ~0.1 s on each of the
# hundreds of ssh commands a cluster test makes. The test's PATH instead, so the same programs
# answer; login shells still read the user's profile (scripts/setup.d/30-sshd.sh does the same).
SESSION_ENV = (f'SetEnv SHLVL=1 "PATH={os.environ.get("PATH", "")}:/usr/local/sbin:'
               '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n')


def _kill_netns(names: list[str], sshds: list) -> None:
    for sig, wait in ((15, True), (9, False)):
        for ns in names:
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), sig)
                except (ProcessLookupError, ValueError):
                    pass
        if wait:
            for proc in sshds:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            time.sleep(0.3)


@contextlib.contextmanager
def sshd_machines(tmp: Path, prefix: str, n: int = 3):
    """Machines PREFIX-n1..n: a namespace each (own address on bridge PREFIX-br, own hostname,
    own sshd on port 22 there, root's login by a key made here), reached from here through
    the ssh config tmp/ssh_config. Yields {"hosts", "ssh_config", "tmp", "addrs", "key"};
    afterwards every process in the namespaces is stopped and namespaces and links removed."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter") or \
            not os.access("/usr/sbin/sshd", os.X_OK):
        _missing("root, ip, nsenter and sshd (for network-namespace machines)")
    names = [f"{prefix}-n{i}" for i in range(1, n + 1)]
    bridge = f"{prefix}-br"
    for k in ("host", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp / f"{k}_ed25519")], check=True, timeout=30)
    shutil.copy(tmp / "id_ed25519.pub", tmp / "authorized_keys")
    hostkey = (tmp / "host_ed25519.pub").read_text().split()[:2]
    for ns in names:  # leftovers of an earlier run that was killed
        ip("netns", "del", ns, check=False)
    ip("link", "del", bridge, check=False)
    net = _free_subnet(91 if prefix == "pbs" else 131)
    sshds: list[subprocess.Popen] = []
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{net}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        cfg_lines, known = [], []
        for i, ns in enumerate(names, start=2):
            addr, veth = f"{net}.{i}", f"{prefix}-v{i - 1}"
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", bridge, "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            conf = tmp / f"sshd-{ns}.conf"
            conf.write_text(f"ListenAddress {addr}\nPort 22\nHostKey {tmp}/host_ed25519\n"
                            f"PidFile {tmp}/sshd-{ns}.pid\nAuthorizedKeysFile {tmp}/"
                            "authorized_keys\nPermitRootLogin prohibit-password\n"
                            "PubkeyAuthentication yes\nPasswordAuthentication no\n"
                            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                            "MaxSessions 64\nMaxStartups 64:30:128\n"
                            "Subsystem sftp internal-sftp\n" + SESSION_ENV)
            log = open(tmp / f"sshd-{ns}.log", "w")
            sshds.append(subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--uts", "sh", "-c",
                 f"hostname {ns}; exec /usr/sbin/sshd -D -e -f {shlex.quote(str(conf))}"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL))
            cfg_lines += [f"Host {ns}", f"  HostName {addr}", "  User root",
                          f"  IdentityFile {tmp}/id_ed25519", "  IdentitiesOnly yes",
                          f"  UserKnownHostsFile {tmp}/known_hosts",
                          "  StrictHostKeyChecking yes", "  BatchMode yes", ""]
            known.append(f"{addr} {' '.join(hostkey)}")
        (tmp / "ssh_config").write_text("\n".join(cfg_lines))
        (tmp / "known_hosts").write_text("\n".join(known) + "\n")
        for ns in names:
            deadline = time.time() + 20
            while True:
                r = subprocess.run(["ssh", "-F", str(tmp / "ssh_config"), "-o",
                                    "ConnectTimeout=3", ns, "hostname"], capture_output=True,
                                   text=True, timeout=30)
                if r.returncode == 0 and r.stdout.strip() == ns:
                    break
                if time.time() > deadline:
                    raise RuntimeError(f"sshd in {ns} does not answer: {r.stderr.strip()} "
                                       f"{(tmp / f'sshd-{ns}.log').read_text()[-300:]}")
                time.sleep(0.3)
        yield {"hosts": list(names), "ssh_config": str(tmp / "ssh_config"), "tmp": tmp,
               "addrs": [f"{net}.{i}" for i in range(2, 2 + n)],
               "key": str(tmp / "id_ed25519")}
    finally:
        for ns in names:
            subprocess.run(["ssh", "-F", str(tmp / "ssh_config"), "-O", "exit", ns],
                           capture_output=True, timeout=10)
        _kill_netns(names, sshds)
        for ns in names:
            ip("netns", "del", ns, check=False)
        ip("link", "del", bridge, check=False)
