"""Real sweeps on the one-host SLURM cluster: through sbatch here (local-slurm) and over SSH, with
the faults a cluster produces. The tests run in file order, but for one: the time-limit sweep
is started as soon as the tests that need both CPUs of the cluster are done (conftest.py moves
it right after test_balance.py's; alone, this file starts it first) and checked near the end,
so its one-minute SLURM time limit overlaps the other tests; the node-down test comes last."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import node_idle, pb, squeue, ssh_target

pytestmark = [pytest.mark.slurm]
_STATE = {}


def experiment(proj, name, fn, retries=0, bundle_size=0, **space):
    import pushbutton as pbm
    return pbm.Experiment(name, f"slurm_tasks:{fn}", space=pbm.grid(**space), root=proj,
                          project=proj, retries=retries, bundle_size=bundle_size)


def harvest_all(exp, timeout=150):
    from pushbutton.execution.slurm.sync import harvest
    return harvest(exp.store, exp.name, wait=True, timeout=timeout)[exp.name]


def assert_complete(exp, n):
    """Every task done exactly once: n rows, unique ids, nothing duplicated in Parquet."""
    df = exp.results()
    assert len(df) == n and df.pb_task_id.is_unique
    assert (df.pb_status == "done").all(), df[["pb_status", "pb_error_kind", "pb_error"]]
    done_rows = exp.results(all_tasks=False)
    assert len(done_rows) == n and done_rows.pb_task_id.is_unique
    return df


def wait_started(store_dir: Path, n_bundles: int, timeout=30.0):
    """Until n bundles have a task running (a start line in their starts.jsonl)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        started = 0
        for p in (store_dir / "bundles").glob("*/starts.jsonl"):
            if b'"ev":"start"' in p.read_bytes():
                started += 1
        if started >= n_bundles:
            return
        time.sleep(0.1)
    pytest.fail(f"{n_bundles} bundles did not start within {timeout}s")


def causes(exp) -> list[str]:
    return [c for (c,) in exp.store.db.execute("SELECT cause FROM bundles WHERE cause IS NOT "
                                               "NULL")]


# -- faults on the cluster ------------------------------------------------------------------
def test_start_time_limit_sweep(slurm, tmp_path_factory):
    """Started now, checked at the end of the file (SLURM enforces whole minutes)."""
    proj = tmp_path_factory.mktemp("timelimit")
    (proj / "slurm_tasks.py").write_text((Path(__file__).parent / "slurm_tasks.py").read_text())
    exp = experiment(proj, "timelimit", "nap", x=[0], s=600)
    out = exp.run(on="local-slurm", sbatch="--time=0:05")
    assert out["status"] == "submitted"
    _STATE["timelimit"] = exp


def test_local_slurm_sweep(slurm, project):
    exp = experiment(project, "squares", "square", x=list(range(60)))
    t0 = time.time()
    out = exp.run(on="local-slurm")
    assert out["status"] == "submitted" and out["tasks"] == 60
    assert time.time() - t0 < 10  # fire and forget: returns once SLURM accepted
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True
                              ).stdout.split("/")[-1])
    assert 1 <= out["bundles"] <= cpus  # tiny tasks: one bundle per CPU, not per task
    s = harvest_all(exp)
    assert s["status"] == "finished"
    df = assert_complete(exp, 60)
    assert sorted(zip(df.x, df.y)) == [(x, x * x) for x in range(60)]
    assert exp.history()[-1]["status"] == "finished"


