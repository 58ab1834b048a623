"""`pb parrun SCRIPT.py`: a script's leading for-loops are the grid, its body the task."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap

import pytest

from pushbutton.spec import parrun
from pushbutton.core.errors import SpecError


def pb(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


def rows(tmp_path, *extra):
    r = pb(tmp_path, "results", *extra, "--format", "csv")
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


SWEEP = """
    import os
    SCALE = 10
    LRS = [0.5, 0.25]
    for lr in LRS:
        for seed in range(3):
            with open("calls.txt", "a") as f:   # counts executions (cwd: the task's folder)
                f.write(f"{lr},{seed}\\n")
            result = {"score": lr * SCALE + seed, "tag": f"s{seed}"}
"""


def test_nested_sweep_results_resume_and_script_untouched(tmp_path):
    script = write(tmp_path, "train.py", SWEEP)
    before = script.read_bytes()
    r = pb(tmp_path, "parrun", "train.py", "-j", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parrun-train: 6 done, 0 failed" in r.stdout
    got = rows(tmp_path)
    assert len(got) == 6
    pts = {(float(x["lr"]), int(x["seed"])): x for x in got}
    assert set(pts) == {(lr, s) for lr in (0.5, 0.25) for s in range(3)}
    for (lr, s), x in pts.items():
        assert x["pb_status"] == "done"
        assert float(x["score"]) == lr * 10 + s and x["tag"] == f"s{s}"
    def calls():  # each task wrote its own calls.txt, in its own folder
        return sorted(p.read_text() for p in
                      (tmp_path / ".pushbutton" / "tasks" / "parrun-train").glob("*/*/calls.txt"))
    assert calls() == sorted(f"{lr},{s}\n" for lr in (0.5, 0.25) for s in range(3))
    assert not (tmp_path / "calls.txt").exists()
    # resume: nothing new runs
    r = pb(tmp_path, "parrun", "train.py", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "6 done" in r.stdout
    assert len(calls()) == 6
    assert script.read_bytes() == before
    runners = list((tmp_path / ".pushbutton" / "parrun").glob("parrun-train-*.py"))
    assert len(runners) == 1
    # the ordinary commands know the experiment
    assert pb(tmp_path, "status", "parrun-train").returncode == 0


def test_values_reach_the_body_verbatim(tmp_path):
    vals = ['it\'s "quoted"', "ünïcødé ✓ 日本", "{seed} $(rm -rf /); `x`", "a\nb\tc", "\\"]
    write(tmp_path, "echo.py", f"""
        VALUES = {vals!r}
        for s in VALUES:
            for flag, n in [(True, 1), (None, 2.5)]:
                assert s in VALUES and type(flag) in (bool, type(None))
                result = {{"echo": s, "same": s == VALUES[VALUES.index(s)], "n2": n * 2}}
    """)
    r = pb(tmp_path, "parrun", "echo.py", "--quiet", "--name", "echo")
    assert r.returncode == 0, r.stdout + r.stderr
    out = pb(tmp_path, "results", "echo", "--format", "json")
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(recs) == 10
    assert sorted(x["echo"] for x in recs) == sorted(vals * 2)
    assert all(x["echo"] == x["s"] and x["same"] for x in recs)
    assert sorted(x["n2"] for x in recs) == [2] * 5 + [5.0] * 5


@pytest.mark.parametrize("loop", ["for x in make_values():", "for x in xs:"])
def test_computed_grid_is_evaluated(tmp_path, loop):
    """A function call or a computed list: once refused, now evaluated like the script would."""
    script = tmp_path / "calc.py"
    script.write_text("def make_values():\n    return [1, 2]\nxs = [v for v in range(1, 3)]\n"
                      f"{loop}\n    result = {{'twice': 2 * x}}\n")
    r = pb(tmp_path, "parrun", "calc.py", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 tasks" in r.stdout and "grid evaluated by running" in r.stdout


def test_set_grid_is_a_located_error(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("xs = 1\nfor x in {1, 2}:\n    print(x)\n")
    r = pb(tmp_path, "parrun", "bad.py")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "bad.py:2" in r.stderr and "a set" in r.stderr and "sorted(" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / ".pushbutton" / "parrun").exists() or \
        not list((tmp_path / ".pushbutton" / "parrun").iterdir())


def test_statement_after_the_loops_is_refused(tmp_path):
    write(tmp_path, "after.py", """
        for a in [1, 2]:
            print(a)
        print("done")
    """)
    r = pb(tmp_path, "parrun", "after.py")
    assert r.returncode == 2 and "after.py:3" in r.stderr and "Traceback" not in r.stderr


def test_a_failing_point_fails_alone_with_its_traceback(tmp_path):
    write(tmp_path, "flaky.py", """
        for k in range(4):
            print(f"point {k}")
            if k == 2:
                raise ValueError(f"bad point {k}")
            result = {"sq": k * k}
    """)
    r = pb(tmp_path, "parrun", "flaky.py", "--quiet")
    assert r.returncode == 1
    assert "3 done, 1 failed" in r.stdout
    got = {int(x["k"]): x for x in rows(tmp_path)}
    assert [got[k]["pb_status"] for k in range(4)] == ["done", "done", "failed", "done"]
    assert float(got[3]["sq"]) == 9
    lg = pb(tmp_path, "logs", got[2]["pb_task_id"])
    assert lg.returncode == 0, lg.stderr
    assert "Traceback" in lg.stdout and "ValueError: bad point 2" in lg.stdout
    assert 'flaky.py", line 4' in lg.stdout   # the traceback names the script and its line
    assert "parrun-flaky-" not in lg.stdout
    assert "point 2" in lg.stdout


def test_metrics_from_log_printed_json_and_none(tmp_path):
    write(tmp_path, "logged.py", """
        import pushbutton
        for n in [1, 2]:
            for step in range(3):
                pushbutton.log(step=step, loss=n / (step + 1))
    """)
    write(tmp_path, "printed.py", """
        import json
        for n in (3, 4):
            print("noise")
            print(json.dumps({"twice": 2 * n}))
    """)
    write(tmp_path, "quiet.py", """
        for n in [5]:
            continue
            raise SystemExit(3)
    """)
    for s in ("logged.py", "printed.py", "quiet.py"):
        r = pb(tmp_path, "parrun", s, "--quiet")
        assert r.returncode == 0, s + r.stdout + r.stderr
    logged = {int(x["n"]): float(x["loss"]) for x in rows(tmp_path, "parrun-logged")}
    assert logged == {1: 1 / 3, 2: 2 / 3}
    printed = {int(x["n"]): int(x["twice"]) for x in rows(tmp_path, "parrun-printed")}
    assert printed == {3: 6, 4: 8}
    q = rows(tmp_path, "parrun-quiet")
    assert [x["pb_status"] for x in q] == ["done"]


def test_dry_run_and_tuple_targets(tmp_path):
    write(tmp_path, "pairs.py", """
        for a, b in [(1, "x"), (2, "y")]:
            for c in range(10, 40, 10):
                result = {"s": f"{a}{b}{c}"}
    """)
    r = pb(tmp_path, "parrun", "pairs.py", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "6 tasks" in r.stdout and '{"a": 1, "b": "x", "c": 10}' in r.stdout
    assert ".pushbutton/parrun/parrun-pairs-" in r.stdout
    assert not (tmp_path / ".pushbutton" / "state.sqlite").exists() or \
        "parrun-pairs" not in pb(tmp_path, "history").stdout


def test_parse_rules(tmp_path):
    p = write(tmp_path, "s.py", """
        X = [1, 2]
        X.append(3)
        for x in X:
            pass
    """)
    s = parrun.parse(p)   # changed after its definition: evaluated, as the script runs it
    assert s.how == "evaluated" and list(parrun.space_of(s)) == [{"x": 1}, {"x": 2}, {"x": 3}]
    p = write(tmp_path, "s2.py", """
        for n in [1, 2]:
            total = 0
            for i in range(n):     # not the sole statement: runs inside each task
                total += i
            result = {"total": total}
    """)
    s = parrun.parse(p)   # the inner loop is followed by a statement: it runs in the task
    assert s.names == ["n"]
    p = write(tmp_path, "s3.py", """
        for n in [1, 2]:
            for i in range(n):
                pass
    """)
    s = parrun.parse(p)   # a dependent inner loop: (1, 0), (2, 0), (2, 1)
    assert s.how == "static" and s.axes[1].dependent
    assert [tuple(p.values()) for p in parrun.space_of(s)] == [(1, 0), (2, 0), (2, 1)]
    p = write(tmp_path, "s4.py", """
        for n in [1, 2]:
            for n in [3]:
                pass
    """)
    with pytest.raises(SpecError, match="already"):
        parrun.parse(p)
    p = write(tmp_path, "s5.py", """
        for n in [1, 2]:
            if n == 1:
                break
            print(n)
    """)
    s = parrun.parse(p)
    assert s.warnings and "break" in s.warnings[0]
    from pushbutton.spec.parrun_runner import runner_source
    compile(runner_source(s), "runner", "exec")
