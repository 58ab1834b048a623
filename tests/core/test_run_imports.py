"""A small sweep starts like a script: `pb run` imports no pandas (pyarrow loads it at its first
conversion of Python objects, 0.4-0.7 s; ingest builds its arrays from buffers, core/arrays.py),
on the Arrow fast path of ingest and on the line-by-line path alike, and still records every
task in SQLite and Parquet."""
import csv
import io
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


@pytest.mark.parametrize("n", [1500, 40])  # >= 512 lines per chunk: the Arrow path; fewer: not
def test_pb_run_imports_no_pandas_and_records_every_task(project, n):
    name = f"imp{n}"
    (project / "experiment.toml").write_text(SPEC.format(name=name, n=n))
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pushbutton", "run",
                        "experiment.toml", "--quiet"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: some tasks failed (on purpose)
    names = _imported(r.stderr)
    assert "pyarrow" in names  # the log is read right: the run wrote Parquet
    assert "pandas" not in names, "pb run imported pandas"
    failed = len([i for i in range(n) if i % 97 == 5])
    assert f"{n - failed} done, {failed} failed" in r.stdout
    rows = list(csv.DictReader(io.StringIO(
        pb("results", name, "--format", "csv", "--limit", "0").stdout)))
    assert sorted(int(x["i"]) for x in rows) == list(range(n))
    assert sorted(int(x["i"]) for x in rows if x["pb_status"] == "done") == [
        i for i in range(n) if i % 97 != 5]
    row = next(x for x in rows if x["i"] == "8")
    assert row["vec"] == "[8, 9]" and row["cfg"] == '{"a": 8}' and row["sometimes"] == "8"


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
