"""A small sweep starts like a script: `pb run` imports no pandas (pyarrow loads it at its first
conversion of Python objects, 0.4-0.7 s; ingest builds its arrays from buffers, core/arrays.py),
on the Arrow fast path of ingest and on the line-by-line path alike, and still records every
task in SQLite and Parquet. A small run (execution/driver.small_run) imports neither pyarrow nor
numpy (its parts are written by store/parquet_plain.py), nor what only other commands need."""
import csv
import io
import os
import subprocess
import sys

import pytest

from .conftest import pb
from .test_cli_imports import _imported

SPEC = """
name = "{name}"
function = "tasks:mixed"
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = 1
bundle_size = {n}
"""

# what a small local run never needs: the Arrow/NumPy stack, DuckDB and pandas (readers), the
# analysis and report floors, the dashboard and its web stack, the cluster machinery
NOT_IN_SMALL_RUN = ("pyarrow", "numpy", "pandas", "duckdb", "matplotlib", "jinja2", "rich",
                    "starlette", "uvicorn", "dask", "distributed", "cloudpickle")
NOT_IN_SMALL_RUN_PB = ("pushbutton.analysis", "pushbutton.report", "pushbutton.ui",
                       "pushbutton.clusters", "pushbutton.execution.slurm.submit",
                       "pushbutton.execution.backends.dask", "pushbutton.store.views")


def _run(project, name, n, env=None):
    (project / "experiment.toml").write_text(SPEC.format(name=name, n=n))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pushbutton", "run",
                        "experiment.toml", "--quiet"], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, **(env or {})))
    failed = len([i for i in range(n) if i % 97 == 5])
    assert r.returncode == (1 if failed else 0), r.stdout + r.stderr  # 1: tasks failed
    assert f"{n - failed} done, {failed} failed" in r.stdout
    return r


def _rows(name, n):
    rows = list(csv.DictReader(io.StringIO(
        pb("results", name, "--format", "csv", "--limit", "0").stdout)))
    assert sorted(int(x["i"]) for x in rows) == list(range(n))
    assert sorted(int(x["i"]) for x in rows if x["pb_status"] == "done") == [
        i for i in range(n) if i % 97 != 5]
    row = next(x for x in rows if x["i"] == "8")
    assert row["vec"] == "[8, 9]" and row["cfg"] == '{"a": 8}' and row["sometimes"] == "8"
    return rows


@pytest.mark.parametrize("n", [1500, 40])  # >= 512 lines per chunk: the Arrow path; fewer: not
def test_pb_run_imports_no_pandas_and_records_every_task(project, n):
    name = f"imp{n}"
    r = _run(project, name, n, env={"PB_SMALL_RUN": "0"})  # not a small run: Arrow's paths
    names = _imported(r.stderr)
    assert "pyarrow" in names  # the log is read right: the run wrote Parquet with pyarrow
    assert "pandas" not in names, "pb run imported pandas"
    _rows(name, n)


@pytest.mark.parametrize("n", [1500, 40])
def test_small_run_imports_no_pyarrow_and_records_the_same_table(project, n):
    """The same sweep as a small run: nothing of NOT_IN_SMALL_RUN imported, and `pb results`
    gives the table the Arrow path gives (same columns, types as written, values)."""
    r = _run(project, f"small{n}", n)
    log = r.stderr
    names = _imported(log)
    assert "pushbutton" in names and "sqlite3" in names  # the log is read right
    assert not names & set(NOT_IN_SMALL_RUN), sorted(names & set(NOT_IN_SMALL_RUN))
    mods = {line.rsplit("|", 1)[1].strip() for line in log.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}
    pbmods = [m for m in mods if m.startswith(NOT_IN_SMALL_RUN_PB)]
    assert not pbmods, pbmods
    parts = sorted((project / ".pushbutton" / "results" / f"small{n}").glob("*.parquet"))
    assert parts and all(p.read_bytes()[:4] == b"PAR1" for p in parts)
    small = _rows(f"small{n}", n)
    _run(project, f"arrow{n}", n, env={"PB_SMALL_RUN": "0"})
    arrow = _rows(f"arrow{n}", n)
    skip = {"pb_duration_s", "pb_finished_at", "pb_host", "pb_node", "pb_run_id", "pb_error"}
    assert list(small[0]) == list(arrow[0])
    for a, b in zip(small, arrow):
        assert {k: v for k, v in a.items() if k not in skip} == \
            {k: v for k, v in b.items() if k not in skip}
    import pyarrow.parquet as pq
    want = pq.read_schema(next((project / ".pushbutton" / "results" / f"arrow{n}")
                               .glob("*.parquet")))
    got = pq.read_schema(parts[0])
    assert [(f.name, f.type) for f in got] == [(f.name, f.type) for f in want]
    assert got.metadata[b"pushbutton"] == want.metadata[b"pushbutton"]


def test_arrays_match_pyarrow_conversion():
    """core/arrays.py builds what pa.array builds, for every JSON scalar column it is given."""
    import pyarrow as pa
    from pushbutton.core import arrays
    cases = [[1, 2, None], [1.5, 2, None], [True, None, False], ["a", None, "é"], [None, None],
             [], [2**63 - 1, -2**63], list(range(20)) + [None]]
    for values in cases:
        assert arrays.array(values).equals(pa.array(values)), values
    assert arrays.strings(["x"] * 3).equals(pa.array(["x"] * 3, pa.string()))
    assert arrays.floats([1, None]).equals(pa.array([1.0, None], pa.float64()))
    import numpy as np
    assert arrays.ints(np.arange(3)).equals(pa.array([0, 1, 2], pa.int64()))  # row numbers
    assert arrays.ints(pa.array([0, 2], pa.uint64())).equals(pa.array([0, 2], pa.int64()))
    for mixed in ([1, "a"], [True, 1], [[1], None], [{"a": 1}]):
        with pytest.raises(pa.ArrowInvalid):
            arrays.array(mixed)
    with pytest.raises(OverflowError):
        arrays.array([2**64])
    with pytest.raises(pa.ArrowTypeError):
        arrays.strings(["a", 1])
