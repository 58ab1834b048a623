"""`pb gather FILE`: a file of every done task's folder as one table with the parameters, kept
in the store (a `pb sql` view), read again only where it changed; missing and malformed files
are listed; a --rerun never doubles rows. Tasks of `pb run` write into $PB_TASK_DIR."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap

import pytest

from pushbutton.execution import worker
from pushbutton.harvest import gather as G
from pushbutton.harvest import gather_formats as F



def pb(*args, cwd=None, check=True, timeout=120):
    """The real CLI in a subprocess, as a user runs it."""
    import subprocess
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


WRITER = """
    import os, sys
    i, j = int(sys.argv[1]), int(sys.argv[2])
    d = os.environ["PB_TASK_DIR"]
    os.makedirs(d, exist_ok=True)
    if (i, j) == (2, 0) and not os.path.exists("fixed"):
        print('{"ok": 0}')                      # writes no file
    elif (i, j) == (2, 1) and not os.path.exists("fixed"):
        with open(os.path.join(d, "results.csv"), "w") as f:
            f.write("i,j,k,s\\n1,2,3,4\\n5\\n")   # a row with 1 field
    else:
        with open(os.path.join(d, "results.csv"), "w") as f:
            f.write("i,j,k,s\\n")                # i and j echo the parameters
            for k in range(2):
                f.write(f"{i},{j},{k},{i + j + k}\\n")
        print('{"ok": 1}')
"""

SPEC = f"""
    name = "cmd"
    command = [{json.dumps(sys.executable)}, "writer.py", "{{i}}", "{{j}}"]
    [space]
    grid = {{ i = [0, 1, 2], j = [0, 1] }}
"""


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def sql_count(cwd, view, exp="cmd"):
    r = pb("sql", f"SELECT count(*) AS n FROM {view}", "-e", exp, "--format", "csv", cwd=cwd)
    return int(rows_of(r.stdout)[0]["n"])


def test_gather_pb_run_files_problems_incremental_and_rerun(tmp_path):
    write(tmp_path / "writer.py", WRITER)
    write(tmp_path / "experiment.toml", SPEC)
    assert "6 done" in pb("run", "experiment.toml", "-j", "2", cwd=tmp_path).stdout
    r = pb("gather", "results.csv", "cmd", "--format", "csv", cwd=tmp_path, check=False)
    assert r.returncode == 1, r.stderr          # problems: exit status 1, table still given
    got = rows_of(r.stdout)
    assert list(got[0]) == ["pb_task_id", "i", "j", "k", "s", "pb_row"]
    assert len(got) == 8                        # 4 good tasks x 2 rows
    for x in got:
        assert int(x["s"]) == int(x["i"]) + int(x["j"]) + int(x["k"])
        assert int(x["pb_row"]) == int(x["k"]) + 1
    pts = {(int(x["i"]), int(x["j"])) for x in got}
    assert pts == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # the two done tasks without a readable file are listed: id, parameters, why
    tids = {(int(x["i"]), int(x["j"])): x["pb_task_id"]
            for x in rows_of(pb("results", "cmd", "--format", "csv", cwd=tmp_path).stdout)}
    assert "6 of 6 done tasks" not in r.stderr and "4 of 6 done tasks gathered" in r.stderr
    assert "2 done tasks without a readable results.csv" in r.stderr
    missing = next(ln for ln in r.stderr.splitlines() if tids[(2, 0)][:12] in ln)
    assert '"i": 2, "j": 0' in missing and "missing: no results.csv in its folder" in missing
    bad = next(ln for ln in r.stderr.splitlines() if tids[(2, 1)][:12] in ln)
    assert "malformed: row 3 has 1 field" in bad
    # stored: pb sql sees it; a second round reads nothing again and lists the same problems
    assert sql_count(tmp_path, "results_csv") == 8
    r2 = pb("gather", "results.csv", "cmd", "--format", "json", cwd=tmp_path, check=False)
    assert r2.returncode == 1 and "(0 files read now" in r2.stderr
    assert len(r2.stdout.splitlines()) == 8 and tids[(2, 1)][:12] in r2.stderr
    # a changed file is read again, and its rows replace the ones read before
    tid = tids[(1, 1)]
    f = tmp_path / ".pushbutton" / "tasks" / "cmd" / tid[:2] / tid / "results.csv"
    f.write_text(f.read_text() + "1,1,2,4\n")
    r3 = pb("gather", "results.csv", "cmd", "--format", "csv", cwd=tmp_path, check=False)
    assert "(1 file read now" in r3.stderr and len(rows_of(r3.stdout)) == 9
    # a rerun: new generations; until gathered again, no old rows count; then one set only
    (tmp_path / "fixed").write_text("")
    assert "6 done" in pb("run", "experiment.toml", "--rerun", cwd=tmp_path).stdout
    assert sql_count(tmp_path, "results_csv") == 0
    r4 = pb("gather", "results.csv", "cmd", "--format", "csv", cwd=tmp_path)
    got = rows_of(r4.stdout)
    assert len(got) == 12 and "without a readable" not in r4.stderr
    assert sorted((int(x["i"]), int(x["j"]), int(x["k"])) for x in got) == \
        sorted((i, j, k) for i in range(3) for j in range(2) for k in range(2))
    assert sql_count(tmp_path, "results_csv") == 12
    # a table, and Parquet to a file
    t = pb("gather", "results.csv", "cmd", cwd=tmp_path)
    assert "cmd: results.csv: 12 rows from 6 tasks" in " ".join(t.stdout.split())
    pb("gather", "results.csv", "--format", "parquet", "-o", "all.parquet", cwd=tmp_path)
    import pandas as pd
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 12


TASKS = """
    import json, pushbutton

    def point(a, b):
        d = pushbutton.current_task().dir
        (d / "metrics.json").write_text(json.dumps({"loss": a * b, "tag": f"t{a}"}))
        with open(d / "curve.jsonl", "w") as f:
            for step in range(3):
                f.write(json.dumps({"step": step, "v": a + step}) + "\\n")
        (d / "values.txt").write_text("\\n".join(str(a * k) for k in range(1, 4)) + "\\n")
        (d / "grid.tsv").write_text(f"{a}\\t{b}\\n{b}\\t{a}\\n")
        return {"done": 1}
