"""The report's statistics from per-group statistics computed elsewhere (a GROUP BY in DuckDB
over 10^6 rows, say): the same tables as `stats.aggregate` and `stats.boundary` give from the
rows themselves, for `pb ui`'s live figures."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis.stats import _crossings, t_quantile, wilson
from pushbutton.core import names as N

__all__ = ["aggregate_stats", "boundary_of_means"]

def aggregate_stats(stats: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
                    ci: float = 0.95, binary: Iterable[str] = ()) -> pd.DataFrame:
    """`aggregate` (without quantiles) from per-group statistics computed elsewhere (e.g. a
    GROUP BY in DuckDB over 10^6 rows): one row per group with the `by` columns, `pb_n` (rows
    in the group) and per metric m: m_count (values that are not NaN), m_mean, m_std (sample
    standard deviation, ddof=1) and m_sum (for a 0/1 metric: its successes). `binary`: the
    metrics that are 0/1 over the whole table (`is_binary`), which get the Wilson interval.
    The same columns, order and `attrs` as `aggregate(df, by, metrics, ci, quantiles=())`."""
    by, metrics, binary = list(by), list(metrics), set(binary)
    src = stats.sort_values(by, na_position="last", kind="stable") if by and len(stats) \
        else stats
    out = src[by + [N.N]].reset_index(drop=True).copy()
    out[N.N] = out[N.N].astype("int64")
    for m in metrics:
        cnt = src[f"{m}_count"].fillna(0).astype("int64").to_numpy()
        mean = src[f"{m}_mean"].to_numpy(float)
        std = np.where(cnt > 1, src[f"{m}_std"].to_numpy(float), math.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            sem = std / np.sqrt(cnt)
        out[f"{m}_count"] = cnt
        out[f"{m}_mean"] = np.where(cnt > 0, mean, math.nan)
        out[f"{m}_std"] = std
        out[f"{m}_sem"] = sem
        if m in binary:
            lo, hi = wilson(src[f"{m}_sum"].fillna(0).to_numpy(float), cnt, ci)
        else:
            tq = np.array([t_quantile(0.5 + ci / 2, k - 1) if k > 1 else math.nan for k in cnt])
            lo, hi = mean - tq * sem, mean + tq * sem
        out[f"{m}_ci_low"] = lo
        out[f"{m}_ci_high"] = hi
    out.attrs = {"by": by, "metrics": metrics, "ci": ci,
                 "intervals": {m: "wilson" if m in binary else "t" for m in metrics}}
    return out


def boundary_of_means(surface: pd.DataFrame, x: str, y: str, mean: str, level: float = 0.5,
                      which: str = "first") -> pd.DataFrame:
    """`boundary` from the surface it interpolates, computed elsewhere: one row per (x, y)
    grid point with the mean of the rate in column `mean` (rows with NaN x, y or mean are
    left out, as `boundary` leaves them out). The same columns as `boundary`."""
    surf = surface[[x, y, mean]].dropna().sort_values([x, y], kind="stable")
    rows = []
    for xv, part in surf.groupby(x, sort=True):
        part = part.sort_values(y)
        cr = _crossings(part[y].to_numpy(float), part[mean].to_numpy(float), level)
        if cr:
            yv, direction = cr[0] if which == "first" else cr[-1]
        else:
            yv, direction = math.nan, None
        rows.append({x: xv, y: yv, "pb_direction": direction, "pb_n_crossings": len(cr)})
    return pd.DataFrame(rows, columns=[x, y, "pb_direction", "pb_n_crossings"])
