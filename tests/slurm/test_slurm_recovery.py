"""Submission survives the driver's death between sbatch accepting an array and the job id being
recorded (no second submission, the orphan is adopted and can be cancelled), and runs on SLURM
never stay 'running' with nothing left to do or nobody harvesting."""
import collections
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import pb, ssh_target

pytestmark = [pytest.mark.slurm]


def spec(proj: Path, name: str, n: int, s: float = 0.0, bundle_size: int = 3) -> Path:
    p = proj / f"{name}.toml"
    p.write_text(f'name = "{name}"\nfunction = "slurm_tasks:counted"\n[space]\n'
                 f'grid = {{ x = {{ range = [0, {n}] }}, log = ["{proj / "executions.log"}"], '
                 f's = [{s}] }}\n[run]\nbundle_size = {bundle_size}\n')
    return p


def die_after_sbatch(proj: Path) -> dict:
    marker = proj / "die-after-sbatch"
    marker.write_text("")
    return {"PB_TEST_DIE_AFTER_SBATCH": str(marker)}


def db(proj: Path):
    return sqlite3.connect(proj / ".pushbutton" / "state.sqlite")


def job_names(proj: Path) -> list[str]:
    return [n for (n,) in db(proj).execute("SELECT DISTINCT job FROM bundles WHERE job IS NOT "
                                           "NULL")]


def queued(names: list[str]) -> list[str]:
    """Jobs by these names, in any state SLURM still reports: 'jobid state' lines."""
    r = subprocess.run(["squeue", "-h", "-t", "all", "--name=" + ",".join(names), "-o",
                        "%F %T"], capture_output=True, text=True, timeout=20, check=True)
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


def executions(proj: Path) -> collections.Counter:
    p = proj / "executions.log"
    return collections.Counter(p.read_text().split()) if p.exists() else collections.Counter()


def parquet_rows(proj: Path, name: str) -> list[str]:
    import pyarrow.parquet as pq
    ids = []
    for f in sorted((proj / ".pushbutton" / "results" / name).glob("*.parquet")):
        t = pq.read_table(f)
        ids += t.column("pb_task_id").to_pylist() if "pb_task_id" in t.column_names else \
            [None] * t.num_rows
    return ids


def assert_ran_once(proj: Path, name: str, n: int):
    assert executions(proj) == collections.Counter(str(x) for x in range(n)), executions(proj)
    ids = parquet_rows(proj, name)
    assert len(ids) == n and len(set(ids)) == n, ids


def test_driver_killed_after_sbatch_accepted_runs_each_task_once(slurm, project):
    r = pb("run", spec(project, "orphan", 12), "--on", "local-slurm", check=False,
           env=die_after_sbatch(project))
    assert r.returncode == 99, (r.stdout, r.stderr)  # died with SLURM's answer unrecorded
    names = job_names(project)
    assert len(names) == 1 and queued(names)  # SLURM has the array the driver never recorded
    assert db(project).execute("SELECT count(*) FROM bundles WHERE handle IS NULL").fetchone()[0]
    # the background harvester `pb run` started takes over; `pb harvest --wait` waits for it
    h = pb("harvest", "orphan", "--wait", "--timeout", "120", timeout=200)
    assert "orphan: finished; 12 done" in h.stdout, h.stdout
    assert_ran_once(project, "orphan", 12)
    assert len({ln.split()[0] for ln in queued(names)}) == 1  # one job, nothing resubmitted
    assert not [ln for ln in queued(names) if ln.split()[1] in ("PENDING", "RUNNING")]
    assert db(project).execute("SELECT count(*) FROM bundles WHERE cause='never submitted'"
                               ).fetchone()[0] == 0
    assert db(project).execute("SELECT status FROM runs").fetchall() == [("finished",)]
    # nothing pending: the run ends at once instead of staying 'running'
    r = pb("run", project / "orphan.toml", "--on", "local-slurm")
    assert "nothing to submit" in r.stdout
    assert db(project).execute("SELECT status, ended IS NOT NULL FROM runs ORDER BY id"
                               ).fetchall() == [("finished", 1), ("finished", 1)]
    hist = pb("history", "orphan").stdout.splitlines()[1:]  # (under its header)
    assert len(hist) == 2 and all("finished" in ln for ln in hist), hist
    assert "[finished]" in pb("status", "orphan").stdout


def test_orphan_of_a_killed_driver_can_be_cancelled(slurm, project):
    (project / "pushbutton-targets.toml").write_text(
        "[targets.local-slurm]\nauto_harvest = false\n")
    r = pb("run", spec(project, "stray", 6, s=60, bundle_size=2), "--on", "local-slurm",
           check=False, env=die_after_sbatch(project))
    assert r.returncode == 99, (r.stdout, r.stderr)
    names = job_names(project)
    assert [ln for ln in queued(names) if ln.split()[1] in ("PENDING", "RUNNING")]
    c = pb("cancel", "stray")
    assert "stray: 6 tasks cancelled, 3 bundles cancelled on SLURM" in c.stdout, c.stdout
    deadline = time.time() + 30
    while time.time() < deadline:
        live = [ln for ln in queued(names) if ln.split()[1] in ("PENDING", "RUNNING",
                                                                  "COMPLETING")]
        if not live:
            break
        time.sleep(0.2)
    assert not live, live
    assert db(project).execute("SELECT status FROM runs").fetchall() == [("cancelled",)]


def test_ssh_driver_killed_after_sbatch_accepted_runs_each_task_once(ssh_host, project):
    ssh_target(project, auto_harvest="false")
    p = spec(project, "sshorphan", 6, bundle_size=2)
    r = pb("run", p, "--on", "tc", check=False, env=die_after_sbatch(project))
    assert r.returncode == 99, (r.stdout, r.stderr)
    names = job_names(project)
    assert len(names) == 1 and queued(names)
    h = pb("harvest", "sshorphan", "--wait", "--timeout", "120", timeout=200)
    assert "sshorphan: finished; 6 done" in h.stdout, h.stdout
    assert_ran_once(project, "sshorphan", 6)
    assert len({ln.split()[0] for ln in queued(names)}) == 1


def test_dead_harvester_is_reported_by_status_and_restarted_by_harvest(slurm, project):
    r = pb("run", spec(project, "reharvest", 4, s=2, bundle_size=1), "--on", "local-slurm")
    eid = db(project).execute("SELECT id FROM experiments").fetchone()[0]
    meta = json.loads((project / ".pushbutton" / "slurm-runs" / f"{eid}.json").read_text())
    pid = meta["harvester"]
    assert f"(pid {pid})" in r.stdout
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    st = pb("status", "reharvest").stdout
    assert "harvester not running" in st and "pb harvest reharvest" in st, st
    h = pb("harvest", "reharvest")
    assert "background harvester restarted" in h.stdout, h.stdout
    deadline = time.time() + 90  # the restarted harvester finishes the run on its own
    while time.time() < deadline:
        if db(project).execute("SELECT status FROM runs").fetchone()[0] == "finished":
            break
        time.sleep(0.3)
    assert db(project).execute("SELECT status FROM runs").fetchone()[0] == "finished"
    assert_ran_once(project, "reharvest", 4)
    assert "harvester not running" not in pb("status", "reharvest").stdout