def test_node_is_the_slurm_node_name(slurm, project):
    """pb_node is SLURM's name for the node (the test cluster's differs from its host name, as
    on many clusters): in the results view, in the raw Parquet parts, for a failed task (from
    its task row), and counted per node in the report."""
    import socket

    import pyarrow.parquet as pq

    from pushbutton.store import partset
    node = os.environ.get("PB_TEST_SLURM_NODE") or os.uname().nodename.split(".")[0]
    host = socket.gethostname()
    assert node != host, ("the test cluster's node should have a name of its own "
                          "(scripts/setup.d/20-slurm.sh names it pb-HOST)")
    exp = experiment(project, "nodes", "fails_at", x=list(range(8)), bad=[5])
    out = exp.run(on="local-slurm")
    assert out["status"] == "submitted"
    assert harvest_all(exp)["status"] == "finished"
    df = exp.results()
    assert len(df) == 8 and sorted(df.pb_status) == ["done"] * 7 + ["failed"]
    assert set(df.pb_node) == {node} and set(df.pb_host) == {host}
    assert df.loc[df.x == 5, "pb_error"].str.contains("bad x on purpose").all()
    sql = exp.sql("SELECT DISTINCT pb_node FROM results")
    assert sql.pb_node.tolist() == [node]
    folder = exp.store.dir / "results" / "nodes"
    raw = [pq.read_table(folder / n).to_pydict() for n in partset.current(folder)]
    assert sum(len(t["pb_task_id"]) for t in raw) == 7  # the done tasks' rows
    assert {v for t in raw for v in t["pb_node"]} == {node}
    assert {v for t in raw for v in t["pb_host"]} == {host}
    r = pb("report", "nodes")
    html = (project / ".pushbutton" / "reports" / "nodes" / "report.html").read_text()
    m = re.search(r'<table class="sortable nodes">.*?<tbody>(.*?)</tbody>', html, re.S)
    cells = [re.sub(r"<[^>]+>", "", c).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1), re.S)]
    assert cells[0] == node and cells[1] == "8" and cells[4] == "1", (r.stdout, cells)


def test_cli_sbatch_options_pass_through(slurm, project):
    (project / "exp.toml").write_text(
        'name = "passthru"\nfunction = "slurm_tasks:square"\n[space]\n'
        'grid = { x = [1, 2, 3, 4, 5] }\n')
    gres = os.environ.get("PB_TEST_SLURM_GRES", "pbtoken")
    # the target's default options, then --sbatch's
    (project / "pushbutton-targets.toml").write_text(
        '[targets.local-slurm]\nsbatch = "--comment=pb-passthrough"\n')
    r = pb("run", "exp.toml", "--on", "local-slurm", "--sbatch", f"--gres={gres}:1")
    assert "submitted 5 tasks" in r.stdout
    job = re.search(r"SLURM jobs? (\d+)", r.stdout).group(1)
    lines = squeue(job, "%k|%b")
    assert lines and all("pb-passthrough" in ln and gres in ln for ln in lines), lines
    r = pb("harvest", "passthru", "--wait", "--timeout", "120")
    assert "passthru: finished; 5 done, 0 failed" in r.stdout
    r = pb("status", "passthru")
    assert "done 5" in r.stdout


def test_cli_bad_sbatch_option_is_a_clear_error(slurm, project):
    (project / "exp.toml").write_text(
        'name = "badopt"\nfunction = "slurm_tasks:square"\n[space]\n'
        'grid = { x = [1, 2, 3] }\n')
    r = pb("run", "exp.toml", "--on", "local-slurm", "--sbatch", "--gres=nosuchgres:1",
           check=False)
    assert r.returncode == 2
    assert "target 'local-slurm': sbatch refused the job" in r.stderr
    assert "fix:" in r.stderr
    r = pb("status", "badopt")
    assert "pending 3" in r.stdout  # nothing lost: the tasks wait for a corrected run


def test_sbatch_refusing_a_later_array_loses_and_duplicates_nothing(slurm, project,
                                                                     monkeypatch):
    """Arrays are capped by the site limit (here 2 elements); when slurmctld refuses the
    second array, the first stays out, the rest go back to pending, and the harvest resubmits."""
    from pushbutton.execution.slurm.backend import SlurmBackend
    from pushbutton.execution.remote import RemoteError
    (project / "pushbutton-targets.toml").write_text(
        "[targets.local-slurm]\nmax_array_size = 2\nauto_harvest = false\n")
    real, calls = SlurmBackend._sbatch, []

    def refuse_second(self, argv, name):
        calls.append(name)
        if len(calls) == 2:
            raise RemoteError("sbatch refused the job: Resource temporarily unavailable",
                              target="local-slurm")
        return real(self, argv, name)
    monkeypatch.setattr(SlurmBackend, "_sbatch", refuse_second)
    exp = experiment(project, "partial", "square", bundle_size=2, x=list(range(8)))
    with pytest.raises(RemoteError):
        exp.run(on="local-slurm")
    c = exp.store.counts(exp.store.experiment("partial"))  # as stored (status would sync)
    assert c["running"] == 4 and c["pending"] == 4  # 2 bundles out, 2 back to pending
    monkeypatch.setattr(SlurmBackend, "_sbatch", real)
    s = harvest_all(exp)
    assert s["status"] == "finished"
    assert_complete(exp, 8)
    assert exp.history()[-1]["status"] == "finished"


