"""The core loop through the Python API: run, resume, failures, retries, commands, series."""
import math
import sys

import pytest

import pushbutton
from pushbutton import Experiment, grid, zip as pzip
from pushbutton.core.errors import BusyError, PushbuttonError, SpecError


def test_grid_run_results_and_resume(project):
    exp = Experiment("sq", function="tasks:square", space=grid(x=list(range(50))), workers=2)
    s = exp.run()
    assert s["counts"]["done"] == 50 and s["done"] == 50
    df = exp.results()
    assert len(df) == 50
    assert list(df.columns[:3]) == ["pb_task_id", "x", "y"]
    assert (df["y"] == df["x"] ** 2).all()
    assert set(df["pb_status"]) == {"done"}
    assert df["pb_task_id"].is_unique
    # resume: nothing left to do, nothing re-run
    s2 = exp.run()
    assert s2["done"] == 0 and s2["counts"]["done"] == 50
    # a larger space adds only the new points
    exp2 = Experiment("sq", function="tasks:square", space=grid(x=list(range(60))), workers=2)
    s3 = exp2.run()
    assert s3["done"] == 10
    assert len(exp2.results()) == 60
    # --rerun runs everything again, and the table still has one row per task
    s4 = exp2.run(rerun=True)
    assert s4["done"] == 60
    df = exp2.results()
    assert len(df) == 60 and df["pb_task_id"].is_unique
    assert [r["id"] for r in exp2.history()] == [1, 2, 3, 4]


def test_shrunk_space_leaves_the_schedule(project):
    Experiment("s", function="tasks:square", space=grid(x=[1, 2, 3])).run()
    exp = Experiment("s", function="tasks:square", space=grid(x=[1, 2]))
    exp.run()
    assert sorted(exp.results()["x"]) == [1, 2]
    assert exp.status()["total"] == 2


