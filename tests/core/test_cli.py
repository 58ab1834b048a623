"""The CLI end to end, as a user types it."""
import json
import time

import pytest

from .conftest import pb, write

SPEC = """
name = "sq"
description = "squares"
function = "tasks:square"
[space]
grid = { x = { range = [0, 20] }, k = ["a", "b"] }
[resources]
timeout = "30s"
retries = 1
"""


def test_run_status_results_sql_history_show(project):
    write(project / "experiment.toml", SPEC)
    r = pb("run", "experiment.toml", "-m", "first try")
    assert "40 done, 0 failed" in r.stdout
    st = json.loads(pb("status", "--json").stdout)
    assert st["counts"]["done"] == 40 and st["total"] == 40 and st["progress"] == 1.0
    assert "40 tasks, 100.0% finished" in pb("status", "sq").stdout
    csv = pb("results", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("pb_task_id,x,k,y,pb_status")
    assert len(csv) == 41
    js = [json.loads(line) for line in pb("results", "--format", "json", "--where",
                                          "x < 3").stdout.splitlines()]
    assert sorted(r["x"] for r in js) == [0, 0, 1, 1, 2, 2]
    pb("results", "--format", "parquet", "-o", "out.parquet")
    import pandas as pd
    assert len(pd.read_parquet(project / "out.parquet")) == 40
    table = pb("results").stdout
    assert "sq: 40 rows" in table
    q = pb("sql", "SELECT k, count(*) AS n, avg(y) AS m FROM results GROUP BY k ORDER BY k",
           "--format", "csv").stdout.splitlines()
    assert q[1].startswith("a,20,") and q[2].startswith("b,20,")
    hist = pb("history").stdout
    assert "first try" in hist and "finished" in hist
    show = pb("show", "sq").stdout
    assert '"function": "tasks:square"' in show and "python" in show and "code_version" in show
    tid = csv[1].split(",")[0]
    assert f"task {tid} of sq: done" in pb("show", tid[:10]).stdout
    assert "-- stdout --" in pb("logs", tid[:8]).stdout
    # resume: nothing to do
    assert "40 done" in pb("run", "experiment.toml").stdout


def test_dry_run_shows_size_points_and_bundles(project):
    write(project / "experiment.toml", SPEC)
    out = pb("run", "experiment.toml", "--dry-run").stdout
    assert "40 tasks" in out and '{"x": 0, "k": "a"}' in out and "bundles" in out
    assert not (project / ".pushbutton" / "results" / "sq").exists()


def test_failures_exit_nonzero_and_retry(project):
    write(project / "experiment.toml", """
name = "fl"
function = "tasks:flaky"
[space]
grid = { i = [1, 2, 3] }
""")
    r = pb("run", "experiment.toml", check=False)
    assert r.returncode == 1 and "3 failed" in r.stdout
    st = pb("status").stdout
    assert "3  RuntimeError at tasks.py:" in st  # grouped by exception type and place
    r = pb("retry", check=False)
    # attempt numbers run on: the retry is each task's attempt 2, which `flaky` passes
    assert r.returncode == 0 and "3 done, 0 failed" in r.stdout, r.stdout


@pytest.mark.parametrize("spec, key, words", [
    ('name = "x"\nfunction = "t:f"\nspce = {}\n', "spce", "did you mean"),
    ('name = "x"\nfunction = "t:f"\n', "space", "missing"),
    ('name = "x"\n[space]\ngrid = { n = [1] }\n', "function", "exactly one"),
    ('name = "x"\nfunction = "t:f"\n[space]\ngrid = { n = [] }\n', "space.grid.n", "empty"),
    ('name = "x"\nfunction = "t:f"\n[space]\ngrid = { n = [1] }\n[resources]\ntimeout = "soon"\n',
     "resources.timeout", "duration"),
    ('name = "x"\nfunction = "t:f"\n[space]\ngrid = { n = [1] }\n[resources]\nretries = "two"\n',
     "resources.retries", "whole number"),
    ('name = "x y"\nfunction = "t:f"\n[space]\ngrid = { n = [1] }\n', "name", "letters"),
    ('name = "x"\ncommand = ["echo", "{m}"]\n[space]\ngrid = { n = [1] }\n', "command",
     "not a parameter"),
    ('name = "x"\nfunction = "t:f"\n[space\n', None, "not valid TOML"),
])
def test_bad_specs_get_a_clear_error_not_a_traceback(project, spec, key, words):
    write(project / "bad.toml", spec)
    r = pb("run", "bad.toml", check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "bad.toml" in r.stderr and words in r.stderr
    if key:
        assert key in r.stderr


def test_huge_space_needs_confirmation(project):
    write(project / "big.toml", """
name = "big"
function = "tasks:square"
[space]
grid = { x = { range = [0, 2000] }, y = { range = [0, 1000] } }
""")
    r = pb("run", "big.toml", check=False)
    assert r.returncode == 2 and "--yes" in r.stderr and "Traceback" not in r.stderr


def test_missing_function_is_refused_before_any_task(project):
    # (it used to be registered and fail task by task; the preflight refuses it up front)
    write(project / "e.toml", 'name = "nf"\nfunction = "tasks:nope"\n[space]\ngrid = {n=[1]}\n')
    r = pb("run", "e.toml", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "key 'function'" in r.stderr and "'nope'" in r.stderr
    # nothing registered: not even a store was created for it
    assert "no pushbutton store" in pb("status", check=False).stderr
    assert not (project / ".pushbutton").exists()


def test_detach_watch_and_cancel(project):
    write(project / "slow.toml", """
name = "slow"
function = "tasks:slow"
[space]
grid = { i = { range = [0, 400] }, t = [0.05] }
[run]
workers = 1
""")
    r = pb("run", "slow.toml", "--detach")
    assert "background" in r.stdout
    deadline = time.time() + 20
    while time.time() < deadline:
        st = json.loads(pb("status", "--json").stdout)
        if st["counts"]["done"] > 5:
            break
        time.sleep(0.3)
    assert st["active"] and st["driver"]["pid"]
    # a second driver is refused while the first runs
    r2 = pb("run", "slow.toml", check=False)
    assert r2.returncode == 2 and "already being run" in r2.stderr
    out = pb("cancel").stdout
    assert "cancelled" in out
    st = json.loads(pb("status", "--json").stdout)
    assert not st["active"] and st["counts"]["cancelled"] > 0
    done_before = st["counts"]["done"]
    # resuming runs the rest, never the done ones again
    write(project / "slow.toml", (project / "slow.toml").read_text().replace("0.05", "0.05"))
    pb("run", "slow.toml", "-j", "8", timeout=300)  # the tasks sleep: 8 workers on 2 cores
    st = json.loads(pb("status", "--json").stdout)
    assert st["counts"]["done"] == 400 and done_before < 400


def test_init_example_runs(project):
    sub = project / "fresh"
    sub.mkdir()
    pb("init", "--example", cwd=sub)
    r = pb("run", "experiment.toml", cwd=sub)
    assert "40 done" in r.stdout
    q = pb("sql", "SELECT n, avg(abs_error) AS e FROM results GROUP BY n ORDER BY n",
           "--format", "csv", cwd=sub).stdout.splitlines()
    errors = [float(line.split(",")[1]) for line in q[1:]]
    assert errors[0] > errors[-1]  # the estimate converges


def test_clean(project):
    write(project / "experiment.toml", SPEC)
    pb("run", "experiment.toml")
    assert "removed" in pb("clean", "--bundles").stdout
    pb("clean", "sq", "--yes")
    r = pb("status", check=False)
    assert r.returncode == 2 and "no experiments" in r.stderr


def test_code_change_is_noted_not_silently_mixed(project):
    write(project / "experiment.toml", SPEC)
    pb("run", "experiment.toml")
    with open(project / "tasks.py", "a") as f:
        f.write("\n# a change to the code\n")
    r = pb("run", "experiment.toml")
    assert "40 results are from an earlier code version" in r.stderr and "--rerun" in r.stderr
    assert "changed since: tasks.py\n" in r.stderr  # the file, so that its edit can be judged
    pb("run", "experiment.toml", "--rerun")
    assert "earlier code version" not in pb("run", "experiment.toml").stderr


def test_watch_follows_a_detached_run_to_the_end(project):
    write(project / "w.toml", """
name = "watched"
function = "tasks:slow"
[space]
grid = { i = { range = [0, 60] }, t = [0.02] }
""")
    pb("run", "w.toml", "--detach")
    r = pb("watch", "watched", "--interval", "0.2", timeout=120)
    assert "60 tasks, 100.0% finished" in r.stdout and "done 60" in r.stdout
