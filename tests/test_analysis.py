"""Golden numbers for pushbutton.analysis.stats, each computed independently here (by hand or numpy)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pushbutton.analysis import stats as A
from pushbutton.core.errors import SpecError

# Student t 97.5% quantiles from printed tables (Abramowitz & Stegun 26.10 / any stats text).
T975 = {1: 12.706204736174707, 2: 4.302652729749464, 4: 2.7764451051977934,
        9: 2.2621571627409915, 29: 2.045229642132703, 100: 1.983971518523552}


@pytest.mark.parametrize("dof,value", sorted(T975.items()))
def test_t_quantile_matches_tables(dof, value):
    assert A.t_quantile(0.975, dof) == pytest.approx(value, rel=1e-10)
    assert A.t_quantile(0.025, dof) == pytest.approx(-value, rel=1e-10)


def test_t_quantile_large_dof_tends_to_normal_and_cdf_inverts():
    assert A.t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, rel=1e-12)
    assert A.t_quantile(0.975, 1e6) == pytest.approx(1.9599663568141, rel=1e-10)
    for dof in (1, 3, 17, 250):
        for p in (0.6, 0.9, 0.999):
            assert A.t_cdf(A.t_quantile(p, dof), dof) == pytest.approx(p, abs=1e-12)
    # Cauchy (dof 1) has a closed form: tan(pi (p - 1/2))
    assert A.t_quantile(0.9, 1) == pytest.approx(math.tan(math.pi * 0.4), rel=1e-10)


def _table(rng, reps=5):
    rows = []
    for a in (1, 2, 3):
        for b in ("x", "y"):
            for rep in range(reps):
                rows.append({"pb_task_id": f"{a}{b}{rep}", "a": a, "b": b, "rep": rep,
                             "loss": float(rng.normal(a, 1.0)), "success": bool(rng.random() < .5),
                             "pb_status": "done", "pb_duration_s": 2.0, "pb_error_kind": None,
                             "pb_error": None})
    return pd.DataFrame(rows)


def test_aggregate_against_numpy_by_hand():
    df = _table(np.random.default_rng(1))
    # a failed task with a wild metric must not count by default
    bad = df.iloc[[0]].assign(pb_task_id="bad", pb_status="failed", loss=1e9)
    df = pd.concat([df, bad], ignore_index=True)
    df.attrs["params"] = ["a", "b", "rep"]  # as results() declares them
    agg = A.aggregate(df)  # default by: a, b (rep dropped); default metrics: loss, success
    assert list(agg.columns[:3]) == ["a", "b", "pb_n"]
    assert len(agg) == 6 and (agg["pb_n"] == 5).all()
    for _, row in agg.iterrows():
        sel = df[(df.a == row.a) & (df.b == row.b) & (df.pb_status == "done")]
        v = sel["loss"].to_numpy()
        mean, std = v.mean(), v.std(ddof=1)
        sem = std / math.sqrt(len(v))
        assert row.loss_mean == pytest.approx(mean)
        assert row.loss_std == pytest.approx(std)
        assert row.loss_sem == pytest.approx(sem)
        assert row.loss_ci_low == pytest.approx(mean - T975[4] * sem)
        assert row.loss_ci_high == pytest.approx(mean + T975[4] * sem)
        for q in (0.25, 0.5, 0.75):
            assert row[f"loss_q{100 * q:g}"] == pytest.approx(np.quantile(v, q))
        assert row.success_mean == pytest.approx(sel["success"].mean())
    # everything, by one column, one metric, other ci and quantiles
    agg2 = A.aggregate(df, by="a", metrics="loss", ci=0.99, quantiles=(0.1,), status=None)
    assert list(agg2["pb_n"]) == [11, 10, 10]
    assert "loss_q10" in agg2.columns and "success_mean" not in agg2.columns
    v = df[df.a == 2]["loss"].to_numpy()
    half = A.t_quantile(0.995, 9) * v.std(ddof=1) / math.sqrt(10)
    assert agg2.loc[1, "loss_ci_high"] - agg2.loc[1, "loss_mean"] == pytest.approx(half)


def test_aggregate_single_replicate_and_missing_values():
    df = pd.DataFrame({"pb_task_id": ["1", "2", "3"], "a": [1, 2, 2], "m": [1.0, None, 3.0],
                       "pb_status": ["done"] * 3})
    agg = A.aggregate(df, by=["a"], metrics=["m"])
    assert list(agg["pb_n"]) == [1, 2] and list(agg["m_count"]) == [1, 1]
    assert math.isnan(agg.loc[0, "m_std"]) and math.isnan(agg.loc[0, "m_ci_low"])
    assert agg.loc[1, "m_mean"] == 3.0
    whole = A.aggregate(df, by=[], metrics="m")
    assert len(whole) == 1 and whole.loc[0, "m_mean"] == 2.0


def test_aggregate_unknown_column_lists_columns():
    df = _table(np.random.default_rng(0))
    with pytest.raises(KeyError, match="columns are: .*loss"):
        A.aggregate(df, by=["nope"])


def test_param_and_metric_columns():
    df = _table(np.random.default_rng(0))
    assert A.param_columns(df) == ["a", "b", "rep"]
    assert A.metric_columns(df) == ["loss", "success"]
    pending = df.iloc[[0]].assign(pb_task_id="p", pb_status="pending", loss=None, success=None)
    df2 = pd.concat([df, pending], ignore_index=True)
    assert A.param_columns(df2) == ["a", "b", "rep"]
    df.attrs["params"] = ["a"]
    assert A.param_columns(df) == ["a"]
    # a per-task seed is unique per row but still a parameter, never a metric
    seeded = _table(np.random.default_rng(0)).drop(columns="rep")
    seeded.insert(3, "seed", range(len(seeded)))
    assert A.param_columns(seeded) == ["a", "b", "seed"]
    assert A.metric_columns(seeded) == ["loss", "success"]


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return c - h, c + h


def test_wilson_known_values():
    lo, hi = A.wilson(8, 10)
    assert (round(float(lo), 4), round(float(hi), 4)) == (0.4902, 0.9433)  # published value
    lo, hi = A.wilson(0, 10)
    assert float(lo) == pytest.approx(0.0, abs=1e-15) and float(hi) == pytest.approx(0.2775, abs=1e-4)
    for k, n in [(1, 3), (50, 100), (999, 1000)]:
        assert np.allclose(A.wilson(k, n), _wilson_by_hand(k, n))


def test_success_rate_column_expression_callable():
    df = _table(np.random.default_rng(2), reps=20)
    sr = A.success_rate(df, by="a")
    for _, row in sr.iterrows():
        sel = df[df.a == row.a]
        k = int(sel.success.sum())
        assert row.pb_n == 40 and row.pb_successes == k and row.pb_rate == pytest.approx(k / 40)
        assert (row.pb_ci_low, row.pb_ci_high) == pytest.approx(_wilson_by_hand(k, 40))
    by_expr = A.success_rate(df, by="a", success="loss < 2")
    by_call = A.success_rate(df, by="a", success=lambda d: d["loss"] < 2)
    assert list(by_expr["pb_successes"]) == list(by_call["pb_successes"])
    assert by_expr.loc[0, "pb_successes"] == (df[df.a == 1].loss < 2).sum()
    with pytest.raises(SpecError, match="(?s)unknown column 'lossy'.*columns are: .*loss"):
        A.success_rate(df, success="lossy < 2")


def _logistic_surface(direction=+1, reps=400, scale=0.04):
    """Success fraction exactly round(reps * p) at each grid point, p logistic in (rho - rho*),
    with the true 50% boundary rho*(delta) = 0.2 + 0.5 delta."""
    rows, tid = [], 0
    for delta in np.round(np.linspace(0.1, 0.9, 9), 10):
        for rho in np.round(np.arange(0.0, 1.0001, 0.05), 10):
            p = 1 / (1 + math.exp(-direction * (rho - (0.2 + 0.5 * delta)) / scale))
            k = int(round(reps * p))
            for rep in range(reps):
                rows.append((str(tid), delta, rho, rep, rep < k, "done"))
                tid += 1
    return pd.DataFrame(rows, columns=["pb_task_id", "delta", "rho", "rep", "success", "pb_status"])


@pytest.mark.parametrize("direction,name", [(+1, "up"), (-1, "down")])
def test_boundary_recovers_logistic_midline(direction, name):
    df = _logistic_surface(direction)
    b = A.boundary(df, "delta", "rho", rate="success", level=0.5)
    assert list(b.columns) == ["delta", "rho", "pb_direction", "pb_n_crossings"]
    assert len(b) == 9 and (b["pb_direction"] == name).all() and (b["pb_n_crossings"] == 1).all()
    truth = 0.2 + 0.5 * b["delta"]
    # grid step 0.05, scale 0.04: interpolating the logistic is accurate to well under a step
    assert np.max(np.abs(b["rho"] - truth)) < 0.006


def test_boundary_exact_interpolation_and_no_crossing():
    df = pd.DataFrame({"x": [1, 1, 1, 2, 2, 2, 3, 3, 3], "y": [0, 1, 2] * 3,
                       "r": [0.0, 0.4, 0.8, 0.9, 0.8, 0.6, 0.1, 0.5, 0.9]})
    b = A.boundary(df, "x", "y", rate="r", status=None).set_index("x")
    assert b.loc[1, "y"] == pytest.approx(1.25) and b.loc[1, "pb_direction"] == "up"
    assert math.isnan(b.loc[2, "y"]) and b.loc[2, "pb_n_crossings"] == 0  # never reaches 0.5
    assert b.loc[3, "y"] == 1.0 and b.loc[3, "pb_n_crossings"] == 1  # touches the level at y=1
    lvl = A.boundary(df, "x", "y", rate="r", level=0.7, status=None).set_index("x")
    assert lvl.loc[2, "y"] == pytest.approx(1.5) and lvl.loc[2, "pb_direction"] == "down"


def test_timing_and_failures():
    tb = ("Traceback (most recent call last):\n  File \"t.py\", line 3, in f\n"
          "    raise ValueError('bad rho')\nValueError: bad rho")
    df = pd.DataFrame({
        "pb_task_id": list("abcdef"), "a": [1, 2, 3, 4, 5, 6],
        "pb_status": ["done", "done", "failed", "failed", "pending", "failed"],
        "pb_duration_s": [3600.0, 1800.0, 10.0, 20.0, None, 5.0],
        "pb_error_kind": [None, None, "exception", "exception", None, "timeout"],
        "pb_error": [None, None, tb, tb, None, "timed out after 5 s"],
        "pb_attempts": [1, 1, 3, 3, 0, 1], "pb_host": ["n1", "n2", "n1", "n1", None, "n2"],
        "pb_node": ["c1", "c2", "c1", None, "c1", "c2"],
        "pb_finished_at": [7200.0, 7000.0, 100.0, 200.0, None, 300.0]})
    t = A.timing(df)
    assert t["task_hours"] == pytest.approx((3600 + 1800 + 35) / 3600)  # not CPU-hours
    assert t["task_seconds"] == 3600 + 1800 + 35 and "cpu_hours" not in t
    assert t["duration_mean_s"] == 2700 and t["duration_median_s"] == 2700
    assert t["counts"] == {"done": 2, "failed": 3, "pending": 1}
    assert t["failure_rate"] == pytest.approx(3 / 5)
    assert t["failures_by_kind"] == {"exception": 2, "timeout": 1}
    assert t["retried_tasks"] == 2 and t["hosts"] == {"n1": 3, "n2": 2}
    assert t["wall_s"] == pytest.approx(7200 - (100 - 10))
    # finished tasks per node (the pending one's node, of an earlier attempt, is not counted;
    # a finished one without a node is, apart)
    assert t["nodes"] == [
        {"node": "(not recorded)", "tasks": 1, "failures": 1, "task_s": 20.0,
         "mean_s": pytest.approx(float("nan"), nan_ok=True)},
        {"node": "c1", "tasks": 2, "failures": 1, "task_s": 3610.0, "mean_s": 3600.0},
        {"node": "c2", "tasks": 2, "failures": 1, "task_s": 1805.0, "mean_s": 1800.0}]
    assert A.timing(df.drop(columns=["pb_node"]))["nodes"] == []
    f = A.failures(df)
    assert list(f["count"]) == [2, 1]
    assert f.loc[0, "cause"] == "ValueError: bad rho" and f.loc[0, "example_task"] == "c"
    assert f.loc[0, "traceback_head"].startswith("Traceback") and f.loc[0, "example_params"]["a"] == 3
    assert f.loc[1, "error_kind"] == "timeout"


def test_learning_curves_per_step():
    rows = []
    for lr in (0.1, 0.01):
        for rep in range(3):
            for step in range(4):
                rows.append({"pb_task_id": f"{lr}-{rep}", "lr": lr, "rep": rep, "pb_step": step,
                             "pb_time": step * 0.5, "loss": 1.0 / (1 + step * lr * 10) + rep * 0.01})
    s = pd.DataFrame(rows)
    lc = A.learning_curves(s, by="lr", metric="loss")
    assert len(lc) == 8 and list(lc.columns[:3]) == ["lr", "pb_step", "pb_n"]
    row = lc[(lc.lr == 0.1) & (lc.pb_step == 2)].iloc[0]
    expect = np.mean([1.0 / 3 + r * 0.01 for r in range(3)])
    assert row.loss_mean == pytest.approx(expect) and row.pb_n == 3
    default = A.learning_curves(s, metric="loss")  # by defaults to lr (rep averaged)
    assert list(default.columns[:2]) == ["lr", "pb_step"] and len(default) == 8


def test_aggregate_gives_0_1_metrics_the_wilson_interval():
    # 5/5, 0/5 and 3/5 successes, as booleans and as 0/1 numbers; a t interval would be [1, 1],
    # [0, 0] and leave [0, 1] for small groups
    k = {1: 5, 2: 0, 3: 3}
    rows = [{"pb_task_id": f"{a}-{r}", "a": a, "rep": r, "ok": r < k[a], "hit": int(r < k[a]),
             "loss": float(a + r), "pb_status": "done"} for a in (1, 2, 3) for r in range(5)]
    df = pd.DataFrame(rows)
    df.attrs["params"] = ["a", "rep"]
    agg = A.aggregate(df).set_index("a")
    assert agg.attrs["intervals"] == {"ok": "wilson", "hit": "wilson", "loss": "t"}
    for a, kk in k.items():
        lo, hi = A.wilson(kk, 5)
        for m in ("ok", "hit"):
            assert agg.loc[a, f"{m}_ci_low"] == pytest.approx(lo)
            assert agg.loc[a, f"{m}_ci_high"] == pytest.approx(hi)
            assert 0 <= agg.loc[a, f"{m}_ci_low"] <= agg.loc[a, f"{m}_ci_high"] <= 1
    assert agg.loc[1, "ok_ci_low"] == pytest.approx(0.5655, abs=1e-4)  # not 1: 5/5 is no proof
    assert agg.loc[2, "ok_ci_high"] == pytest.approx(0.4345, abs=1e-4)
    v = np.arange(5, dtype=float) + 3  # loss keeps its Student t interval
    assert agg.loc[3, "loss_ci_low"] == pytest.approx(v.mean() - T975[4] * v.std(ddof=1) / 5 ** .5)
    # a number that is 1 everywhere is a constant, not a rate; a boolean is always a rate
    assert not A.is_binary(pd.Series([1, 1, 1])) and A.is_binary(pd.Series([True, True]))
    assert not A.is_binary(pd.Series([0.0, 0.5, 1.0])) and A.is_binary(pd.Series([0, 1, None]))
