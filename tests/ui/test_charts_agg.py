"""The live figures aggregated in DuckDB (ui/charts_agg.py) against the full-frame path
(ui/charts.py, itself tested against the report's figures): the same figures, numbers, titles
and notes, on tables with failures, pending tasks, NaN and missing metrics and 0/1 metrics."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from _report_data import make_context  # noqa: E402

from pushbutton.analysis import figure_specs as FS  # noqa: E402
from pushbutton.analysis import grouped as G2  # noqa: E402
from pushbutton.analysis import stats as A  # noqa: E402
from pushbutton.ui import charts as C  # noqa: E402
from pushbutton.ui import charts_agg as G  # noqa: E402

ROW = "_row"


def _table(states: str):
    """The report's test table, with more metrics (NaN and None values, an integer 0/1
    metric, a constant one), stored as Parquet and read back both ways: the full frame (as
    `exp.results()` gives it) and the DuckDB table."""
    ctx = make_context(states)
    df = ctx["results_df"].copy()
    rng = np.random.default_rng(1)
    done = df["pb_status"] == "done"
    df["hit"] = np.where(done, (rng.random(len(df)) < 0.4).astype(float), np.nan)
    score = rng.normal(10, 2, len(df))
    score[::7] = np.nan  # NaN values among done tasks
    df["score"] = np.where(done, score, np.nan)
    df.loc[(df["delta"] == 0.1) & (df["rho"] == 0.0), "score"] = np.nan  # a cell with no value
    df["const"] = np.where(done, 1.0, np.nan)
    df[ROW] = range(len(df))
    con = duckdb.connect()
    con.register("src", df)
    con.execute("CREATE TABLE t AS SELECT * FROM src")
    full = con.execute(f"SELECT * EXCLUDE ({ROW}) FROM t ORDER BY {ROW}").df()
    params, metrics = ["delta", "rho", "method", "rep"], ["success", "err", "hit", "score",
                                                          "const"]
    full.attrs["params"], full.attrs["metrics"] = params, metrics
    return full, G.Table(con, "t", params, metrics, ROW), ctx


def same(a, b, where="") -> None:
    """Equal structures, strings and ints; floats to 1e-9 relative."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, str) and b is not None:
        assert math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-12) or \
            (math.isnan(a) and math.isnan(float(b))), (where, a, b)
    else:
        assert a == b, (where, a, b)


DECLS = [
    {"kind": "heatmap", "x": "delta", "y": "rho", "value": "success", "boundary": 0.5},
    {"kind": "heatmap", "x": "method", "y": "rho", "value": "hit", "boundary": True},
    {"kind": "heatmap", "x": "delta", "y": "rho", "value": "score"},
    {"kind": "heatmap", "x": "delta", "y": "rho", "value": "err < 0.1", "boundary": True},
    {"kind": "line", "x": "rho", "y": "err", "hue": "method", "err": "ci", "logy": True},
    {"kind": "line", "x": "rho", "y": "success", "hue": "delta"},
    {"kind": "line", "x": "delta", "y": "hit"},
    {"kind": "line", "x": "rho", "y": "score", "hue": "method", "err": "std"},
    {"kind": "line", "x": "delta", "y": "const", "err": "ci"},
    {"kind": "histogram", "column": "pb_duration_s"},
    {"kind": "histogram", "column": "score", "hue": "method"},
    {"kind": "histogram", "column": "err", "hue": "delta", "bins": 7, "logy": True},
    {"kind": "learning_curves", "metric": "loss", "hue": "delta"},
]


@pytest.mark.parametrize("states", ["failures", "half", "finished"])
def test_aggregated_figures_are_the_full_frame_figures(states):
    full, t, ctx = _table(states)
    series = ctx["series_df"]
    a = G.figures(t, series, DECLS, ctx["units"])
    b = C.figures(full, series, DECLS, ctx["units"])
    assert a["problems"] == b["problems"] == []
    assert len(a["figures"]) == len(DECLS)
    for fa, fb in zip(a["figures"], b["figures"]):
        same(fa, fb, fa["name"])
    # the automatic figures too (no [[figures]] declared)
    auto = G.auto_declarations(t, series)
    assert auto == FS.auto_declarations(full, series) and auto
    same(G.figures(t, series, None), C.figures(full, series, None), "auto")
    # throughput and timing from the table's aggregates, as from every row
    from pushbutton.ui import charts_data as D
    counts = full["pb_status"].value_counts().to_dict()
    same(D.throughput_from_table(t, counts, buckets=37), D.throughput(full, counts, buckets=37),
         "throughput")
    for cpus in (None, 4):
        assert D.timing_from_table(t, cpus) == D.timing(full, cpus)


