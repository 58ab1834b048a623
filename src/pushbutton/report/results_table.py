"""The report's results table: one row per parameter point, the statistics of each metric over
its finished replicates, every number with the same significant digits.

The intervals are those of `analysis.stats.aggregate`, the same the figures draw: the Student-t
interval of the mean, or for a 0/1 metric the Wilson score interval of the rate (shown as the
rate with k/n). The note under the table says which, and says so when a metric that is never
negative has an interval of the mean reaching below 0 (it bounds the mean, not the values).
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.core import names as N

DIGITS = 4  # significant digits of every statistic in the table
SEM_DIGITS = 2  # of a standard error (its own precision is rarely better than that)


def sig(v, digits: int = DIGITS) -> str:
    """`v` with exactly `digits` significant digits (trailing zeros kept: 0.1000, 12.30);
    scientific notation below 1e-3 and from 1e4 on; '–' for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v):
        return "–"
    f = float(v)
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "0"
    e = int(f"{f:.{digits - 1}e}".split("e")[1])  # the exponent after rounding (9.99996 -> 1)
    if e < -3 or e >= 4:
        return f"{f:.{digits - 1}e}"
    return f"{f:.{max(digits - 1 - e, 0)}f}"


def _cell(v, text: str, num: bool = True) -> dict:
    real = isinstance(v, numbers.Real) and not isinstance(v, bool) and not (
        isinstance(v, float) and math.isnan(v))
    return {"text": text, "sort": repr(float(v)) if real else "", "num": num}


def results_table(ctx: dict, df: pd.DataFrame | None, outdir: Path, cell) -> dict | None:
    """Aggregated results for the template (`cell`: the report's cell of a parameter value);
    writes `aggregated.csv` beside the report."""
    if df is None or df.empty:
        return None
    if N.STATUS in df.columns and not (df[N.STATUS] == "done").any():
        return {"empty": True}
    by = ctx.get("aggregate_by")
    if by is None:
        by = [p for p in (ctx.get("params") or A.param_columns(df)) if p not in A.REPLICATE]
    metrics = ctx.get("metrics") or A.metric_columns(df)
    metrics = [m for m in metrics if m in df.columns and A._is_numeric(df[m])]
    ci = float(ctx.get("ci", 0.95))
    agg = A.aggregate(df, by=by, metrics=metrics, ci=ci, quantiles=(0.5,))
    kinds = agg.attrs["intervals"]
    agg.to_csv(outdir / "aggregated.csv", index=False)
    # friendly headers, but never one that reads as a user's column of the same table
    taken = set(by)

    def head(friendly, column):
        return friendly if friendly not in taken else column
    headers = [*by, head("replicates", N.N)]
    num = [pd.api.types.is_numeric_dtype(agg[c]) and not pd.api.types.is_bool_dtype(agg[c])
           for c in by] + [True]
    for m in metrics:
        if kinds[m] == "wilson":
            headers += [head(f"{m}: rate (k/n)", f"{m}_mean"),
                        head(f"{m}: {ci:.0%} Wilson interval", f"{m}_ci_low")]
            num += [True, True]
        else:
            headers += [head(f"{m}: mean ± s.e.m.", f"{m}_mean"),
                        head(f"{m}: {ci:.0%} CI of the mean", f"{m}_ci_low"),
                        head(f"{m}: median", f"{m}_q50")]
            num += [True, True, True]
    rows = []
    for rec in agg.head(ctx.get("max_rows", 2000)).to_dict("records"):
        r = [cell(rec[c]) for c in by] + [_cell(rec[N.N], str(int(rec[N.N])))]
        for m in metrics:
            r += _metric_cells(rec, m, kinds[m])
        rows.append(r)
    return {"empty": False, "headers": headers, "num": num, "rows": rows, "total": len(agg),
            "shown": len(rows), "csv": "aggregated.csv", "by": by, "metrics": metrics,
            "notes": _notes(df, agg, metrics, kinds, ci) + _absent(df, agg, by)}


