"""Analysis of the results table: plain functions on DataFrames (numpy + pandas only).

Every function takes the table `exp.results()` (or `exp.series()`) returns, so an Experiment can
expose them as methods later by passing its own frame. Only rows with `pb_status == "done"`
count unless `status=None` is given: a failed or pending task has no metrics to average.

Columns pushbutton adds carry the pb_ prefix, in the tables read here and in the ones returned
(`pb_n`, `pb_rate`, ...), so a user's parameter or metric named `n` or `rate` never clashes; a
per-metric statistic (`error_mean`) that would equal a user's column name is an error, never an
overwrite. Expression strings (`success=`, `value=`) use the safe language of a space's `where`.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis.student_t import t_cdf, t_quantile
from pushbutton.core import causes
from pushbutton.core import names as N

# Columns of the results/series tables that are neither parameters nor metrics: every name with
# the pb_ prefix (names.py); these are the ones the tables have.
RESERVED = (N.TASK_ID, *N.TAIL, N.BUNDLE, N.STEP, N.TIME)
# Parameters that index replicates: averaged over, never grouped by.
REPLICATE = ("rep", "seed")

__all__ = ["param_columns", "metric_columns", "aggregate", "is_binary", "success_rate", "wilson",
           "boundary",
           "timing", "failures", "learning_curves", "t_quantile", "t_cdf"]


# --------------------------------------------------------------------------- column roles
def _candidates(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if not N.reserved(c)]


def param_columns(df: pd.DataFrame) -> list[str]:
    """The parameter columns, in table order.

    `results()` declares them in `df.attrs["params"]`. Without that, a column is a parameter if it
    is filled on pending/failed rows too (metrics are empty there); with only finished rows the
    leading run of repeated, non-boolean columns is taken (the contract puts parameters first).
    """
    declared = df.attrs.get("params")
    if declared is not None:
        return [c for c in declared if c in df.columns]
    cand = _candidates(df)
    if N.STATUS in df.columns:
        undone = df[df[N.STATUS] != "done"]
        if len(undone):
            return [c for c in cand if undone[c].notna().all()]
    out = []
    for i, c in enumerate(cand):
        s = df[c]
        if c in REPLICATE:  # unique per row, yet a parameter
            out.append(c)
            continue
        if s.dtype == bool or (i > 0 and s.nunique(dropna=False) >= len(df)):
            break
        out.append(c)
    return out


def metric_columns(df: pd.DataFrame, numeric: bool = True) -> list[str]:
    """The metric columns (numeric and boolean ones only, unless numeric=False)."""
    declared = df.attrs.get("metrics")
    if declared is not None:
        cols = [c for c in declared if c in df.columns]
    else:
        params = set(param_columns(df)) | set(REPLICATE)
        cols = [c for c in _candidates(df) if c not in params]
    if numeric:
        cols = [c for c in cols if _is_numeric(df[c])]
    return cols


def _is_numeric(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return True
    if s.dtype == object:  # bools/None mixed in an object column still average fine
        vals = s.dropna()
        return len(vals) > 0 and all(isinstance(v, (bool, int, float, np.number)) for v in vals)
    return False


def _to_float(s: pd.Series) -> pd.Series:
    """Any metric column (bool, nullable boolean/int, object of bools/None) as float64 with NaN."""
    if s.dtype == bool or (pd.api.types.is_numeric_dtype(s) and s.dtype.kind in "iuf"):
        return s.astype("float64")
    if pd.api.types.is_extension_array_dtype(s) and (pd.api.types.is_numeric_dtype(s)
                                                     or pd.api.types.is_bool_dtype(s)):
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index)
    conv = s.astype(object).map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
    return pd.to_numeric(conv, errors="coerce").astype("float64")


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def _default_by(df: pd.DataFrame) -> list[str]:
    return [c for c in param_columns(df) if c not in REPLICATE]


def _done(df: pd.DataFrame, status: str | None) -> pd.DataFrame:
    if status is None or N.STATUS not in df.columns:
        return df
    return df[df[N.STATUS] == status]


def _check_columns(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{what}: no column {', '.join(map(repr, missing))}; "
                       f"columns are: {', '.join(map(str, df.columns))}")


def _qname(q: float) -> str:
    return f"q{100 * q:g}"


def _groups(df: pd.DataFrame, by: list[str]):
    # dropna=False: a parameter that is None for some points (e.g. optional) is still a group.
    if by:
        return df.groupby(by, dropna=False, sort=True, observed=True)
    return df.assign(_all=0).groupby("_all")


# --------------------------------------------------------------------------- aggregation
def aggregate(df: pd.DataFrame, by: str | Sequence[str] | None = None,
              metrics: str | Sequence[str] | None = None, ci: float = 0.95,
              quantiles: Sequence[float] = (0.25, 0.5, 0.75),
              status: str | None = "done") -> pd.DataFrame:
    """One row per group of `by`: `pb_n` (rows in the group) plus, per metric m, m_count,
    m_mean, m_std, m_sem, m_ci_low, m_ci_high and m_q25/m_q50/m_q75. A statistic's name equal
    to a user column of df is a ValueError.

    The interval is the Student-t interval of the mean, except for a 0/1 metric (booleans, or
    numbers that are all 0 or 1 with both present): there it is the Wilson score interval of
    the rate, which stays inside [0, 1] (a t interval of 5/5 successes is [1, 1]).
    `out.attrs["intervals"]` says which per metric ("wilson" or "t").

    by: default = parameter columns minus rep/seed (so replicates are averaged).
    metrics: default = numeric/boolean metric columns. NaN/None values are left out per metric.
    """
    by = _default_by(df) if by is None else _as_list(by)
    metrics = metric_columns(df) if metrics is None else _as_list(metrics)
    _check_columns(df, by + metrics, "aggregate")
    stats = ("count", "mean", "std", "sem", "ci_low", "ci_high", *map(_qname, quantiles))
    N.no_clash(df.columns, {f"{m}_{st}": f"the {st} of {m!r}" for m in metrics for st in stats},
               "aggregate")
    data = _done(df, status)
    vals = data[by + metrics].copy()
    for m in metrics:
        vals[m] = _to_float(vals[m])
    binary = {m for m in metrics if is_binary(data[m])}
    groups = _groups(vals, by)
    out = groups.size().rename(N.N).to_frame()
    for m in metrics:
        col = groups[m]
        cnt = col.count()
        mean = col.mean()
        std = col.std(ddof=1)
        sem = std / np.sqrt(cnt)
        out[f"{m}_count"] = cnt
        out[f"{m}_mean"] = mean
        out[f"{m}_std"] = std
        out[f"{m}_sem"] = sem
        if m in binary:
            lo, hi = wilson(col.sum(min_count=0), cnt, ci)
        else:
            tq = np.array([t_quantile(0.5 + ci / 2, k - 1) if k > 1 else math.nan for k in cnt])
            lo, hi = mean - tq * sem, mean + tq * sem
        out[f"{m}_ci_low"] = lo
        out[f"{m}_ci_high"] = hi
        for q in quantiles:  # one call per q: the list form breaks on empty groups
            out[f"{m}_{_qname(q)}"] = col.quantile(q) if len(vals) else np.nan
    out = out.reset_index()
    if not by:
        out = out.drop(columns=["_all"])
    out.attrs = {"by": by, "metrics": metrics, "ci": ci,
                 "intervals": {m: "wilson" if m in binary else "t" for m in metrics}}
    return out


def is_binary(s: pd.Series) -> bool:
    """A 0/1 metric: booleans, or numbers that are all 0 or 1 with both present (a metric that
    is 1 everywhere is a constant, not a rate, unless it is boolean)."""
    if pd.api.types.is_bool_dtype(s):
        return len(s) > 0
    v = s.dropna()
    if not len(v):
        return False
    if s.dtype == object and v.map(lambda x: isinstance(x, (bool, np.bool_))).all():
        return True
    if not _is_numeric(s):
        return False
    f = _to_float(v)
    return bool(f.isin([0.0, 1.0]).all() and (f == 0).any() and (f == 1).any())


def _success_values(df: pd.DataFrame, success, key: str = "success") -> pd.Series:
    """0/1 (NaN when unknown) from a column name, an expression such as "error < 0.1", or a callable."""
    if callable(success):
        s = success(df)
        s = pd.Series(s, index=df.index) if not isinstance(s, pd.Series) else s
    elif isinstance(success, str) and success in df.columns:
        s = df[success]
    elif isinstance(success, str):
        from pushbutton.analysis.exprs import evaluate
        s = evaluate(df, success, key)
    else:
        raise TypeError("success must be a column name, an expression string or a callable")
    return _to_float(pd.Series(s, index=df.index))


def wilson(k, n, ci: float = 0.95):
    """Wilson score interval for k successes out of n (arrays or scalars); NaN where n == 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = NormalDist().inv_cdf(0.5 + ci / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        den = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # exact bounds at 0 and 1 (rounding would leave 2.8e-17 for 0 successes)
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    lo, hi = np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
    return (lo, hi) if lo.ndim else (float(lo), float(hi))


def success_rate(df: pd.DataFrame, by: str | Sequence[str] | None = None,
                 success: str | Callable = "success", ci: float = 0.95,
                 status: str | None = "done") -> pd.DataFrame:
    """Per group: pb_n (rows where success is defined), pb_successes, pb_rate, pb_ci_low,
    pb_ci_high (Wilson score interval).

    success: a boolean/0-1 column, an expression over columns ("err < 1e-3") or a callable
    df -> boolean Series. Rows where it is undefined are not counted.
    """
    by = _default_by(df) if by is None else _as_list(by)
    _check_columns(df, by, "success_rate")
    data = _done(df, status)
    vals = data[by].copy()
    vals["_s"] = _success_values(data, success)
    g = _groups(vals, by)
    out = pd.DataFrame({N.N: g["_s"].count(), "pb_successes": g["_s"].sum(min_count=0)})
    out["pb_rate"] = out["pb_successes"] / out[N.N].where(out[N.N] > 0)
    lo, hi = wilson(out["pb_successes"], out[N.N], ci)
    out["pb_ci_low"], out["pb_ci_high"] = lo, hi
    out = out.reset_index()
    return out.drop(columns=["_all"]) if not by else out


# --------------------------------------------------------------------------- phase boundaries
def _crossings(y: np.ndarray, r: np.ndarray, level: float) -> list[tuple[float, str]]:
    """All crossings of `level` by r(y) along sorted y, linearly interpolated."""
    out = []
    d = r - level
    for i in range(len(y) - 1):
        a, b = d[i], d[i + 1]
        if a == 0 and b == 0:
            continue
        if a == 0:
            # touching the level exactly counts once, at the point, if the sign changes across it
            prev = next((d[j] for j in range(i - 1, -1, -1) if d[j] != 0), None)
            if prev is not None and np.sign(prev) != np.sign(b):
                out.append((float(y[i]), "up" if b > 0 else "down"))
            continue
        if b != 0 and np.sign(a) == np.sign(b):
            continue
        if b == 0:
            nxt = next((d[j] for j in range(i + 2, len(d)) if d[j] != 0), None)
            if nxt is None or np.sign(nxt) == np.sign(a):
                continue
            out.append((float(y[i + 1]), "up" if a < 0 else "down"))
            continue
        t = a / (a - b)
        out.append((float(y[i] + t * (y[i + 1] - y[i])), "up" if b > a else "down"))
    # a point exactly on the level is found from both sides: keep one
    dedup = []
    for c in out:
        if not dedup or c[0] != dedup[-1][0]:
            dedup.append(c)
    return dedup


def boundary(df: pd.DataFrame, x: str, y: str, rate: str | Callable = "success",
             level: float = 0.5, status: str | None = "done",
             which: str = "first") -> pd.DataFrame:
    """For each x, the y at which the mean of `rate` (over replicates and all other parameters)
    crosses `level`, linearly interpolated between grid points.

    Columns: x, y (NaN when no crossing), `pb_direction` ("up": rate rises with y, "down":
    falls), `pb_n_crossings` (>1 means noise or a non-monotone rate; `which` = "first"/"last"
    picks one).
    """
    _check_columns(df, [x, y], "boundary")
    data = _done(df, status)
    vals = data[[x, y]].copy()
    vals["_r"] = _success_values(data, rate, "rate")
    surf = vals.groupby([x, y], sort=True)["_r"].mean().dropna().reset_index()
    rows = []
    for xv, part in surf.groupby(x, sort=True):
        part = part.sort_values(y)
        cr = _crossings(part[y].to_numpy(float), part["_r"].to_numpy(float), level)
        if cr:
            yv, direction = cr[0] if which == "first" else cr[-1]
        else:
            yv, direction = math.nan, None
        rows.append({x: xv, y: yv, "pb_direction": direction, "pb_n_crossings": len(cr)})
    return pd.DataFrame(rows, columns=[x, y, "pb_direction", "pb_n_crossings"])


# --------------------------------------------------------------------------- run time, failures
def timing(df: pd.DataFrame) -> dict:
    """Run-time and failure statistics of a results table, as a plain dict (JSON-friendly)."""
    n = len(df)
    status = df[N.STATUS] if N.STATUS in df.columns else pd.Series(["done"] * n, index=df.index)
    counts = {k: int(v) for k, v in status.value_counts().items()}
    dur = pd.to_numeric(df[N.DURATION], errors="coerce") if N.DURATION in df.columns \
        else pd.Series(dtype=float)
    done_dur = dur[status == "done"].dropna() if len(dur) else dur
    finished = counts.get("done", 0) + counts.get("failed", 0)
    out = {
        "n_tasks": n,
        "counts": counts,
        # the sum of task durations: task-hours, not CPU-hours (a task may use many CPUs)
        "task_seconds": float(dur.sum()) if len(dur) else 0.0,
        "task_hours": float(dur.sum()) / 3600.0 if len(dur) else 0.0,
        "duration_mean_s": float(done_dur.mean()) if len(done_dur) else math.nan,
        "duration_median_s": float(done_dur.median()) if len(done_dur) else math.nan,
        "duration_p90_s": float(done_dur.quantile(0.9)) if len(done_dur) else math.nan,
        "duration_max_s": float(done_dur.max()) if len(done_dur) else math.nan,
        "failure_rate": counts.get("failed", 0) / finished if finished else math.nan,
        "failures_by_kind": {},
        "retried_tasks": 0,
        "hosts": {},
        "wall_s": math.nan,
    }
    if N.ERROR_KIND in df.columns:
        fk = df.loc[status == "failed", N.ERROR_KIND].fillna("unknown")
        out["failures_by_kind"] = {str(k): int(v) for k, v in fk.value_counts().items()}
    if N.ATTEMPTS in df.columns:
        out["retried_tasks"] = int((pd.to_numeric(df[N.ATTEMPTS], errors="coerce") > 1).sum())
    if N.HOST in df.columns:
        out["hosts"] = {str(k): int(v) for k, v in df[N.HOST].dropna().value_counts().items()}
    out["nodes"] = _per_node(df, status, dur)
    if N.FINISHED_AT in df.columns and len(dur):
        fin = _to_seconds(df[N.FINISHED_AT])
        start = fin - dur.fillna(0)
        if fin.notna().any():
            out["wall_s"] = float(fin.max() - start.min())
    return out


NOT_RECORDED = "(not recorded)"  # finished tasks of results stored before pb_node existed


def _per_node(df: pd.DataFrame, status: pd.Series, dur: pd.Series) -> list[dict]:
    """Finished tasks (done or failed) per pb_node, by node name: tasks, failures, their total
    run time and the mean run time of the done ones. [] without a pb_node column."""
    if N.NODE not in df.columns:
        return []
    fin = status.isin(["done", "failed"])
    node = df.loc[fin, N.NODE].astype(object).where(df.loc[fin, N.NODE].notna(), NOT_RECORDED)
    d = dur[fin] if len(dur) else pd.Series(math.nan, index=node.index)
    g = pd.DataFrame({"node": node.astype(str), "failed": status[fin] == "failed",
                      "dur": d, "done_dur": d.where(status[fin] == "done")})
    rows = []
    for name, grp in g.groupby("node", sort=True):
        rows.append({"node": name, "tasks": int(len(grp)), "failures": int(grp["failed"].sum()),
                     "task_s": float(grp["dur"].sum()),
                     "mean_s": float(grp["done_dur"].mean()) if grp["done_dur"].notna().any()
                     else math.nan})
    return rows


def _to_seconds(s: pd.Series) -> pd.Series:
    """Timestamps (epoch seconds, ISO strings or datetimes) as float epoch seconds."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    t = pd.to_datetime(s, errors="coerce", utc=True)
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def _cause(text) -> str:
    """The line that names the error: the last non-empty line of a Python traceback."""
    if not isinstance(text, str) or not text.strip():
        return ""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300]


def failures(df: pd.DataFrame, head_lines: int = 8) -> pd.DataFrame:
    """Failed tasks grouped by (error_kind, cause): count, an example task and its parameters,
    and the first lines of its traceback. Most frequent first. (A summary of failures, not a
    table beside the user's columns: its column names are its own.)"""
    cols = ["error_kind", "cause", "count", "example_task", "example_params", "traceback_head"]
    if N.STATUS not in df.columns:
        return pd.DataFrame(columns=cols)
    failed = df[df[N.STATUS] == "failed"]
    if failed.empty:
        return pd.DataFrame(columns=cols)
    params = param_columns(df)
    err = failed[N.ERROR] if N.ERROR in failed.columns else pd.Series("", index=failed.index)
    kind = failed[N.ERROR_KIND] if N.ERROR_KIND in failed.columns \
        else pd.Series("unknown", index=failed.index)
    kind = kind.fillna("unknown").astype(str)
    # grouped as `pb status` groups them (core/causes.py): by exception type and place, not by
    # the exact message (`ValueError: bad a=1`, `... a=2` are one cause)
    key = [causes.cause(k, e if isinstance(e, str) else "", e if isinstance(e, str) else "")
           for k, e in zip(kind, err)]
    tmp = pd.DataFrame({"error_kind": kind, "key": key, "cause": err.map(_cause),
                        "_i": range(len(failed))}, index=failed.index)
    rows = []
    for (k, key), part in tmp.groupby(["error_kind", "key"], sort=False):
        first = failed.loc[part.index[0]]
        text = first.get(N.ERROR) if N.ERROR in failed.columns else ""
        head = "\n".join(str(text or "").strip().splitlines()[:head_lines])
        c = part["cause"].iloc[0] if part["cause"].nunique() == 1 else key
        rows.append({"error_kind": k, "cause": c, "count": len(part),
                     "example_task": first.get(N.TASK_ID, part.index[0]),
                     "example_params": {p: first[p] for p in params},
                     "traceback_head": head})
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- learning curves
def learning_curves(series_df: pd.DataFrame, by: str | Sequence[str] | None = None,
                    metric: str | Sequence[str] | None = None, x: str = N.STEP,
                    ci: float = 0.95) -> pd.DataFrame:
    """Per-step aggregate of per-step series (`exp.series()`): one row per (by..., pb_step) with
    the same statistics as `aggregate`. by: default = parameter columns minus rep/seed.
    x = "step" / "time" mean pb_step / pb_time unless the table has such a column."""
    x = step_column(series_df, x)
    if by is None:
        declared = series_df.attrs.get("params")
        if declared is not None:
            by = [c for c in declared if c in series_df.columns and c not in REPLICATE]
        else:  # series rows are all finished: parameters are the non-metric, non-reserved columns
            mets = set(_as_list(metric))
            by = [c for c in _candidates(series_df)
                  if c not in mets and c not in REPLICATE and not _looks_metric(series_df[c])]
    by = [b for b in _as_list(by) if b != x]
    if metric is None:
        metric = [c for c in _candidates(series_df) if c not in by and c not in REPLICATE
                  and _is_numeric(series_df[c])]
    return aggregate(series_df, by=by + [x], metrics=metric, ci=ci, status=None)


def step_column(df: pd.DataFrame, x: str) -> str:
    """`step` and `time` as names of the series' own pb_step / pb_time columns."""
    alias = {"step": N.STEP, "time": N.TIME}
    if x in alias and (df is None or x not in df.columns):
        return alias[x]
    return x


def _looks_metric(s: pd.Series) -> bool:
    # In a series table every row is a step; a parameter repeats across all steps of its task.
    return pd.api.types.is_float_dtype(s) and s.nunique() > max(20, len(s) // 2)