"""


def test_gather_a_function_experiments_files_json_lines_numbers_tsv(tmp_path, monkeypatch):
    write(tmp_path / "tasks_g.py", TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from pushbutton import Experiment, grid
    exp = Experiment("fn", function="tasks_g:point", space=grid(a=[1, 2], b=[0.5]),
                     project=tmp_path, root=tmp_path)
    assert exp.run()["counts"]["done"] == 2
    m = exp.gather("metrics.json")
    assert list(m.columns) == ["pb_task_id", "a", "b", "loss", "tag", "pb_row"]
    assert sorted(m["loss"]) == [0.5, 1.0] and not m.attrs["problems"]
    c = exp.gather("curve.jsonl")
    assert len(c) == 6 and sorted(c[c["a"] == 2]["v"]) == [2, 3, 4]
    v = exp.gather("values.txt")
    assert list(v.columns) == ["pb_task_id", "a", "b", "value", "pb_row"]
    assert sorted(v[v["a"] == 2]["value"]) == [2, 4, 6]
    g = exp.gather("grid.tsv")
    assert list(g.columns)[3:5] == ["col1", "col2"] and len(g) == 4
    # each is a view of its own in pb sql
    q = exp.sql("SELECT a, loss FROM metrics_json ORDER BY a")
    assert q["loss"].tolist() == [0.5, 1.0]
    assert exp.sql("SELECT count(*) AS n FROM curve_jsonl")["n"][0] == 6
    missing = exp.gather("nothing.csv")
    assert len(missing) == 0 and len(missing.attrs["problems"]) == 2
    # rounds that each re-read a file: superseded parts retire, too many live ones are merged
    # into one; the rows stay one set
    from pushbutton.store import gathered
    monkeypatch.setattr(G, "COMPACT_PARTS", 1)
    d = gathered.folder(exp.store, "fn", "values.txt")
    f = next((tmp_path / ".pushbutton" / "tasks" / "fn").glob("*/*/values.txt"))
    for k in range(3):
        f.write_text(f"{k}\n{k + 1}\n")
        v = exp.gather("values.txt")
        assert len(v) == 5 and v[v["pb_task_id"] == f.parent.name]["value"].tolist() == \
            [k, k + 1]
        assert len(gathered.read_manifest(d)["parts"]) == 1


def test_bad_file_argument_is_a_message(tmp_path):
    write(tmp_path / "writer.py", WRITER)
    write(tmp_path / "experiment.toml", SPEC)
    pb("run", "experiment.toml", cwd=tmp_path, check=False)
    for bad in ("/etc/passwd", "../x.csv"):
        r = pb("gather", bad, cwd=tmp_path, check=False)
        assert r.returncode == 2 and "inside each task's folder" in r.stderr
        assert "Traceback" not in r.stderr


def test_task_folder_is_the_workers(tmp_path):
    for gen in (0, 3):
        want = worker._task_dir(os.path.join(str(tmp_path), worker._safe_name("a b/c")),
                                "ab12cd", gen)
        assert str(G.task_dir(tmp_path, "a b/c", "ab12cd", gen)) == want


def test_a_link_out_of_the_task_folder_is_listed(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    (tmp_path / "results.csv").write_text("1,2\n")
    (d / "results.csv").symlink_to(tmp_path / "results.csv")
    st, why = G._stat(d, "results.csv")
    assert st is None and "is a link to" in why and "not a file of its own" in why


@pytest.mark.parametrize("name,text,cols,first", [
    ("r.csv", "i,j,s\n1,2,3\n", ["i", "j", "s"], [1, 2, 3]),
    ("r.csv", "1,2,3\n4,5,6\n", ["col1", "col2", "col3"], [1, 2, 3]),
    ("r.csv", '"i","y","s"\n1,0.5,NA\n', ["i", "y", "s"], [1, 0.5, None]),
    ("r.csv", "a;b\n1;x\n", ["a", "b"], [1, "x"]),
    ("r.tsv", "a\tb\n1\t2\n", ["a", "b"], [1, 2]),
    ("r.txt", "0.25\n", ["value"], [0.25]),
    ("r.dat", "1 2 3\n4 5 6\n", ["col1", "col2", "col3"], [1, 2, 3]),
    ("r.csv", "x,y\nNaN,-Inf\n", ["x", "y"], ["nan", float("-inf")]),
    ("m.json", '{"a": 1, "b": [1, 2]}', ["a", "b"], [1, [1, 2]]),
    ("m.json", "[1, 2.5]", ["value"], [1]),
    ("m.jsonl", '{"a": 1}\n{"a": 2, "b": "x"}\n', ["a", "b"], [1, None]),
])
def test_formats(name, text, cols, first):
    got_cols, rows, _ = F.read(text.encode(), name)
    assert got_cols == cols
    row = rows[0]
    if first[0] == "nan":
        assert row[0] != row[0] and row[1] == first[1]
    else:
        assert row == first


@pytest.mark.parametrize("name,raw,why", [
    ("r.csv", b"", "empty"),
    ("r.csv", b"\xff\xfe\x00binary", "not UTF-8"),
    ("r.csv", b"a,b\n1,2\n3\n", "row 3 has 1 field"),
    ("m.json", b'{"a": 1', "not JSON"),
    ("m.jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not JSON"),
])
def test_malformed_files_say_why(name, raw, why):
    with pytest.raises(F.Malformed, match=why):
        F.read(raw, name)


def test_header_flag_and_headers_seen_elsewhere():
    assert F.read(b"a,b\n", "r.csv", None, {("a", "b")})[0] == ["a", "b"]
    assert F.read(b"a,b\n", "r.csv")[0] == ["col1", "col2"]           # one text row: data
    assert F.read(b"x,y\nu,v\n", "r.csv", True)[0] == ["x", "y"]
    assert F.read(b"x,y\n1,2\n", "r.csv", False)[1][0] == ["x", "y"]