def test_queue_quota_throttles_submission(slurm, project):
    """At most max_jobs array elements are queued at once; the harvest submits the rest as
    earlier ones finish."""
    (project / "pushbutton-targets.toml").write_text(
        "[targets.local-slurm]\nmax_jobs = 2\nauto_harvest = false\npoll_interval = 0.3\n")
    exp = experiment(project, "quota", "square", bundle_size=1, x=list(range(6)))
    out = exp.run(on="local-slurm")
    assert out["bundles"] == 2 and out["tasks"] == 2
    c = exp.store.counts(exp.store.experiment("quota"))
    assert c["running"] == 2 and c["pending"] == 4
    assert harvest_all(exp)["status"] == "finished"
    assert_complete(exp, 6)
    n_jobs = exp.store.db.execute("SELECT count(DISTINCT substr(handle, 1, instr(handle, '_')))"
                                  " FROM bundles").fetchone()[0]
    assert n_jobs >= 3  # submitted in several rounds


def test_scancel_of_part_of_an_array(slurm, project):
    exp = experiment(project, "scancel", "nap", retries=1, bundle_size=2, x=list(range(12)),
                     s=[0.8])
    out = exp.run(on="local-slurm")
    assert out["bundles"] == 6
    job = out["jobs"][0]
    wait_started(exp.store.dir, 1)
    subprocess.run(["scancel", f"{job}_0", f"{job}_5"], check=True, timeout=20)
    s = harvest_all(exp)
    assert s["status"] == "finished"
    assert_complete(exp, 12)
    # the running element is reported as cancelled; the pending one simply left the queue
    assert len(causes(exp)) == 2 and all("scancel" in c for c in causes(exp)), causes(exp)
    assert any("CANCELLED" in c for c in causes(exp))


def test_worker_killed_mid_bundle(slurm, project):
    exp = experiment(project, "killed", "die_once", retries=1, bundle_size=5,
                     x=list(range(5)), victim=[2])
    out = exp.run(on="local-slurm")
    assert out["bundles"] == 1
    s = harvest_all(exp)
    assert s["status"] == "finished"
    df = assert_complete(exp, 5)
    assert df.set_index("x").pb_attempts.to_dict() == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    (kind, error), = exp.store.db.execute("SELECT kind, error FROM attempts").fetchall()
    assert kind == "signal" and "SIGKILL" in error


def test_pb_cancel_stops_the_jobs_and_the_harvester(slurm, project):
    (project / "exp.toml").write_text(
        'name = "stopme"\nfunction = "slurm_tasks:nap"\n[space]\n'
        'grid = { x = [1, 2, 3, 4], s = [60] }\n')
    r = pb("run", "exp.toml", "--on", "local-slurm")
    job = re.search(r"SLURM jobs? (\d+)", r.stdout).group(1)
    harvester = int(re.search(r"background \(pid (\d+)\)", r.stdout).group(1))
    wait_started(project / ".pushbutton", 1)
    pb("cancel", "stopme")
    deadline = time.time() + 30
    while time.time() < deadline:
        live = [ln for ln in squeue(job, "%T") if ln in ("RUNNING", "PENDING", "COMPLETING")]
        if not live:
            break
        time.sleep(0.2)
    assert not live, live
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):
        os.kill(harvester, 0)
        if open(f"/proc/{harvester}/stat").read().split()[2] == "Z":
            raise ProcessLookupError  # a zombie is a dead process not yet reaped
    assert "cancelled 4" in pb("status", "stopme").stdout


