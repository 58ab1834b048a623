"""`pb results --limit N` reads the first rows without pandas or pyarrow (store/head.py), and
prints them exactly as the frame of the same rows is printed."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pushbutton.cli.main import cli
from pushbutton.store import head as H

from .conftest import pb, write

TASK = '''
def job(name, code, flag, x, **_):
    if name == "gamma" and x > 1:
        raise RuntimeError("broken on purpose")
    big = 12345678901 if flag else 7
    return {"y": x / 3, "big": big, "maybe": None if code == "q2" else 1.5, "label": name * 2}
'''

SPEC = '''
name = "head"
function = "head_task:job"
[space]
grid.name = ["alpha", "beta", "gamma"]
grid.code = ["p1", "q2"]
grid.flag = [true, false]
grid.x = [0.5, 1e7]
[run]
workers = 1
'''


@pytest.fixture
def ran(project):
    write(project / "head_task.py", TASK)
    write(project / "experiment.toml", SPEC)
    r = pb("run", "experiment.toml", "--yes", "--quiet", check=False)
    assert "20 done, 4 failed" in r.stdout + r.stderr, r.stdout + r.stderr  # on purpose
    return project


def _plain(project):
    write(project / "head_task.py", "def job(name, x):\n    return {'y': x * 2.5, 'n': x}\n")
    write(project / "experiment.toml", 'name = "h2"\nfunction = "head_task:job"\n[space]\n'
          'grid = { name = ["alpha", "beta"], x = [1, 2, 3] }\n')
    pb("run", "experiment.toml", "--yes", "--quiet")


def test_results_limit_imports_neither_pandas_nor_pyarrow(project):
    _plain(project)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pushbutton", "results",
                        "h2", "--limit", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "h2: 6 rows" in r.stdout and "alpha" in r.stdout and "7.5" in r.stdout
    top = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in r.stderr.splitlines()
           if line.startswith("import time:") and line.count("|") == 2}
    assert "duckdb" in top  # the log is read right
    assert not top & {"pandas", "pyarrow", "numpy"}, sorted(top & {"pandas", "pyarrow"})


@pytest.mark.parametrize("args", [
    ["--limit", "5"],
    ["--limit", "7", "--all-columns"],
    ["--limit", "24", "--all"],
    ["--limit", "24", "--all", "--all-columns"],
    ["--limit", "1"],
])
def test_first_rows_print_as_the_frame_does(ran, monkeypatch, args):
    """Byte for byte against the frame path (what `pb results` printed before head.py): text,
    number-like text, boolean, float, big integer, null and failed-task columns."""
    used = []

    def spy(*a, **k):
        got = real(*a, **k)
        used.append(got is not None)
        return got
    real = H.rows
    monkeypatch.setattr(H, "rows", spy)
    runner = CliRunner()
    fast = runner.invoke(cli, ["results", "head", *args], terminal_width=200)
    assert fast.exit_code == 0, fast.output
    monkeypatch.setattr(H, "rows", lambda *a, **k: None)  # the frame, as before
    frame = runner.invoke(cli, ["results", "head", *args], terminal_width=200)
    assert frame.exit_code == 0, frame.output
    assert fast.output == frame.output
    assert ("gamma" if "--all" in args else "alpha") in fast.output
    assert used == [True]  # the rows were printed without the frame


def test_number_like_text_is_left_to_the_frame():
    """pandas reads a text parameter of numbers as numbers (right-aligned): such a column, or
    a type head.py does not know, gives no Rows (the frame is built as before)."""
    import duckdb
    con = duckdb.connect()
    assert H.rows(con, "SELECT 'p1' AS code, 2 AS x", ["code", "x"]) is not None
    assert H.rows(con, "SELECT '1' AS code, 2 AS x", ["code", "x"]) is None
    assert H.rows(con, "SELECT '1' AS code", []) is not None  # not a parameter: stays text
    assert H.rows(con, "SELECT NULL AS code", ["code"]) is None
    assert H.rows(con, "SELECT 1.5::DECIMAL(4, 1) AS d", []) is None
    got = H.rows(con, "SELECT 'word' AS s, NULL AS e, 1.5::DOUBLE AS f, true AS b", ["s"])
    assert [got[c].numeric for c in got.columns] == [False, False, True, False]


def test_rows_are_used_where_they_print_the_same(project, monkeypatch):
    _plain(project)
    runner = CliRunner()
    used = []
    real = H.rows
    monkeypatch.setattr(H, "rows", lambda *a, **k: used.append(real(*a, **k)) or used[-1])
    outs = []
    for args in (["--limit", "4"], ["--limit", "4", "--all-columns"], ["--limit", "9"]):
        outs.append(runner.invoke(cli, ["results", "h2", *args], terminal_width=200).output)
    assert all(u is not None for u in used) and len(used) == 3
    monkeypatch.setattr(H, "rows", lambda *a, **k: None)
    for args, out in zip((["--limit", "4"], ["--limit", "4", "--all-columns"],
                          ["--limit", "9"]), outs):
        assert runner.invoke(cli, ["results", "h2", *args], terminal_width=200).output == out
    assert "... 2 more rows" in outs[0] and "h2: 6 rows" in outs[2]


def _rows_of(table):
    return sorted(zip(*[table.column(i).to_pylist() for i in range(table.num_columns)]),
                  key=repr)


def test_states_read_as_text_are_the_rows_read_one_by_one(monkeypatch):
    """store/statecols.py (SQLite joins the rows, Arrow parses them) gives exactly the rows the
    row-by-row read gives, and None (that read) where a field could be misread."""
    import sqlite3

    from pushbutton.store import statecols
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE tasks (rowid INTEGER PRIMARY KEY, exp INTEGER, id TEXT, idx INTEGER, "
               "state TEXT, bundle TEXT)")
    rows = [(1, "a" * 20, 0, "done", "e1-r1-000001"), (1, "b" * 20, 1, "failed", "e1-r1-2"),
            (1, "c" * 20, None, "pending", None), (2, "d" * 20, 0, "done", "x"),
            (1, "é" * 20, 5, "done", None), (1, "f" * 20, 3, "running", "b7")]
    db.executemany("INSERT INTO tasks (exp, id, idx, state, bundle) VALUES (?, ?, ?, ?, ?)",
                   rows)
    monkeypatch.setattr(statecols, "CHUNK", 2)  # several windows
    got = statecols.read_states(db, 1, "_pb_idx")
    want = sorted(((t, i, s, b if s == "done" else None) for e, t, i, s, b in rows if e == 1),
                  key=repr)
    assert _rows_of(got) == want
    assert got.column_names == ["pb_task_id", "_pb_idx", "pb_status", "_bundle"]
    assert str(got.schema.field("_pb_idx").type) == "int64"
    assert statecols.read_states(db, 3, "_pb_idx") is None  # none: the row path's empty table
    for bad in ("a\x1fb", "a\nb", "a\rb", ""):
        db.execute("UPDATE tasks SET id = ? WHERE rowid = 1", (bad,))
        assert statecols.read_states(db, 1, "_pb_idx") is None, repr(bad)
    db.execute("UPDATE tasks SET id = 'g', bundle = '' WHERE rowid = 1")
    assert statecols.read_states(db, 1, "_pb_idx") is None  # '' would read as NULL
    db.execute("UPDATE tasks SET bundle = 'b', idx = 'x' WHERE rowid = 1")
    assert statecols.read_states(db, 1, "_pb_idx") is None  # not an integer


def test_results_and_sql_the_same_through_either_state_read(ran, monkeypatch):
    import pushbutton
    from pushbutton.store import statecols
    exp = pushbutton.load(ran / "experiment.toml")
    csv = pb("results", "head", "--all", "--format", "csv").stdout
    real, used = statecols.read_states, []
    monkeypatch.setattr(statecols, "read_states",
                        lambda *a, **k: used.append(real(*a, **k)) or used[-1])
    fast = exp.results()
    assert len(used) == 1 and used[0] is not None and used[0].num_rows == 24
    monkeypatch.setattr(statecols, "read_states", lambda *a, **k: None)
    slow = exp.results()
    assert fast.equals(slow) and len(fast) == 24
    assert list(fast.dtypes) == list(slow.dtypes)
    import io

    import pandas as pd
    assert pd.read_csv(io.StringIO(csv)).shape == (24, len(fast.columns))