def test_failure_kinds_are_recorded_and_isolated(project):
    kinds = ["ok", "raise", "exit", "segv", "sleep", "alloc", "nan", "object", "notdict", "ok"]
    exp = Experiment("faults", function="tasks:faulty", space=pzip(kind=kinds, i=list(range(10))),
                     timeout=2, memory="400MB", workers=2)
    s = exp.run()
    df = exp.results().set_index("i")
    assert df.loc[0, "pb_status"] == "done" and df.loc[9, "pb_status"] == "done"
    expect = {1: "exception", 2: "exit", 3: "signal", 4: "timeout", 5: "memory",
              7: "metric", 8: "metric"}
    for i, kind in expect.items():
        assert df.loc[i, "pb_status"] == "failed", (i, df.loc[i].to_dict())
        assert df.loc[i, "pb_error_kind"] == kind, (i, df.loc[i, "pb_error"])
    assert "deliberate failure" in df.loc[1, "pb_error"]
    assert "SIGSEGV" in df.loc[3, "pb_error"]
    assert df.loc[6, "pb_status"] == "done" and math.isnan(df.loc[6, "loss"])  # NaN is data
    assert "model" in df.loc[7, "pb_error"]
    assert s["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 7, "cancelled": 0}
    # the log of a failed task holds its traceback
    log = exp.logs(df.loc[1, "pb_task_id"])
    assert "ValueError: deliberate failure" in log["stderr"]
    assert log["attempts"][0]["kind"] == "exception"
    ok_log = exp.logs(df.loc[0, "pb_task_id"])
    assert ok_log["stdout"].strip() == "fine ok"


def test_retry_policy(project):
    # a flaky exception is retried when retry_on names it (the default does not)
    exp = Experiment("flaky", function="tasks:flaky", space=grid(i=range(6)), retries=1,
                     retry_on=["exception"])
    s = exp.run()
    df = exp.results()
    assert s["counts"]["done"] == 6
    assert set(df["pb_attempts"]) == {2}
    log = exp.logs(df.loc[0, "pb_task_id"])
    assert [a["kind"] for a in log["attempts"]] == ["exception"]
    # without retries they fail, and --rerun-failed runs them again
    exp0 = Experiment("flaky0", function="tasks:flaky", space=grid(i=range(3)), retries=0)
    assert exp0.run()["counts"]["failed"] == 3
    s = exp0.run(rerun_failed=True)
    # attempt numbers run on over a retry (its attempt is the 2nd), so `flaky` now succeeds
    assert s["counts"]["done"] == 3 and set(exp0.results()["pb_attempts"]) == {2}


def test_segfault_charges_only_the_task_that_crashed(project):
    kinds = ["ok"] * 5 + ["segv"] + ["ok"] * 5
    exp = Experiment("seg", function="tasks:faulty", space=pzip(kind=kinds, i=list(range(11))),
                     workers=1, bundle_size=11)
    s = exp.run()
    assert s["counts"]["done"] == 10 and s["counts"]["failed"] == 1


@pytest.mark.parametrize("value", ["plain", "it's \"quoted\"", "a; rm -rf /", "$(whoami)",
                                   "`id`", "line1\nline2", "ünïcödé ✓ 中文", "{braces}", "  spaced  ",
                                   "--flag", "*", "back\\slash"])
def test_command_values_reach_the_task_verbatim(project, value):
    exp = Experiment("cmd", command=[sys.executable, "script.py", "file", "{v}"],
                     space=grid(v=[value]), root=project)
    s = exp.run()
    assert s["counts"]["done"] == 1, exp.results().to_dict("records")
    row = exp.results().iloc[0]
    assert row["arg"] == value and row["env_value"] == value and row["len"] == len(value)


def test_command_metrics_from_stdout_and_failures(project):
    exp = Experiment("cmd2", command=[sys.executable, "script.py", "{mode}", "x"],
                     space=grid(mode=["stdout", "exit", "segv", "sleep", "alloc", "badjson"]),
                     timeout=2, memory="300MB", root=project)
    exp.run()
    df = exp.results().set_index("mode")
    assert df.loc["stdout", "pb_status"] == "done" and df.loc["stdout", "arg"] == "x"
    assert df.loc["exit", "pb_error_kind"] == "exit" and "4" in df.loc["exit", "pb_error"]
    assert df.loc["segv", "pb_error_kind"] == "signal" and "SIGSEGV" in df.loc["segv", "pb_error"]
    assert df.loc["sleep", "pb_error_kind"] == "timeout"
    assert df.loc["alloc", "pb_error_kind"] == "memory"
    assert df.loc["badjson", "pb_error_kind"] == "metric"
    log = exp.logs(df.loc["exit", "pb_task_id"])
    assert "about to fail" in log["stderr"]


def test_unknown_placeholder_is_a_clear_error(project):
    with pytest.raises(SpecError, match=r"placeholder \{m\} is not a parameter"):
        Experiment("bad", command=["echo", "{m}"], space=grid(n=[1]))


def test_series_from_log(project):
    exp = Experiment("curves", function="tasks:curve", space=grid(lr=[0.1, 0.5]))
    exp.run()
    s = exp.series()
    assert len(s) == 10
    assert set(s.columns) >= {"pb_task_id", "pb_step", "loss", "lr"}
    last = s[s.pb_step == 4].set_index("lr")["loss"]
    assert last[0.5] == pytest.approx(0.5 ** 5)


def test_second_driver_is_refused(project):
    import threading
    import time
    exp = Experiment("busy", function="tasks:slow", space=grid(i=range(40), t=[0.05]), workers=1)
    from pushbutton.store.database import Store
    t = threading.Thread(target=exp.run)
    t.start()
    try:
        watcher = Store(project)  # its own connection: one SQLite connection per thread
        deadline = time.time() + 10
        while time.time() < deadline and not watcher.db.execute(
                "SELECT count(*) FROM bundles").fetchone()[0]:
            time.sleep(0.05)
        other = Experiment("busy", function="tasks:slow", space=grid(i=range(40), t=[0.05]))
        with pytest.raises(BusyError, match="already being run"):
            other.run()
    finally:
        t.join()
    df = exp.results()
    assert (df.pb_status == "done").all() and len(df) == 40


def test_python_callable_and_log_outside_a_task(project):
    sys.path.insert(0, str(project))
    try:
        import tasks
        exp = Experiment("callable", function=tasks.square, space=grid(x=[3]), root=project)
        exp.run()
        assert exp.results()["y"].tolist() == [9]
    finally:
        sys.path.remove(str(project))
    pushbutton.log(step=1, loss=0.5)  # a no-op outside a task


def test_sql_and_where(project):
    exp = Experiment("q", function="tasks:square", space=grid(x=range(10), k=["a", "b"]))
    exp.run()
    df = exp.sql("SELECT k, sum(y) AS s FROM results GROUP BY k ORDER BY k")
    assert df["s"].tolist() == [285, 285]
    assert len(exp.results(where="x >= 5 AND k = 'a'")) == 5
    t = exp.sql("SELECT pb_status, count(*) AS n FROM tasks GROUP BY pb_status")
    assert t.set_index("pb_status")["n"]["done"] == 20


def test_python_api_covers_the_cli(project):
    exp = Experiment("api", function="tasks:flaky", space=grid(i=range(4)))
    assert exp.run()["counts"]["failed"] == 4
    assert exp.status()["failures"] == {"exception": 4}
    assert exp.retry()["counts"]["done"] == 4  # the retry is attempt 2: flaky succeeds
    info = exp.show()
    assert info["spec"]["function"] == "tasks:flaky" and len(info["runs"]) == 2
    assert info["runs"][0]["provenance"]["python"]
    assert exp.cancel()["cancelled"] == 0
    assert exp.clean() >= 1
    with pytest.raises(pushbutton.PushbuttonError, match="has not been run"):
        exp.status()


def test_bool_metrics_with_unfinished_tasks(project):
    exp = Experiment("bools", function="tasks:faulty", space=grid(kind=["ok", "raise"]))
    exp.run()
    df = exp.results().set_index("kind")
    assert df.loc["ok", "ok"] == 1 and df.loc["raise", "pb_status"] == "failed"
    exp2 = Experiment("bools2", function="tasks:mixed", space=grid(i=[0, 5, 2]))
    exp2.run(rerun=False)
    df = exp2.results().set_index("i")
    assert bool(df.loc[0, "ok"]) is True and df.loc[5, "pb_status"] == "failed"
    import pandas as pd
    assert pd.isna(df.loc[5, "ok"])


def test_parts_are_compacted_after_a_run(project):
    exp = Experiment("many", function="tasks:square", space=grid(x=range(40)), workers=2,
                     bundle_size=1)
    exp.run()
    files = sorted(p.name for p in (project / ".pushbutton" / "results" / "many").iterdir()
                   if p.suffix == ".parquet")  # beside MANIFEST.json
    assert len(files) == 1 and files[0].startswith("compact-"), files
    assert not exp.store.db.execute("SELECT count(*) FROM events WHERE kind='compact-failed'"
                                    ).fetchone()[0]
    df = exp.results()
    assert len(df) == 40 and (df["y"] == df["x"] ** 2).all()
    exp.run(rerun=True)  # new parts beside the compacted file: still one row per task
    df = exp.results()
    assert len(df) == 40 and df["pb_task_id"].is_unique
    assert exp.sql("SELECT count(*) AS n FROM results")["n"][0] == 40


def test_series_survive_compaction(project):
    from pushbutton.store import parts as R
    exp = Experiment("curves-many", function="tasks:curve", space=grid(lr=[0.1, 0.2, 0.3, 0.4]),
                     workers=1, bundle_size=1)
    exp.run()
    folder = project / ".pushbutton" / "series" / "curves-many"
    assert len(list(folder.glob("*.parquet"))) == 4
    assert R.compact(folder, min_parts=2, newest_per_task=False) == 4
    assert len(list(folder.glob("*.parquet"))) == 1
    s = exp.series()
    assert len(s) == 20 and sorted(s.groupby("lr").size().tolist()) == [5, 5, 5, 5]


def test_analysis_from_the_experiment(project):
    exp = Experiment("surf", function="tasks:square", space=grid(x=range(6)).reps(3))
    exp.run()
    agg = exp.aggregate()
    assert list(agg["x"]) == list(range(6)) and (agg["y_mean"] == agg["x"] ** 2).all()
    rate = exp.success_rate(success="y >= 9")
    assert list(rate["pb_rate"]) == [0, 0, 0, 1, 1, 1]


def test_script_with_run_at_import_gets_a_clear_error(project):
    import subprocess
    (project / "sweep.py").write_text(
        "import pushbutton as pb\n"
        "def simulate(n):\n"
        "    return {'y': n}\n"
        "exp = pb.Experiment('unguarded', function=simulate, space=pb.grid(n=[1, 2]))\n"
        "exp.run()\n")
    r = subprocess.run([sys.executable, "sweep.py"], cwd=project, capture_output=True, text=True)
    # the preflight imports the script as a worker would: refused before any task is registered
    assert r.returncode != 0 and "if __name__" in r.stderr, r.stderr
    assert "sweep.py, line 5: exp.run()" in r.stderr
    exp = Experiment("unguarded", function="sweep.py:simulate", space=grid(n=[1, 2]),
                     root=project)
    with pytest.raises(PushbuttonError, match="has not been run"):
        exp.results()
    (project / "guarded.py").write_text(
        "import pushbutton as pb\n"
        "def simulate(n):\n"
        "    return {'y': n}\n"
        "if __name__ == '__main__':\n"
        "    pb.Experiment('guarded', function=simulate, space=pb.grid(n=[1, 2])).run()\n")
    r = subprocess.run([sys.executable, "guarded.py"], cwd=project, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (Experiment("guarded", function="guarded.py:simulate", space=grid(n=[1, 2]),
                       root=project).results()["pb_status"] == "done").all()