# -- over SSH ----------------------------------------------------------------------------
def test_ssh_fire_and_forget_with_python_from_setup_lines(ssh_host, project, tmp_path):
    pybin = tmp_path / "pybin"
    pybin.mkdir()
    (pybin / "pbpython").symlink_to(sys.executable)
    ssh_target(project, "nopy", python='"pbpython"')
    ssh_target(project, "tc", python='"pbpython"',
               setup=json.dumps([f"export PATH={pybin}:$PATH", "export PB_TEST_MARK=set-up"]))
    r = pb("targets", "check", "nopy", check=False)
    assert r.returncode == 1 and "no working 'pbpython'" in r.stdout and "fix:" in r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    r = pb("targets", "check", "tc")
    assert "target 'tc' is ready" in r.stdout
    (project / "exp.toml").write_text(
        'name = "remote"\nfunction = "slurm_tasks:where"\n[space]\n'
        'grid = { x = [1, 2, 3, 4, 5, 6, 7, 8] }\n')
    t0 = time.time()
    r = pb("run", "exp.toml", "--on", "tc")
    assert "submitted 8 tasks" in r.stdout and time.time() - t0 < 30
    remote = project.parent / "remote"
    snap = list(remote.glob("*/code/slurm_tasks.py"))
    assert snap, "the code snapshot was not shipped"
    assert not list(remote.glob("*/code/.pushbutton"))
    # no background harvester over SSH (auto_harvest is off there): `pb watch` only reports
    # that; `pb harvest --wait` brings the results in
    w = pb("watch", "remote", "--interval", "0.3", timeout=60)
    assert re.search(r"\d+ bundles? out on SLURM; `pb harvest remote`", w.stdout), w.stdout
    h = pb("harvest", "remote", "--wait", "--timeout", "120", timeout=200)
    assert "remote: finished; 8 done, 0 failed" in h.stdout, h.stdout
    r = pb("results", "remote", "--format", "json", "--all")
    text = r.stdout.strip()
    rows = json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in
                                                          text.splitlines() if ln.strip()]
    assert len(rows) == 8 and {row["pb_status"] for row in rows} == {"done"}
    assert {row["python"] for row in rows} == {str(pybin / "pbpython")}
    assert {row["mark"] for row in rows} == {"set-up"}
    import pushbutton as pbm
    series = pbm.load(project / "exp.toml", project=project).series()
    assert len(series) == 16 and sorted(series.pb_step.unique()) == [1, 2]


def test_broken_python_stops_resubmitting_and_says_why(slurm, project):
    """Jobs that die before any task starts (the Python is gone) are not resubmitted forever:
    the tasks stay pending and the harvest names the cause."""
    from pushbutton.execution.slurm import sync as harvest
    (project / "pushbutton-targets.toml").write_text(
        "[targets.flaky]\npoll_interval = 0.3\n"
        f"python = \"{project}/py/python3\"\n")
    (project / "py").mkdir()
    (project / "py" / "python3").symlink_to(sys.executable)
    exp = experiment(project, "broken", "square", bundle_size=1, x=list(range(3)))
    out = exp.run(on="flaky")  # the check passes: the Python is there now
    assert out["status"] == "submitted"
    (project / "py" / "python3").unlink()  # ... and gone when the jobs start
    s = harvest.harvest(exp.store, "broken", wait=True, timeout=120)["broken"]
    assert s["status"] == "stalled", s
    assert "failed before any task started" in s["warnings"][-1]
    assert "No such file" in s["warnings"][-1] or "not found" in s["warnings"][-1]
    assert exp.status()["counts"]["pending"] == 3


def test_ssh_drop_mid_rsync_resumes_without_partial_ingest(ssh_host, project):
    from pushbutton.execution.slurm import sync as harvest
    from pushbutton.execution import factory
    ssh_target(project, "tc")
    exp = experiment(project, "bulky", "bulky", x=list(range(8)), kb=[192])
    out = exp.run(on="tc")
    assert out["status"] == "submitted"
    store, eid = exp.store, exp.store.experiment("bulky")
    be = factory.backend_for("tc", store)
    be.shell.backoff = (0.05,)
    real = be.shell._exec

    def dropping(argv, input, timeout):  # the connection drops one second into every rsync
        if argv[0] == "rsync" and any(a.startswith("--include=/e") for a in argv):
            argv = [argv[0], "--bwlimit=200"] + argv[1:]
            return real(argv, input, 1.0)
        return real(argv, input, timeout)
    be.shell._exec = dropping
    deadline = time.time() + 90
    while time.time() < deadline:
        s = harvest.sync(store, eid, backend=be)
        if s["warnings"]:
            break
        time.sleep(0.3)
    assert s["warnings"] and "pulling results failed" in s["warnings"][-1]
    assert s["counts"]["done"] == 0 and s["counts"]["running"] == 8  # nothing half-ingested
    assert len(exp.results(all_tasks=False)) == 0
    be.shell._exec = real
    s = harvest.sync(store, eid, backend=be)
    be.close()
    assert s["status"] == "finished", s
    df = assert_complete(exp, 8)
    assert (df.blob.str.len() == 192 * 1024).all()


