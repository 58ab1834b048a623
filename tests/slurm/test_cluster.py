"""`pb cluster`: build a one-host SLURM for the user, run a sweep on it, resize, stop, delete.
Needs the SLURM and munge programs (skips without them, fails under CI=true). Runs beside the
suite's test cluster on other ports, with its own SLURM_CONF and munge socket."""
import json
import os
import shutil
import subprocess
import time
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
    from pushbutton.clusters import controller, procs
    started: list[C.Cluster] = []

    def track(name):
        started.append(C.Cluster(name))
        return C.Cluster(name)

    yield track
    for cl in started:  # stop the daemons even when the test failed
        for pf in cl.dir.glob("slurmd-*.pid"):
            procs.stop_daemon(pf, "slurmd")
        controller.stop(cl)
        if cl.run_dir != cl.dir:
            shutil.rmtree(cl.run_dir, ignore_errors=True)


def _pids(cl) -> dict:
    from pushbutton.clusters import controller, procs
    host = controller.hostname()
    return {"munged": controller.munged_pid(cl), "slurmctld": controller.slurmctld_pid(cl),
            "slurmd": procs.pid_of(cl.pidfile("slurmd", host), "slurmd")}


def test_cluster_lifecycle(cluster_env, project, tmp_path):
    suite_conf = os.environ.get("SLURM_CONF")
    cl = cluster_env("c1")
    r = pb("cluster", "up", "local", "c1", "--cpus", "1", timeout=120)
    assert "is up" in r.stdout
    assert cl.conf.exists() and str(tmp_path / "state") in str(cl.conf)
    pids = _pids(cl)
    assert all(pids.values()), pids

    # idempotent, also through the old name of the command
    r = pb("cluster", "start", "c1", timeout=60)
    assert "already up" in r.stdout and "nothing to do" in r.stdout
    assert _pids(cl) == pids

    rows = json.loads(pb("cluster", "list", "--json").stdout)
    assert [(x["name"], x["template"], x["up"], x["cpus"]) for x in rows] == \
        [("c1", "local", True, 1)]
    assert "c1" in pb("cluster", "list").stdout and " up " in pb("cluster", "list").stdout

    targets = (tmp_path / "config" / "pushbutton" / "targets.toml").read_text()
    assert "[targets.c1]" in targets and str(cl.conf) in targets
    assert pb("cluster", "ssh", "c1", "--print").stdout.strip() == f"export SLURM_CONF={cl.conf}"
    r = pb("cluster", "ssh", "c1", "-", "--", "sh", "-c", "echo $SLURM_CONF")
    assert r.stdout.strip() == str(cl.conf)

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

    # resize: the one node leaves (0 nodes is legal: jobs queue) and comes back
    ctld = pids["slurmctld"]
    r = pb("cluster", "resize", "c1", "=0", timeout=120)
    assert "now has 0 node(s)" in r.stdout
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                         timeout=20, env=env)
    assert out.returncode == 0 and out.stdout.strip() == ""
    job = subprocess.run(["sbatch", "--parsable", "-o", str(tmp_path / "j.out"), "--wrap",
                          "hostname"], capture_output=True, text=True, timeout=20, env=env)
    assert job.returncode == 0, job.stderr
    r = pb("cluster", "resize", "c1", "+1", timeout=120)
    assert "now has 1 node(s)" in r.stdout
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %T"], capture_output=True, text=True,
                         timeout=20, env=env).stdout.split()
    assert out[0] == "1" and out[1].startswith(("idle", "mixed", "alloc", "complet")), out
    assert _pids(cl)["slurmctld"] == ctld  # no restart
    deadline = time.time() + 30
    while time.time() < deadline and not (tmp_path / "j.out").exists():
        time.sleep(0.2)
    assert (tmp_path / "j.out").exists()  # the queued job ran once the node was back
    pids = _pids(cl)
    assert all(pids.values())

    # down and delete
    r = pb("cluster", "stop", "c1", "--delete", timeout=60)
    assert "is down" in r.stdout
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
    r = pb("cluster", "up", "nosuch", "x1", check=False)
    assert r.returncode != 0 and "no cluster template named 'nosuch'" in r.stderr
    r = pb("cluster", "down", "nope", check=False)
    assert r.returncode != 0 and "no cluster named 'nope'" in r.stderr
    r = pb("cluster", "start", "local", check=False)
    assert r.returncode != 0 and "built-in" in r.stderr
    r = pb("cluster", "up", "local", "c2", "--nodes", "2", check=False)
    assert r.returncode != 0 and "max (1) is below count (2)" in r.stderr, r.stderr


def test_missing_programs_name_the_package(tmp_path, monkeypatch):
    from pushbutton.clusters import procs
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(procs.os, "access", lambda *a: False)
    with pytest.raises(procs.ClusterError) as e:
        procs.require()
    assert "munge" in str(e.value) and "apt-get install slurm-wlm munge" in str(e.value)
