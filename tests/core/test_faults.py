"""Crash paths: kill -9 of the driver at random moments, torn outcome lines."""
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time

import duckdb

from pushbutton import Experiment, grid
from pushbutton.store.database import Store

from .conftest import pb, write

N = 1000


def _spec(project):
    return write(project / "experiment.toml", f"""
name = "crashy"
function = "tasks:counted"
[space]
grid = {{ i = {{ range = [0, {N}] }}, t = [0.01] }}
[run]
workers = 2
""")


def test_kill9_driver_at_random_moments_loses_and_duplicates_nothing(project):
    _spec(project)
    rng = random.Random(1234)
    env = dict(os.environ, PB_COUNT_DIR=str(project))
    kills = 0
    for trial in range(12):
        p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                              "--quiet"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.15, 0.8))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 10
    r = pb("run", "experiment.toml", "--quiet", cwd=project, env={"PB_COUNT_DIR": str(project)})
    assert f"{N} done, 0 failed" in r.stdout, (r.stdout, r.stderr, kills)
    store = Store(project)
    assert store.db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0] == N
    # exactly one stored row per task, even in the raw Parquet parts
    files = [str(p) for p in (project / ".pushbutton" / "results" / "crashy").glob("*.parquet")]
    raw = duckdb.connect().execute(
        "SELECT pb_task_id, count(*) AS n FROM read_parquet(?, union_by_name=true) "
        "GROUP BY pb_task_id",
        [files]).fetchall()
    dup = [(t, n) for t, n in raw if n != 1]
    assert len(raw) == N and not dup, (len(raw), dup[:5], sorted(files))
    exp_df = json.loads(pb("results", "--format", "json", cwd=project).stdout.splitlines()[0])
    assert set(exp_df) >= {"pb_task_id", "i", "sq", "pb_status"}
    out = pb("sql", "SELECT count(*) AS n, count(DISTINCT i) AS d, sum(sq) AS s FROM results",
             "--format", "csv", cwd=project).stdout.splitlines()
    n, d, total = (float(v) for v in out[1].split(","))
    assert (n, d, total) == (N, N, sum(i * i for i in range(N)))
    # re-executions only of tasks that were mid-run when the driver died (at most 2 per kill)
    counts = collections.Counter(open(project / "executions.log").read().split())
    assert len(counts) == N
    assert sum(counts.values()) - N <= 2 * kills, (sum(counts.values()), kills)


def test_torn_outcome_line_is_detected_and_rerun(project):
    exp = Experiment("torn", function="tasks:tear", space=grid(i=range(8)), workers=1,
                     bundle_size=8)
    s = exp.run()
    assert s["counts"]["done"] == 8, exp.results().to_dict("records")
    df = exp.results()
    assert df["pb_task_id"].is_unique and sorted(df["i"]) == list(range(8))
    assert (df["pb_attempts"] == 1).all()  # a torn line is not the task's fault
    kinds = [k for (k,) in exp.store.db.execute("SELECT kind FROM events")]
    assert "torn-line" in kinds or "requeued-torn" in kinds


def test_ctrl_c_stops_cleanly_and_resumes(project):
    write(project / "experiment.toml", """
name = "ctrlc"
function = "tasks:slow"
[space]
grid = { i = { range = [0, 300] }, t = [0.02] }
""")
    # Ctrl-C in a terminal signals the whole process group: driver and workers
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                          "--quiet"], cwd=project, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(2.0)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "resume" in err and "Traceback" not in err, (out, err)
    store = Store(project)
    states = dict(store.db.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
    assert states.get("failed", 0) == 0 and 0 < states.get("done", 0) < 300, states
    assert store.db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0
    r = pb("run", "experiment.toml", "--quiet", cwd=project)
    assert "300 done, 0 failed" in r.stdout


def test_task_stuck_past_its_timeout_in_native_code(project):
    exp = Experiment("stuck", function="tasks:stuck", space=grid(i=range(4)), timeout=1,
                     workers=1, bundle_size=4)
    t = time.time()
    s = exp.run()
    assert time.time() - t < 25
    df = exp.results().set_index("i")
    assert s["counts"]["done"] == 3 and df.loc[1, "pb_error_kind"] == "timeout"
    assert "stuck in native code" in df.loc[1, "pb_error"]
