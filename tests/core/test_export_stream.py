"""`pb results --format csv|json|parquet` is written by DuckDB's COPY (store/export.py), not
through a pandas frame: the same columns, names, order and values as the frame
(`views.results`, what `exp.results()` returns), for a store with failed tasks, results of an
earlier run that a --rerun replaced, and user names that are also bookkeeping words."""
import csv
import datetime as dt
import json
import math

import pytest

from .conftest import pb, write

TASK = '''
import math
from pathlib import Path


def f(n, host, status, rep, **_):
    bad = Path("fail.txt").read_text().split()
    if str(n) in bad and rep == 0:
        raise ValueError("n=%d, fails" % n)
    return {"error": n / 3 + rep, "duration_s": 100.0 + n, "y": math.nan if n == 1 else n * 0.1,
            "big": math.inf if n == 2 else -1.5, "k": None if n == 3 else n * 10,
            "ok": n % 2 == 0, "text": 'a,"b"\\nc' if n == 2 else "plain"}
'''

SPEC = '''
name = "exp_stream"
function = "export_task:f"
[space]
grid = { n = [1, 2, 3, 4], host = ["alpha", "beta"], status = ["on"] }
reps = 2
'''

TIMES = ("pb_finished_at",)


@pytest.fixture
def store(project):
    """Run 1: tasks with n=3, rep 0 fail. Run 2 (--rerun): n=2, rep 0 fail instead, so the
    parts hold run 1's rows of tasks that are failed now."""
    write(project / "export_task.py", TASK)
    write(project / "spec.toml", SPEC)
    write(project / "fail.txt", "3")
    pb("run", "spec.toml", "--yes", check=False)
    write(project / "fail.txt", "2")
    pb("run", "spec.toml", "--yes", "--rerun", check=False)
    return project


def _frame(project, **kw):
    from pushbutton.store.database import Store
    from pushbutton.store.views import results
    st = Store(project, create=False)
    try:
        eid = next(e["id"] for e in st.experiments() if e["name"] == "exp_stream")
        return results(st, eid, "exp_stream", all_tasks=True, **kw)
    finally:
        st.close()


def _missing(v) -> bool:
    import pandas as pd
    return v is None or (not isinstance(v, (list, dict, str)) and bool(pd.isna(v)))


def _iso(t) -> str:
    from pushbutton.cli.tables import iso_utc
    return iso_utc(t, 3)


def _same_text(s: str, v, col: str) -> bool:
    """A CSV field against the frame's value."""
    if _missing(v):
        return s == ""
    if col in TIMES:
        return s == _iso(v)
    if isinstance(v, (bool,)) or type(v).__name__ == "bool_":
        return s.lower() == str(bool(v)).lower()
    if isinstance(v, str):
        return s == v
    return float(s) == float(v)


def _same_json(x, v, col: str) -> bool:
    if _missing(v) or (isinstance(v, float) and math.isinf(v)):
        return x is None  # pandas wrote NaN and inf as null
    if col in TIMES:
        return x == _iso(v)
    if isinstance(v, str):
        return x == v
    return x == v and type(x) is not str  # full precision (pandas rounded to 10 decimals)


def _same_parquet(x, v, col: str) -> bool:
    if _missing(v):
        return x is None
    if col in TIMES:
        return isinstance(x, dt.datetime) and x.tzinfo is not None and \
            abs(x.timestamp() - v) < 1e-6
    return x == v


def _check(project, path, fmt, df):
    cols = list(df.columns)
    recs = df.to_dict("records")
    if fmt == "csv":
        with open(path, newline="") as f:
            rd = csv.reader(f)
            head = next(rd)
            rows = [dict(zip(head, r)) for r in rd]
        same = _same_text
    elif fmt == "json":
        lines = path.read_text().splitlines()
        rows = [json.loads(x) for x in lines]
        head = list(rows[0]) if rows else cols
        same = _same_json
    else:
        import pyarrow.parquet as pq
        t = pq.read_table(path)
        head, rows = t.column_names, t.to_pylist()
        same = _same_parquet
    assert head == cols
    assert len(rows) == len(recs)
    for got, want in zip(rows, recs):
        for c in cols:
            assert same(got[c], want[c], c), (fmt, c, got[c], want[c])


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_equals_the_frame_value_by_value(store, fmt):
    df = _frame(store)
    assert set(df["pb_status"]) == {"done", "failed"}
    assert list(df.columns[:5]) == ["pb_task_id", "n", "host", "status", "rep"]
    out = store / f"all.{fmt}"
    r = pb("results", "--format", fmt, "-o", out)
    assert f"wrote {len(df):,} rows to" in r.stderr
    _check(store, out, fmt, df)
    # the rows of run 1 (some replaced since), a where and a limit: the same rows as the frame's
    for kw, args in (({"run": 1}, ["--run", "1"]),
                     ({"where": "n >= 2 AND status = 'on'", "limit": 5},
                      ["--where", "n >= 2 AND status = 'on'", "--limit", "5"])):
        part = _frame(store, **kw)
        assert 0 < len(part) < len(df)
        pb("results", "--format", fmt, "-o", out, *args)
        _check(store, out, fmt, part)


def test_stdout_is_the_file(store):
    for fmt in ("csv", "json"):
        pb("results", "--format", fmt, "-o", store / f"x.{fmt}")
        assert pb("results", "--format", fmt).stdout == (store / f"x.{fmt}").read_text()
    r = pb("results", "--format", "parquet", check=False)
    assert r.returncode != 0 and "needs -o FILE.parquet" in r.stderr
    assert "Traceback" not in r.stderr
    (store / "adir").mkdir()
    r = pb("results", "--format", "csv", "-o", store / "adir", check=False)
    assert r.returncode != 0 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    r = pb("results", "--format", "csv", "--where", "nosuch > 1", check=False)
    assert r.returncode != 0 and "nosuch" in r.stderr and "Traceback" not in r.stderr
    assert not list(store.glob(".pb-export-*"))  # nothing left behind


def test_export_builds_no_frame(store, monkeypatch, tmp_path):
    """The export never asks for the results as a frame nor writes through pandas."""
    import pandas as pd

    from pushbutton.cli.main import main
    from pushbutton.store import views

    def boom(*a, **k):
        raise AssertionError("the export went through a pandas frame")
    df = _frame(store)
    monkeypatch.setattr(views, "results", boom)
    for m in ("to_csv", "to_json", "to_parquet"):
        monkeypatch.setattr(pd.DataFrame, m, boom)
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"o.{fmt}"
        main(["results", "--format", fmt, "-o", str(out)])
        _check(store, out, fmt, df)


def test_what_duckdb_cannot_spill_is_retried_at_its_default_limit(store, monkeypatch, tmp_path):
    """An export that runs out of its memory limit is written again with DuckDB's default
    limit, not failed (the limit bounds the usual export; a user's file must still come)."""
    import duckdb

    from pushbutton.cli.main import main
    from pushbutton.store import export
    real, limits = export._write, []

    def once_short(*a):
        limits.append(a[-1])
        if len(limits) == 1:
            raise duckdb.OutOfMemoryException("could not allocate block")
        return real(*a)
    monkeypatch.setattr(export, "_write", once_short)
    out = tmp_path / "o.csv"
    main(["results", "--format", "csv", "-o", str(out), "--where", "n > 1"])
    assert limits == [export.MEMORY, None]
    _check(store, out, "csv", _frame(store, where="n > 1"))
