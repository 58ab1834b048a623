"""`pb parrun`: the grid is what the script's loops iterate over, read statically where the
iterables are literal, else evaluated by running the script's top and loop headers."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
import time

import pytest

from pushbutton.core.errors import SpecError
from pushbutton.spec import parrun


def pb(cwd, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def write(d, name, text):
    p = d / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


def rows(cwd, name):
    r = pb(cwd, "results", name, "--format", "csv")
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def points(path, **kw):
    nest = parrun.read(path, **kw)
    return nest, [tuple(p.values()) for p in parrun.space_of(nest)]


def test_static_forms_need_no_subprocess(tmp_path):
    p = write(tmp_path, "s.py", """
        import math                          # an import does not stop the static path
        Var0 = [10, 20, 30]
        NAMES = ("a", "b")
        K = len(Var0) - 1
        print(Var0)                          # printing does not change it
        if __name__ == "__main__":
            with open("out.txt", "w") as out:
                for i in range(len(Var0)):
                    for j, name in enumerate(NAMES):
                        for x, (y, z) in zip([1, 2], [(3, 4), (5, 6)]):
                            for k in range(K):
                                result = {"v": Var0[i] * x + y + z + k}
    """)
    nest, got = points(p)
    assert nest.how == "static"
    assert [ax.names for ax in nest.axes] == [("i",), ("j", "name"), ("x", "y", "z"), ("k",)]
    assert len(got) == 3 * 2 * 2 * 2
    assert got[:3] == [(0, 0, "a", 1, 3, 4, 0), (0, 0, "a", 1, 3, 4, 1),
                       (0, 0, "a", 2, 5, 6, 0)]
    assert "static" in parrun.how_line(nest)


def test_static_dependent_loop_is_a_triangle(tmp_path):
    p = write(tmp_path, "t.py", """
        N = 4
        for i in range(N):
            for j in range(i):
                for k in ["a", "b"]:
                    result = {"s": i + j}
    """)
    nest, got = points(p)
    assert nest.how == "static" and nest.axes[1].dependent and not nest.axes[2].dependent
    assert got == [(i, j, k) for i in range(4) for j in range(i) for k in "ab"]
    assert any("empty for 1 of the outer points" in w for w in nest.warnings)


def test_static_path_is_fast_for_a_10k_nest(tmp_path):
    """The static path reads a 10^4-point nest well under 50 ms (benchmarks/parrun_grid.py
    measures it; this bound leaves room for a loaded machine)."""
    p = write(tmp_path, "big.py", f"""
        XS = {list(range(100))!r}
        for x in XS:
            for i in range(100):
                result = {{"s": x + i}}
    """)
    parrun.read(p)   # warm: the first call imports the space modules
    t0 = time.perf_counter()
    nest = parrun.read(p)
    n = len(parrun.space_of(nest))
    took = time.perf_counter() - t0
    assert nest.how == "static" and n == 10_000
    assert took < 0.25, took


def test_changed_or_shadowed_names_are_evaluated_not_guessed(tmp_path):
    p = write(tmp_path, "c.py", """
        X = [1, 2]
        X.append(3)
        def range(n):             # shadows the builtin: range(2) is not what it seems
            return [7, 8, 9][:n]
        for x in X:
            for r in range(2):
                result = {"v": x * r}
    """)
    nest, got = points(p)
    assert nest.how == "evaluated"
    assert got == [(x, r) for x in (1, 2, 3) for r in (7, 8)]


NUMPY_SCRIPT = """
    import numpy as np
    Var0 = np.array([1, 2, 3])
    Var1 = np.logspace(-3, -1, 3)
    if __name__ == "__main__":
        with open("log.txt", "a") as log:
            for i in range(len(Var0)):
                for j, v in enumerate(Var1):
                    log.write("point\\n")
                    with open("results.csv", "a") as f:
                        f.write(f"{i},{j},{i+j}\\n")
                    result = {"prod": Var0[i] * v, "kind": type(v).__name__}
