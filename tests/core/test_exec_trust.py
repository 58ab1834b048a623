"""Execution you can trust: task folders scoped by experiment and lineage, no command task
outliving its worker, logs of crashed tasks, attempt numbers, NaN/inf metrics stored."""
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pushbutton import Experiment, grid
from pushbutton.harvest import arrow as ingest_arrow
from pushbutton.store.database import Store

from .conftest import pb, write

WORKER = Path(__file__).resolve().parents[2] / "src" / "pushbutton" / "execution" / "worker.py"


# -- item 2: task folders ---------------------------------------------------------------------
def test_same_grid_in_two_experiments_does_not_share_task_folders(project, monkeypatch):
    monkeypatch.setenv("PB_TAG", "A")
    a = Experiment("exp-a", function="exec_tasks:checkpoint", space=grid(i=range(3)), workers=1)
    a.run()
    monkeypatch.setenv("PB_TAG", "B")
    b = Experiment("exp-b", function="exec_tasks:checkpoint", space=grid(i=range(3)), workers=1)
    b.run()
    # same parameters, same task ids, but B starts from its own empty folder
    assert set(a.results()["pb_task_id"]) == set(b.results()["pb_task_id"])
    assert list(b.results()["seen"].fillna("")) == ["", "", ""]
    # each folder says whose it is
    for name, exp in (("exp-a", a), ("exp-b", b)):
        for tid, i in zip(exp.results()["pb_task_id"], exp.results()["i"]):
            d = project / ".pushbutton" / "tasks" / name / tid[:2] / tid
            assert (d / "ckpt.txt").read_text() == name[-1].upper()
            info = json.loads((d / "pb_task.json").read_text())
            assert info == {"experiment": name, "task_id": tid, "generation": 0,
                            "params": {"i": int(i)}}
    a.clean()  # an experiment's data includes its task folders, and only its own
    assert not (project / ".pushbutton" / "tasks" / "exp-a").exists()
    assert (project / ".pushbutton" / "tasks" / "exp-b").is_dir()


def test_rerun_starts_from_a_clean_folder_and_retry_resumes(project, monkeypatch):
    monkeypatch.setenv("PB_TAG", "first")
    exp = Experiment("ck", function="exec_tasks:checkpoint", space=grid(i=range(3)), workers=1)
    exp.run()
    monkeypatch.setenv("PB_TAG", "second")
    exp.run(rerun=True)
    df = exp.results()
    assert list(df["seen"].fillna("")) == ["", "", ""], df.to_dict("records")
    tid = df["pb_task_id"][0]
    ab = project / ".pushbutton" / "tasks" / "ck" / tid[:2]
    assert (ab / f"{tid}.1" / "ckpt.txt").read_text() == "second"
    assert not (ab / tid).exists()  # the old generation's folder is gone
    assert json.loads((ab / f"{tid}.1" / "pb_task.json").read_text())["generation"] == 1
    # a retry within the lineage sees the folder of its first attempt
    r = Experiment("rs", function="exec_tasks:resume_after_failure", space=grid(i=range(2)),
                   retries=1, retry_on=["exception"], workers=1)
    s = r.run()
    assert s["counts"]["done"] == 2
    assert set(r.results()["seen"]) == {"attempt 1"} and set(r.results()["pb_attempts"]) == {2}


# -- item 9: logs and attempts ----------------------------------------------------------------
def test_logs_of_a_task_that_segfaulted_or_called_os_exit(project):
    write(project / "experiment.toml", """
name = "crashes"
function = "exec_tasks:crash"
[space]
grid = { kind = ["segv", "exit"] }
[run]
workers = 1
""")
    for keep in ("0", "1"):  # the logs from the retired bundle's zip, then from its folder
        shutil.rmtree(project / ".pushbutton", ignore_errors=True)
        r = pb("run", "experiment.toml", check=False, env={"PB_KEEP_BUNDLES": keep})
        assert r.returncode == 1 and "2 failed" in r.stdout, (r.stdout, r.stderr)
        rows = json.loads("[" + ",".join(pb("results", "--format", "json").stdout.split())
                          + "]")
        assert len(rows) == 2
        for row in rows:
            out = pb("logs", row["pb_task_id"]).stdout
            assert f"last words of {row['kind']}" in out, out
            assert "on stderr too" in out
    bundles = list((project / ".pushbutton" / "bundles").iterdir())
    umask = os.umask(0)
    os.umask(umask)
    for name in ("stdout.log", "stderr.log", "outcomes.jsonl", "starts.jsonl"):
        mode = (bundles[0] / name).stat().st_mode & 0o777
        assert mode == 0o644 & ~umask, (name, oct(mode))
    # the start lines (what the logs above were cut from) are apart from the end lines
    starts = [json.loads(ln) for b in bundles for ln in (b / "starts.jsonl").read_text().split()]
    assert {s["id"] for s in starts} == {r["pb_task_id"] for r in rows}  # (a retry: twice)
    assert all(s["ev"] == "start" and len(s["log"]) == 2 for s in starts)
    assert not any(b'"start"' in (b / "outcomes.jsonl").read_bytes() for b in bundles)


def test_attempt_numbers_run_on_over_retries(project):
    write(project / "experiment.toml", """
name = "again"
function = "exec_tasks:always_fails"
[space]
grid = { i = [1, 2] }
[resources]
retries = 1
retry_on = ["exception"]
""")
    pb("run", "experiment.toml", check=False)
    pb("retry", check=False)
    pb("retry", check=False)
    store = Store(project)
    rows = store.db.execute("SELECT t.id, a.n, a.error FROM attempts a JOIN tasks t ON "
                            "t.rowid = a.task ORDER BY a.rowid").fetchall()
    by_task = {}
    for tid, n, err in rows:
        by_task.setdefault(tid, []).append(n)
        assert err.endswith("attempt %d fails" % n)  # PB_ATTEMPT says the same number
    assert len(by_task) == 2
    for ns in by_task.values():
        assert ns == [1, 2, 3, 4, 5, 6]  # each retry gets the retry budget again


