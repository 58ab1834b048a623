"""Fixtures for clusters pushbutton builds on this host: a project folder, private config and
state folders, and netns clusters that are torn down (processes, namespaces, links, files) even
when a test fails. Names of everything the tests make start with "pbc". Without root or the
programs the netns tests skip, except under CI=true, where they fail."""
import json
import os
import shutil
import subprocess
import sys
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