"""


def test_numpy_with_and_main_guard_run_end_to_end(tmp_path):
    pytest.importorskip("numpy")
    write(tmp_path, "cj.py", NUMPY_SCRIPT)
    r = pb(tmp_path, "parrun", "cj.py", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "9 tasks" in r.stdout
    assert "grid: i (3 values, line 6: range(len(Var0))) x j, v (3 values, line 7: " \
           "enumerate(Var1))" in r.stdout
    assert "grid evaluated by running the script's lines 1-5 and loop headers in a " \
           "subprocess: " in r.stdout
    assert not (tmp_path / "log.txt").exists()     # reading the grid wrote nothing here
    r = pb(tmp_path, "parrun", "cj.py", "-j", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(tmp_path, "parrun-cj")
    assert len(got) == 9
    for x in got:
        i, v = int(x["i"]), float(x["v"])
        assert float(x["prod"]) == pytest.approx((i + 1) * v)
        assert x["kind"] == "float64"            # the body saw numpy's value, as in the script
    assert sorted({float(x["v"]) for x in got}) == pytest.approx([0.001, 0.01, 0.1])


def test_dependent_loop_over_data_the_script_reads(tmp_path):
    (tmp_path / "groups.json").write_text('[["a", "b"], ["c"], [], ["d", "e", "f"]]')
    write(tmp_path, "ragged.py", """
        import json
        with open("groups.json") as fh:
            GROUPS = json.load(fh)
        for g in range(len(GROUPS)):
            members = GROUPS[g]                  # runs per task, and in the probe per g
            for k in range(len(members)):
                result = {"member": members[k]}
    """)
    nest, got = points(tmp_path / "ragged.py")
    assert nest.how == "evaluated" and nest.axes[1].dependent
    assert got == [(0, 0), (0, 1), (1, 0), (3, 0), (3, 1), (3, 2)]
    r = pb(tmp_path, "parrun", "ragged.py", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(x["member"] for x in rows(tmp_path, "parrun-ragged")) == list("abcdef")


def test_statements_between_loops_run_per_task_no_result_dropped(tmp_path):
    """The issue's case: an outer loop with statements before its inner loop ran the inner loop
    inside one task and kept its last printed line; now each point is a task."""
    write(tmp_path, "between.py", """
        import json
        X = [1, 2, 3]
        for i in X:
            base = i * 10
            for j in [0, 1]:
                print(json.dumps({"v": base + j}))
    """)
    r = pb(tmp_path, "parrun", "between.py", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    got = {(int(x["i"]), int(x["j"])): int(x["v"]) for x in rows(tmp_path, "parrun-between")}
    assert got == {(i, j): 10 * i + j for i in (1, 2, 3) for j in (0, 1)}


def test_a_loop_inside_the_task_that_makes_results_is_warned(tmp_path):
    write(tmp_path, "inner.py", """
        import json
        for i in [1, 2]:
            for j in [0, 1, 2]:
                print(json.dumps({"v": i + j}))
            print("done with", i)
    """)
    r = pb(tmp_path, "parrun", "inner.py", "--dry-run")
    assert r.returncode == 0 and "2 tasks" in r.stdout
    assert "inner.py:3: this loop runs inside each task" in r.stderr
    assert "only the last one counts" in r.stderr


def test_values_without_json_form_by_repr_and_index(tmp_path):
    write(tmp_path, "objs.py", """
        import math
        import pickle
        class Model:
            def __init__(self, k):
                self.k = k
        MODELS = [Model(1), Model(2), Model(3)]     # same repr (addresses removed): by index
        for f in [math.sin, math.cos]:
            for m in MODELS:
                for x in [float("nan"), 1.5]:       # NaN is no parameter value: by repr
                    back = pickle.loads(pickle.dumps(m))   # its class is found in __main__
                    result = {"y": f(m.k), "k": back.k, "nan": x != x}
    """)
    nest = parrun.read(tmp_path / "objs.py")
    assert [ax.modes for ax in nest.axes] == [("repr",), ("index",), ("repr",)]
    r = pb(tmp_path, "parrun", "objs.py", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(tmp_path, "parrun-objs")
    assert len(got) == 12
    for x in got:
        assert x["f"] in ("<built-in function sin>", "<built-in function cos>")
        assert x["m"].startswith("#") and "Model object>" in x["m"] and " at 0x" not in x["m"]
        k = int(x["m"][1]) + 1                       # "#0 ..." is MODELS[0], whose k is 1
        assert int(x["k"]) == k
        fn = {"<built-in function sin>": __import__("math").sin,
              "<built-in function cos>": __import__("math").cos}[x["f"]]
        assert float(x["y"]) == pytest.approx(fn(k))
        assert (x["nan"] == "True") == (x["x"] == "nan")


def test_values_that_change_between_runs_fail_their_tasks_clearly(tmp_path):
    write(tmp_path, "rnd.py", """
        import random
        for x in [random.random() for _ in range(2)]:
            result = {"x2": x * 2}
    """)
    r = pb(tmp_path, "parrun", "rnd.py", "--quiet")
    assert r.returncode == 1
    got = rows(tmp_path, "parrun-rnd")
    assert [x["pb_status"] for x in got] == ["failed", "failed"]
    lg = pb(tmp_path, "logs", got[0]["pb_task_id"])
    assert 'rnd.py", line 2' in lg.stdout
    assert "ParrunGridError: the loop on line 2" in lg.stdout
    assert "gives other values in this task than when pb parrun read the grid" in lg.stdout


def test_preamble_that_never_ends_is_an_error_within_the_timeout(tmp_path):
    write(tmp_path, "forever.py", """
        import time
        def wait_for_data():
            while True:
                time.sleep(0.05)
        DATA = wait_for_data()
        for d in DATA:
            print(d)
    """)
    t0 = time.time()
    r = pb(tmp_path, "parrun", "forever.py", "--grid-timeout", "2s")
    took = time.time() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert took < 15, took
    assert "forever.py:4: the script's top did not reach the end of its loop headers within " \
           "2 s (it was at line 4, called from line 5)" in r.stderr
    assert "--grid-timeout" in r.stderr and "Traceback" not in r.stderr


def test_preamble_that_raises_names_its_line(tmp_path):
    write(tmp_path, "raises.py", """
        import json

        def load():
            return json.loads("{not json")
        CONFIG = load()
        for a in range(len(CONFIG)):
            print(a)
    """)
    r = pb(tmp_path, "parrun", "raises.py", "--dry-run")
    assert r.returncode == 2
    assert "raises.py:4: the script raised JSONDecodeError" in r.stderr
    assert "before the loops" in r.stderr and "Traceback" not in r.stderr
    write(tmp_path, "header.py", """
        A = [1, 2]
        for i in range(len(A)):
            for j in range(A[i] // 0):
                print(i, j)
    """)
    r = pb(tmp_path, "parrun", "header.py", "--dry-run")
    assert r.returncode == 2
    assert "header.py:3: the script raised ZeroDivisionError: integer division or modulo by " \
           "zero in the loop header `for ... in range(A[i] // 0)`" in r.stderr


def test_refusals_name_the_line(tmp_path):
    cases = {
        "after.py": ("for a in [1, 2]:\n    print(a)\nprint('done')\n", 3, "after the loop nest"),
        "fn.py": ("def main():\n    for a in [1]:\n        print(a)\nmain()\n", 1,
                  "inside the function `main`"),
        "els.py": ("for a in [1]:\n    pass\nelse:\n    pass\n", 4, "`else:` clause"),
        "star.py": ("for *a, b in [(1, 2)]:\n    pass\n", 1, "not a simple name"),
    }
    for name, (text, line, what) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SpecError) as e:
            parrun.read(tmp_path / name)
        assert f"{name}:{line}" in str(e.value) and what in str(e.value), str(e.value)


def test_dry_run_of_big_evaluated_grid_is_lazy_enough(tmp_path):
    pytest.importorskip("numpy")
    write(tmp_path, "big.py", """
        import numpy as np
        A = np.arange(300)
        for a in A:
            for b in range(len(A)):
                result = {"s": int(a + b)}
    """)
    r = pb(tmp_path, "parrun", "big.py", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "90,000 tasks" in r.stdout and "grid evaluated" in r.stdout
    assert json.loads(r.stdout.split("first points:\n")[1].splitlines()[1]) == {"a": 0, "b": 1}