def test_ssh_worker_killed_is_checksummed_and_retried(ssh_host, project):
    """A bundle that died has no done.json: its outcomes are verified against the sha256
    computed on the cluster before anything is ingested."""
    from pushbutton.execution.slurm import sync as harvest
    ssh_target(project, "tc")
    exp = experiment(project, "rkilled", "die_once", retries=1, bundle_size=4,
                     x=list(range(4)), victim=[1])
    exp.run(on="tc")
    s = harvest.harvest(exp.store, "rkilled", wait=True, timeout=120)["rkilled"]
    assert s["status"] == "finished"
    df = assert_complete(exp, 4)
    assert df.set_index("x").pb_attempts.to_dict() == {0: 1, 1: 2, 2: 1, 3: 1}
    assert any("SIGKILL" in c for c in causes(exp)), causes(exp)


def test_wrong_targets_fail_clearly(slurm, project):
    add = project / "pushbutton-targets.toml"
    add.write_text(
        '[targets.nohost]\nhost = "no-such-host.invalid"\n\n'
        f'[targets.nosbatch]\npython = "{sys.executable}"\nsetup = ["export PATH=/nonexistent"]\n'
        '\n[targets.nopython]\npython = "python-that-does-not-exist"\n')
    (project / "exp.toml").write_text(
        'name = "wrong"\nfunction = "slurm_tasks:square"\n[space]\ngrid = { x = [1, 2] }\n')
    r = pb("targets", "check", "nohost", check=False)
    assert r.returncode == 1
    assert "target 'nohost'" in r.stdout and "no-such-host.invalid" in r.stdout
    assert "fix: check the host name" in r.stdout
    r = pb("run", "exp.toml", "--on", "nohost", check=False)
    assert r.returncode == 2 and "target 'nohost'" in r.stderr and "fix:" in r.stderr
    r = pb("targets", "check", "nosbatch", check=False)
    assert r.returncode == 1 and "sbatch, squeue, scancel not found" in r.stdout
    r = pb("run", "exp.toml", "--on", "nosbatch", check=False)
    assert r.returncode == 2 and "sbatch" in r.stderr and "fix:" in r.stderr
    r = pb("run", "exp.toml", "--on", "nopython", check=False)
    assert r.returncode == 2 and "python-that-does-not-exist" in r.stderr
    r = pb("run", "exp.toml", "--on", "nosuchtarget", check=False)
    assert r.returncode == 2 and "no target named 'nosuchtarget'" in r.stderr
    assert pb("status", "wrong").stdout.count("pending 2") == 1


def test_time_limit_is_detected(slurm):
    exp = _STATE.get("timelimit")
    if exp is None:
        pytest.skip("the time-limit sweep was not started")
    s = harvest_all(exp, timeout=200)
    assert s["status"] == "finished" and s["failed"] == 1
    df = exp.results()
    assert list(df.pb_error_kind) == ["timeout"]
    assert "time limit" in df.pb_error.iloc[0]


# A node set DOWN kills what runs there: this test comes after the time-limit check (its two
# bundles also start at once only with both CPUs free, and the time-limit job holds one).
def test_node_down_mid_run_is_detected_and_retried(slurm, project):
    exp = experiment(project, "nodedown", "nap", retries=1, bundle_size=2, x=list(range(4)),
                     s=[1.5])
    out = exp.run(on="local-slurm")
    assert out["status"] == "submitted" and out["bundles"] == 2
    wait_started(exp.store.dir, 2)
    node = os.environ.get("PB_TEST_SLURM_NODE") or os.uname().nodename.split(".")[0]
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=pb-test"],
                   check=True, timeout=20)
    node_idle()
    s = harvest_all(exp)
    assert s["status"] == "finished"
    df = assert_complete(exp, 4)
    assert any("node failed (NODE_FAIL" in c for c in causes(exp)), causes(exp)
    kinds = [k for (k,) in exp.store.db.execute("SELECT kind FROM attempts")]
    assert kinds and set(kinds) == {"lost"}
    assert df.pb_attempts.max() == 2
