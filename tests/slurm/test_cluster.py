"""`pb cluster`: build a one-host SLURM for the user, run a sweep on it, resize, stop, delete.
Needs the SLURM and munge programs (skips without them, fails under CI=true). Runs beside the
suite's test cluster on other ports, with its own SLURM_CONF and munge socket."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import _missing, pb

PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "scontrol", "sbatch")


def _have(prog: str) -> bool:
    return bool(shutil.which(prog)) or os.access(f"/usr/sbin/{prog}", os.X_OK)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie is dead too (its parent has not reaped it yet)
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def cluster_env(project, tmp_path, monkeypatch):
    missing = [p for p in PROGRAMS if not _have(p)]
    if missing:
        _missing(f"SLURM/munge programs ({', '.join(missing)}; apt-get install slurm-wlm munge)")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    from pushbutton.clusters import cluster as C
    started: list[C.Cluster] = []

    def track(name):
        started.append(C.Cluster(name))
        return C.Cluster(name)

    yield track
    for cl in started:  # stop the daemons even when the test failed
        for d in ("slurmd", "slurmctld", "munged"):
            C._kill(cl, d)
        if cl.run_dir != cl.dir:
            shutil.rmtree(cl.run_dir, ignore_errors=True)


def test_cluster_lifecycle(cluster_env, project, tmp_path):
    suite_conf = os.environ.get("SLURM_CONF")
    cl = cluster_env("c1")
    r = pb("cluster", "start", "c1", "--cpus", "1", timeout=120)
    assert "is up" in r.stdout
    assert cl.conf.exists() and str(tmp_path / "state") in str(cl.conf)
    pids = cl.running()
    assert all(pids.values()), pids

    # idempotent
    r = pb("cluster", "start", "c1", timeout=60)
    assert "already running" in r.stdout
    assert cl.running() == pids

    rows = json.loads(pb("cluster", "list", "--json").stdout)
    assert [(x["name"], x["template"], x["up"], x["cpus"]) for x in rows] == \
        [("c1", "local", True, 1)]
    assert "c1" in pb("cluster", "list").stdout and " up " in pb("cluster", "list").stdout

    targets = (tmp_path / "config" / "pushbutton" / "targets.toml").read_text()
    assert "[targets.c1]" in targets and str(cl.conf) in targets
    assert pb("cluster", "ssh", "c1").stdout.strip() == f"export SLURM_CONF={cl.conf}"

    # a real sweep on it, while the caller's SLURM_CONF (if any) names another cluster
    (project / "experiment.toml").write_text("""
name = "onc1"
function = "slurm_tasks:square"
[space]
grid = { x = { range = [0, 8] } }
""")
    r = pb("run", "experiment.toml", "--on", "c1", "--wait", timeout=120)
    assert "onc1: 8 done, 0 failed, 0 not run" in r.stdout, r.stdout
    csv = pb("results", "--format", "csv").stdout.splitlines()
    assert len(csv) == 9
    env = dict(os.environ, SLURM_CONF=str(cl.conf))
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%P"], capture_output=True,
                          text=True, timeout=20, env=env).stdout.split()
    assert jobs and set(jobs) == {"main"}  # the jobs ran on c1

    # resize
    r = pb("cluster", "resize", "c1", "--cpus", "2", timeout=120)
    assert "2 CPUs" in r.stdout
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %T"], capture_output=True, text=True,
                         timeout=20, env=env).stdout.split()
    assert out[0] == "2" and out[1].startswith("idle"), out
    pids = {d: p for d, p in cl.running().items()}
    assert all(pids.values())

    # stop and delete
    r = pb("cluster", "stop", "c1", "--delete", timeout=60)
    assert "stopped" in r.stdout
    assert all(_dead(p) for p in pids.values()), pids
    assert not cl.dir.exists()
    assert "[targets.c1]" not in (tmp_path / "config" / "pushbutton" / "targets.toml").read_text()
    assert "no clusters" in pb("cluster", "list").stdout

    # the suite's cluster was not disturbed
    if suite_conf:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                           timeout=20, env=dict(os.environ, SLURM_CONF=suite_conf))
        assert r.returncode == 0 and r.stdout.strip()


def test_cluster_errors(cluster_env, tmp_path):
    r = pb("cluster", "start", "x1", "--template", "aws", check=False)
    assert r.returncode != 0 and "not built yet" in r.stderr
    r = pb("cluster", "stop", "nope", check=False)
    assert r.returncode != 0 and "no cluster named 'nope'" in r.stderr
    r = pb("cluster", "start", "local", check=False)
    assert r.returncode != 0 and "built-in" in r.stderr


def test_missing_programs_name_the_package(tmp_path, monkeypatch):
    from pushbutton.clusters import cluster as C
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(C.os, "access", lambda *a: False)
    with pytest.raises(C.ClusterError) as e:
        C.require_tools()
    assert "munge" in str(e.value) and "apt-get install slurm-wlm munge" in str(e.value)