def _metric_cells(rec: dict, m: str, kind: str) -> list[dict]:
    mean, sem, lo, hi = (rec[f"{m}_{s}"] for s in ("mean", "sem", "ci_low", "ci_high"))
    ci_txt = "–" if lo is None or math.isnan(lo) else f"[{sig(lo)}, {sig(hi)}]"
    if kind == "wilson":
        n = rec[f"{m}_count"]
        k = round(mean * n) if n and not math.isnan(mean) else 0
        return [_cell(mean, f"{sig(mean)} ({k}/{int(n)})" if n else "–"), _cell(lo, ci_txt)]
    txt = sig(mean) + ("" if sem is None or math.isnan(sem) else f" ± {sig(sem, SEM_DIGITS)}")
    return [_cell(mean, txt), _cell(lo, ci_txt), _cell(rec[f"{m}_q50"], sig(rec[f"{m}_q50"]))]


def _absent(df, agg, by) -> list[str]:
    """Points that have tasks but no finished replicate are said, not silently absent."""
    if not by or N.STATUS not in df.columns:
        return []
    points = df[by].drop_duplicates()
    merged = points.merge(agg[by].drop_duplicates(), on=by, how="left", indicator=True)
    absent = merged[merged["_merge"] == "left_only"][by]
    if not len(absent):
        return []
    n = len(absent)
    shown = "; ".join(", ".join(f"{c}={v}" for c, v in zip(by, row))
                      for row in absent.head(3).itertuples(index=False))
    return [f"{n} point{'s' * (n != 1)} of the space {'have' if n != 1 else 'has'} no finished "
            f"replicate and {'are' if n != 1 else 'is'} not in the table ({shown}"
            f"{'; ...' if n > 3 else ''}): every task there failed or is not done (see "
            "Failures)."]


def _notes(df, agg, metrics, kinds, ci) -> list[str]:
    """What the intervals are, in words (the figures' captions say the same of their bars)."""
    done = A._done(df, "done")
    t = [m for m in metrics if kinds[m] == "t"]
    w = [m for m in metrics if kinds[m] == "wilson"]
    out = [f"Numbers have {DIGITS} significant digits (standard errors {SEM_DIGITS})."]
    if t:
        out.append(f"{', '.join(t)}: mean ± standard error of the mean over the replicates "
                   f"that finished, and the {ci:.0%} confidence interval of the mean (Student t).")
    if w:
        out.append(f"{', '.join(w)}: a 0/1 metric, so the rate (k successes of n replicates) "
                   f"and its {ci:.0%} Wilson score interval, which stays inside [0, 1].")
    for m in t:
        vals = A._to_float(done[m]).dropna()
        low = agg[f"{m}_ci_low"].to_numpy(float)
        below = int(np.sum(low < 0))
        if len(vals) and (vals >= 0).all() and below:
            out.append(f"{m} is never negative, yet its interval of the mean reaches below 0 at "
                       f"{below} point{'s' if below != 1 else ''} (few or spread-out "
                       "replicates): it bounds the mean, not the values.")
    return out


def boundary_table(b: dict, fmt) -> dict:
    """The boundary a phase diagram draws, as numbers: per x, the y where the value crosses
    the level, its direction and how many crossings there were (more than one: noise or a
    non-monotone value; the first is drawn)."""
    x, y, value, level, t = b["x"], b["y"], b["value"], b["level"], b["table"]
    rows = []
    for rec in t.to_dict("records"):
        yv, n = rec[y], int(rec["pb_n_crossings"])
        found = not (yv is None or (isinstance(yv, float) and math.isnan(yv)))
        direction = {"up": "rises with " + y, "down": "falls with " + y}.get(
            rec["pb_direction"], "")
        rows.append([_cell(rec[x], fmt(rec[x]), num=isinstance(rec[x], numbers.Real)),
                     _cell(yv, sig(yv) if found else "no crossing"),
                     _cell(0, direction, num=False), _cell(n, str(n) + (" (first shown)"
                                                                     if n > 1 else ""))])
    return {"title": f"Boundary: {y} where the mean of {value} crosses {level:g}",
            "headers": [x, f"{y} at {value} = {level:g}", "direction", "crossings"], "rows": rows}