# -- item 16: NaN is data ---------------------------------------------------------------------
def _check_nan_rows(df):
    assert (df["pb_status"] == "done").all(), df.to_dict("records")
    assert df["x"].map(math.isnan).all()
    assert (df["y"] == math.inf).all() and (df["z"] == -math.inf).all()


def test_nan_and_inf_metrics_are_stored_on_both_ingest_paths(project, monkeypatch):
    small = Experiment("nan-small", function="exec_tasks:diverged", space=grid(i=range(3)),
                       workers=1)
    small.run()  # a small chunk: the line-by-line path
    _check_nan_rows(small.results())
    # 600 tasks in one bundle: a chunk big enough for Arrow's JSON reader (not a small run)
    monkeypatch.setenv("PB_SMALL_RUN", "0")
    calls = []
    real = ingest_arrow.parse

    def spy(*a, **k):
        out = real(*a, **k)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(ingest_arrow, "parse", spy)
    big = Experiment("nan-big", function="exec_tasks:diverged", space=grid(i=range(600)),
                     workers=1, bundle_size=600)
    s = big.run()
    assert s["counts"]["done"] == 600 and any(calls)
    _check_nan_rows(big.results())
    out = pb("sql", "SELECT count(*) AS n, sum(isnan(x)::int) AS nans, "
             "sum((y = 'inf'::double)::int) AS infs, avg(i) AS mean FROM results",
             "-e", "nan-big", "--format", "csv").stdout.splitlines()
    assert [float(v) for v in out[1].split(",")] == [600, 600, 600, 299.5], out
    csv = pb("results", "nan-small", "--format", "csv").stdout.splitlines()
    head = csv[0].split(",")
    first = dict(zip(head, csv[1].split(",")))
    assert first["x"] == "" and first["y"] == "inf" and first["z"] == "-inf", first
    agg = small.aggregate(["i"], "x")  # NaN is not a value in a mean or a count
    assert agg.shape[0] == 3 and (agg["x_count"] == 0).all(), agg


def test_command_printing_nan_as_its_last_line_is_stored(project):
    exp = Experiment("nan-cmd", command=[sys.executable, "-c",
                                         "print('hello'); print('{{\"x\": NaN, \"k\": {k}}}')"],
                     space=grid(k=[1, 2]), workers=1)
    exp.run()
    df = exp.results()
    assert (df["pb_status"] == "done").all(), df.to_dict("records")
    assert df["x"].map(math.isnan).all() and sorted(df["k"]) == [1, 2]


# -- item 7: command tasks die with their worker ----------------------------------------------
def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_sleepers(project, n=2):
    write(project / "sleepers.toml", f"""
name = "sleepers"
command = ["{sys.executable}", "exec_tasks.py", "{{i}}", "{project}"]
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = {n}
""")
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "sleepers.toml", "--quiet"],
                         cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(project.glob("pids-?"))) < n:
        time.sleep(0.1)
    pids = [int(x) for f in sorted(project.glob("pids-?")) for x in f.read_text().split()]
    assert len(pids) == 2 * n and all(map(_alive, pids)), pids
    return p, pids


def _gone_soon(pids, seconds=5):
    deadline = time.time() + seconds
    while time.time() < deadline and any(map(_alive, pids)):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_kill9_of_the_driver_ends_command_tasks_and_their_children(project):
    p, pids = _start_sleepers(project)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    left = _gone_soon(pids)
    for pid in left:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "still running after the driver's death: %s" % left


def test_cancel_ends_command_tasks_and_their_children(project):
    p, pids = _start_sleepers(project)
    pb("cancel", "sleepers")
    p.wait(timeout=60)
    left = _gone_soon(pids)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "still running after pb cancel: %s" % left


def test_command_output_is_streamed_not_held_in_memory(tmp_path):
    # 200 MB on stdout, then the metrics line; run the worker itself and measure its peak RSS
    prog = ("import sys; w = sys.stdout.buffer.write; b = b'x' * (1 << 20) + b'\\n'\n"
            "for _ in range(200): w(b)\n"
            "w(b'{{\"m\": 7}}\\n')\n")  # {{ }}: literal braces in a command
    folder = tmp_path / "b1"
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({
        "bundle": "b1", "experiment": "big", "run": 1, "root": str(tmp_path), "sys_path": [],
        "call": {"kind": "command", "argv": [sys.executable, "-c", prog]}, "timeout": 60,
        "memory_mb": None, "task_root": str(tmp_path / "tasks"),
        "tasks": [{"id": "ab01", "params": {}, "attempt": 1}]}))
    probe = ("import resource, subprocess, sys\n"
             "subprocess.run([sys.executable, sys.argv[1], sys.argv[2]], check=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(WORKER), str(folder)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.split()[-1]) / 1024  # KiB on Linux
    end = [json.loads(ln) for ln in (folder / "outcomes.jsonl").read_text().splitlines()][-1]
    assert end["ok"] and end["metrics"] == {"m": 7}, end
    assert (folder / "stdout.log").stat().st_size > 200 * (1 << 20)
    assert peak_mb < 100, f"the worker (or its task) peaked at {peak_mb:.0f} MB"