def test_the_aggregates_are_those_of_aggregate_and_boundary():
    full, t, _ = _table("failures")
    out = G.line(t, "rho", "score", hue="method")
    # the statistics behind the error bars, from the group statistics
    agg = A.aggregate(full, by=["rho", "method"], metrics=["score", "hit"], quantiles=())
    stats = full[full["pb_status"] == "done"].groupby(["rho", "method"]).agg(
        pb_n=("score", "size"), score_count=("score", "count"), score_mean=("score", "mean"),
        score_std=("score", "std"), score_sum=("score", "sum"), hit_count=("hit", "count"),
        hit_mean=("hit", "mean"), hit_std=("hit", "std"), hit_sum=("hit", "sum")).reset_index()
    mine = G2.aggregate_stats(stats, ["rho", "method"], ["score", "hit"], binary={"hit"})
    assert list(mine.columns) == list(agg.columns) and mine.attrs == agg.attrs
    pd.testing.assert_frame_equal(mine, agg, check_dtype=False, rtol=1e-12)
    assert agg.attrs["intervals"] == {"score": "t", "hit": "wilson"}
    b = A.boundary(full, "delta", "rho", rate="success", level=0.5)
    surf = full[full["pb_status"] == "done"].assign(
        m=lambda d: d["success"].astype(float)).groupby(["delta", "rho"])["m"].mean()
    pd.testing.assert_frame_equal(G2.boundary_of_means(surf.reset_index(), "delta", "rho", "m"),
                                  b)
    assert out["plotly"]["data"] and out["notes"]


def test_bin_edges_are_numpys():
    rng = np.random.default_rng(3)
    for a in (rng.lognormal(0, 1, 1000), rng.integers(0, 5, 77).astype(float), np.ones(9),
              np.array([2.5]), rng.normal(0, 1, 12345)):
        q1, q3 = np.percentile(a, [25, 75])
        for bins in ("auto", 1, 13):
            np.testing.assert_array_equal(
                G.bin_edges(len(a), a.min(), a.max(), q1, q3, bins),
                np.histogram_bin_edges(a, bins=bins))


def test_a_real_store_gets_the_same_payload_from_the_aggregates(tmp_path):
    """On a real run (failures, a hostile name, series): the figures and throughput computed
    over the DuckDB table the pages read equal those of the full table (`compute`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _charts_project import make_project

    from pushbutton.store.database import Store
    from pushbutton.ui import charts_data as D
    from pushbutton.ui.results import Tables
    make_project(tmp_path)
    store, tables = Store(tmp_path, create=False), Tables()
    try:
        eid = store.experiment("phase")
        snap = tables.get(store, eid, "phase")
        a = D.compute_from_table(store, eid, "phase", "v", snap)
        b = D.compute(store, eid, "phase", "v")
        assert a["figures"]["problems"] == [] and len(a["figures"]["figures"]) == 3
        same(a, b, "payload")
        # and the served one is this (ChartData over the same tables)
        cd = D.ChartData(lambda: Store(tmp_path, create=False), tables=tables)
        served = cd.snapshot("phase")
        same(served["figures"], b["figures"], "served")
        assert served["throughput"]["timing"] == b["throughput"]["timing"]
    finally:
        store.close()
        tables.close()


def test_a_table_waits_for_the_lock_of_a_busy_connection():
    """The charts' Table shares the copy's DuckDB connection with the results page, which
    queries it under the copy's lock; DuckDB refuses a call on a connection busy with
    another ("connection is busy"): a 500 on the throughput request while a results query
    ran. Table asks for the columns under the lock too."""
    import threading
    import time
    con = duckdb.connect(config={"threads": 1})
    con.execute("CREATE TABLE t AS SELECT 1 AS row, 'done' AS pb_status, 2.0 AS y")
    lock = threading.Lock()
    started, errors = threading.Event(), []

    def busy():
        with lock:
            started.set()
            con.execute("SELECT sum(i * i) FROM range(300000000) r(i)").fetchone()
    a = threading.Thread(target=busy)
    a.start()
    started.wait()
    time.sleep(0.2)  # the query runs now
    try:
        t = G.Table(con, "t", [], ["y"], "row", lock=lock)
    except duckdb.Error as e:
        errors.append(e)
    a.join()
    assert errors == [] and t.metrics == ["y"] and t.types["pb_status"] == "VARCHAR"
