"""What the chart endpoints serve, read from the store and cached: the spec's figures and the
throughput chart of an experiment (aggregated together in DuckDB over the results table the
pages read: ui/charts_agg.py), and per-step series of chosen tasks.

Cheap to poll: a request first computes the experiment's *version* (its task counts per state,
its spec, and the size and time of its results' and series' manifests: a few index reads and two
stat calls). The same version is answered from the cache; a new one is recomputed, but not more
often than every `min_age` seconds (and at least ten times the last computation's duration
apart), so a page polling a 10^6-task run that ingests every second does not keep a core busy:
between recomputations it gets the last figures, a few seconds old.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pushbutton.core import names as N
from pushbutton.core import pathnames
from pushbutton.core.errors import PushbuttonError
from pushbutton.ui import charts as C
from pushbutton.ui.results import NotReady

MAX_SERIES_TASKS = 12  # tasks one series request may ask for
DEFAULT_SERIES_TASKS = 5  # shown when none is chosen
BUCKETS = 80  # points of the throughput chart


class ChartData:
    """Figures, throughput and series of the experiments of one store.

    open_store: a callable returning a fresh read connection to the store (a `Store`); it is
    closed after each use, so nothing is held between requests."""

    def __init__(self, open_store: Callable, min_age: float = 3.0, tables=None):
        self.open_store = open_store
        self.min_age = min_age
        if tables is None:
            from pushbutton.ui.results import Tables
            tables = Tables()
        self.tables = tables  # the results tables in DuckDB (ui/results.py), shared with the pages
        if tables.warm is None:
            tables.warm = warm  # each new copy's figures computed as soon as it is made
        self._cache: dict[str, dict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- the experiment and its version -----------------------------------------------------
    @staticmethod
    def _eid(store, name: str) -> int:
        # the name becomes a path below the store (results/NAME): only one that cannot leave it
        # (a store is not trusted to hold only such names)
        if pathnames.problem(name, max_len=1000) is not None:
            raise LookupError(f"no experiment {name!r} with charts (its name is not a folder "
                              "name)")
        eid = store.experiment(name)
        if eid is None:
            raise LookupError(f"no experiment {name!r}")
        return eid

    @staticmethod
    def version(store, eid: int, name: str, table: str = "", counts: dict | None = None) -> str:
        h = hashlib.blake2b(digest_size=10)
        h.update(table.encode())
        h.update(json.dumps(store.counts(eid) if counts is None else counts,
                            sort_keys=True).encode())
        row = store.db.execute("SELECT spec FROM experiments WHERE id=?", (eid,)).fetchone()
        h.update((row[0] if row else "").encode())
        for sub in ("results", "series"):
            m = store.dir / sub / name / "MANIFEST.json"
            try:
                st = m.stat()
                h.update(f"{sub}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{sub}:-".encode())
        return h.hexdigest()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- figures and throughput --------------------------------------------------------------
    def snapshot(self, name: str) -> dict:
        """{"version", "figures": {...}, "throughput": {...}} of the experiment (cached)."""
        with self._lock(name):
            hit = self._cache.get(name)
            now = time.monotonic()
            if hit and now - hit["at"] < max(self.min_age, 10 * hit["took"]):
                return hit["payload"]
            store = self.open_store()
            try:
                eid = self._eid(store, name)
                counts = store.counts(eid)  # (read once: at 10^6 tasks it costs 0.1 s)
                # the table read (while a newer one is made, the last one): its file is part of
                # the version, so the figures of a newer table are never taken for these
                try:
                    snap = self.tables.get(store, eid, name, wait=self.tables.page_wait,
                                           counts=counts)
                except NotReady as e:  # its first copy: said in place of the figures
                    return pending(counts, str(e))
                version = self.version(store, eid, name, snap.path.name, counts)
                if hit and hit["payload"]["version"] == version:
                    hit["at"] = now
                    return hit["payload"]
                # the figures of the copy whatever the counts now (they read only the copy)
                t0 = time.monotonic()  # (what this request costs: the pace of the next ones)
                of_copy = self.version(store, eid, name, snap.path.name, {})
                made = from_copy(snap, of_copy, lambda r: compute_from_table(
                    store, eid, name, version, snap, counts=counts, redraw=r))
                payload, took = with_counts(made, version, counts), time.monotonic() - t0
            finally:
                store.close()
            self._cache[name] = {"at": time.monotonic(), "took": took, "payload": payload}
            return payload

    # -- per-step series ---------------------------------------------------------------------
    def series(self, name: str, tasks: list[str]) -> dict:
        store = self.open_store()
        try:
            eid = self._eid(store, name)
            return series_payload(store, eid, name, tasks)
        finally:
            store.close()


def from_copy(snap, version: str, make: Callable) -> tuple:
    """(payload, seconds it took, its throughput redrawn: compute_from_table's `redraw`) of
    the copy `snap` at `version` (the spec's and manifests', not the counts': `with_counts`):
    made once per copy and version (by `warm` in the copy's thread, or by the first request),
    then shared by every request and every ChartData over the same tables; only the last
    version is kept."""
    with snap.cache_lock:
        hit = snap.cache.get(("figures", version))
        if hit is None:
            t0 = time.monotonic()
            redraw: list = []
            payload = make(redraw)
            snap.cache.clear()
            hit = snap.cache[("figures", version)] = (payload, time.monotonic() - t0,
                                                      redraw[0])
        return hit


def warm(root, name: str, snap) -> None:
    """The figures of a copy just made (ui/results.py calls this in the copy's thread), so that
    the request after a change finds them computed."""
    from pushbutton.store.database import Store
    store = Store(root, create=False)
    try:
        eid = store.experiment(name)
        if eid is None:
            return
        counts = store.counts(eid)
        version = ChartData.version(store, eid, name, snap.path.name, counts)
        of_copy = ChartData.version(store, eid, name, snap.path.name, {})
        from_copy(snap, of_copy, lambda r: compute_from_table(store, eid, name, version, snap,
                                                              counts=counts, redraw=r))
    finally:
        store.close()


def pending(counts: dict, message: str) -> dict:
    """What the figures say while the experiment's first copy is being made (not cached)."""
    h = hashlib.blake2b(json.dumps(counts, sort_keys=True).encode(), digest_size=8)
    thr = _throughput_chart(counts)
    thr["plotly"] = C._empty(THROUGHPUT_TITLE, "the results table is being copied")
    thr["timing"] = None
    return {"version": "pending-" + h.hexdigest(), "pending": True,
            "figures": {"figures": [], "problems": [message]}, "throughput": thr}


def compute(store, eid: int, name: str, version: str) -> dict:
    """Figures and throughput from one read of the table (what the static report reads)."""
    from pushbutton.report.html import context_from_store
    ctx = context_from_store(store, eid, name)
    df, series = ctx["results_df"], ctx["series_df"]
    try:
        figs = C.figures(df, series, ctx["figures"], ctx["units"], file=ctx.get("spec_file"))
    except PushbuttonError as e:  # a bad declaration: said on the page, as in the report
        figs = {"figures": [], "problems": [str(e)]}
    thr = throughput(df, ctx["counts"])
    thr["timing"] = timing(df, ctx.get("cpus"))
    return {"version": version, "figures": figs, "throughput": thr}


def compute_from_table(store, eid: int, name: str, version: str, snap,
                       counts: dict | None = None, redraw: list | None = None) -> dict:
    """`compute`'s figures and throughput from the results table in DuckDB (ui/results.py's
    snapshot of it): aggregated there (ui/charts_agg.py); of the rows only the four columns of
    the throughput and timing come out. `redraw` (a list) gets a function of other counts now
    giving the throughput with them."""
    from pushbutton.store import parts as R
    from pushbutton.store import views as table
    from pushbutton.ui import charts_agg as G
    from pushbutton.ui import results as U
    stored = next((e["spec"] for e in store.experiments() if e["id"] == eid), {}) or {}
    spec = {k: v for k, v in stored.items() if not k.startswith("_")}
    meta = R.columns_meta(store.dir / "results" / name)
    t = G.Table(snap.con, U.TABLE, meta["params"], meta["metrics"], U.ROW, lock=snap.lock)
    series = table.series(store, eid, name)
    series.attrs["params"] = [c for c in t.params if c in series.columns]
    spec_file = stored.get("_spec_file")
    try:
        figs = G.figures(t, series, spec.get("figures") or None, spec.get("units") or {},
                         file=Path(spec_file).name if spec_file else "")
    except PushbuttonError as e:  # a bad declaration: said on the page, as in the report
        figs = {"figures": [], "problems": [str(e)]}
    counts = store.counts(eid) if counts is None else counts
    cpus = (spec.get("resources") or {}).get("cpus")
    drawn = []  # the throughput chart's moments and counts: redrawn with other counts now

    def chart(now, *args):
        drawn[:] = args
        return _throughput_chart(now, *args)
    if t.profile()["timing"]:
        thr = throughput_from_table(t, counts, chart=chart)
        thr["timing"] = timing_from_table(t, cpus)
    else:  # end times that are not numbers: the four columns into pandas
        df = _timing_frame(t)
        thr = throughput(df, counts, chart=chart)
        thr["timing"] = timing(df, cpus)
    if redraw is not None:
        redraw.append(lambda now: dict(_throughput_chart(now, *drawn), timing=thr["timing"]))
    return {"version": version, "figures": figs, "throughput": thr}


def with_counts(made: tuple, version: str, counts: dict) -> dict:
    """The payload of a copy (`from_copy`'s) at `version`: its figures and timing (they read only
    the copy), the throughput chart redrawn with the counts now (the state database's)."""
    payload, _, redraw = made
    if payload["version"] == version:
        return payload
    return {"version": version, "figures": payload["figures"], "throughput": redraw(counts)}


def throughput_from_table(t, counts: dict, buckets: int = BUCKETS, chart=None) -> dict:
    """`throughput` from one GROUP BY: each finished task's end and start as the index of the
    first of the chart's moments at or after it (the moments as numpy spaces them, compared
    exactly), counted; the counts at each moment are the running sums."""
    chart = chart or _throughput_chart
    prof = t.profile()
    if not prof["n_fin"]:
        return chart(counts)
    lo, hi = float(prof["t_lo"]), float(prof["t_hi"])
    if hi <= lo:
        hi = lo + 1.0
    moments = np.linspace(lo, hi, buckets + 1)
    end, dur = t.value(N.FINISHED_AT), t.value(N.DURATION)
    start = f"({end} - coalesce(CASE WHEN isfinite({dur}) THEN {dur} END, 0))"
    fin = f"{N.STATUS} IN ('done', 'failed') AND {end} IS NOT NULL AND isfinite({end})"
    step = buckets / (hi - lo)

    def first_at_or_after(v):  # k with moments[k-1] < v <= moments[k]
        k0 = f"least(greatest(CAST(ceil(({v} - {lo!r}) * {step!r}) AS BIGINT), 0), {buckets})"
        return (f"{k0} - ({k0} > 0 AND ($t)[{k0}] >= {v})::INT "
                f"+ (({v}) > ($t)[{k0} + 1])::INT")
    rows = t.df(f"SELECT {N.STATUS} AS s, {first_at_or_after(end)} AS ke, "
                f"{first_at_or_after(start)} AS ks, count(*) AS c FROM {t.name} WHERE {fin} "
                "GROUP BY ALL", {"t": [float(x) for x in moments]})

    def running_sum(mask, col):
        c = np.zeros(buckets + 1, dtype=np.int64)
        np.add.at(c, rows.loc[mask, col].to_numpy(np.int64), rows.loc[mask, "c"].to_numpy(
            np.int64))
        return np.cumsum(c)
    every = np.ones(len(rows), dtype=bool)
    series = {s: running_sum((rows["s"] == s).to_numpy(), "ke") for s in ("done", "failed")}
    series["running"] = running_sum(every, "ks") - running_sum(every, "ke")
    return chart(counts, moments, series, int(prof["n_fin"]), lo, hi)


def timing_from_table(t, cpus=None) -> dict | None:
    """`timing` from the table's profile (one scan): the report's figures, as it words
    them (report/html.py's _timing of stats.timing)."""
    from pushbutton.report.html import _duration
    p = t.profile()
    if not int(p["n"]):
        return None

    def num(k):
        v = p.get(k)
        return math.nan if v is None or pd.isna(v) else float(v)
    done, failed = int(p["n_done"]), int(p["n_failed"])
    task_s = num("dur_sum") if int(p["dur_n"]) else 0.0
    wall = num("end_max") - num("start_min")
    cpus = cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 1 else None
    return {"task_time": _duration(task_s),
            "cpu_time": _duration(task_s * cpus) if cpus else None,
            "wall": _duration(wall), "mean": _duration(num("dur_mean")),
            "median": _duration(num("dur_median")), "p90": _duration(num("dur_p90")),
            "failure_rate": f"{failed / (done + failed):.1%}" if done + failed else "–",
            "retried": int(p.get("retried", 0) or 0)}


def _timing_frame(t) -> pd.DataFrame:
    """The columns throughput and timing read, every row (the state as a category)."""
    from pushbutton.ui.charts_agg import _q
    cols = [c for c in (N.DURATION, N.FINISHED_AT, N.ATTEMPTS) if c in t.types]
    states = t.df(f"SELECT DISTINCT {N.STATUS} FROM {t.name} WHERE {N.STATUS} IS NOT NULL "
                  "ORDER BY 1")[N.STATUS].tolist()
    enum = "ENUM (" + ", ".join("'" + s.replace("'", "''") + "'" for s in states) + ")" \
        if states else "VARCHAR"
    sel = [f"CAST({N.STATUS} AS {enum}) AS {N.STATUS}"] + [_q(c) for c in cols]
    return t.df(f"SELECT {', '.join(sel)} FROM {t.name}")


TIMING_KEYS = ("task_time", "cpu_time", "wall", "mean", "median", "p90", "failure_rate",
               "retried")


def timing(df, cpus=None) -> dict | None:
    """The report's timing figures, as it words them (task time: the sum of the tasks'
    durations; CPU time only when each task's CPUs are known)."""
    from pushbutton.report.html import _timing
    t = _timing(df, cpus)
    return None if t is None else {k: t[k] for k in TIMING_KEYS}


# --------------------------------------------------------------------------- throughput
def throughput(df: pd.DataFrame, counts: dict, buckets: int = BUCKETS, chart=None) -> dict:
    """Counts per state over time, from the recorded end time of every finished task (a done
    task's result row, a failed task's last attempt) and its duration: done and failed so far
    at each moment, and how many of the finished tasks were running then (end - duration ...
    end; a task still running counts once it ends). The tasks running and pending now are
    `counts` (the state database)."""
    chart = chart or _throughput_chart
    empty = chart(counts)
    if df is None or not len(df) or N.STATUS not in df.columns or N.FINISHED_AT not in df:
        return empty
    from pushbutton.analysis.stats import _to_seconds
    st = df[N.STATUS]
    end = _to_seconds(df[N.FINISHED_AT]).to_numpy(float)
    dur = pd.to_numeric(df[N.DURATION], errors="coerce").to_numpy(float) \
        if N.DURATION in df.columns else np.zeros(len(df))
    fin = st.isin(["done", "failed"]).to_numpy() & np.isfinite(end)
    if not fin.any():
        return empty
    start = end - np.where(np.isfinite(dur), dur, 0.0)
    lo, hi = float(np.min(start[fin])), float(np.max(end[fin]))
    if hi <= lo:
        hi = lo + 1.0
    t = np.linspace(lo, hi, buckets + 1)
    series = {}
    for state in ("done", "failed"):
        ends = np.sort(end[fin & (st == state).to_numpy()])
        series[state] = np.searchsorted(ends, t, side="right")
    starts, ends = np.sort(start[fin]), np.sort(end[fin])
    series["running"] = np.searchsorted(starts, t, side="right") - \
        np.searchsorted(ends, t, side="right")
    return chart(counts, t, series, int(fin.sum()), lo, hi)


THROUGHPUT_TITLE = "tasks over time"
THROUGHPUT_NOTES = [
    "Done and failed: tasks finished by each moment, from their recorded end times (a done "
    "task's result, a failed task's last attempt; a retried task counts once, in its final "
    "state). Running: finished tasks that were running at that moment (from end time and "
    "duration); tasks running now count once they end."]


def _throughput_chart(counts: dict, t=None, series: dict | None = None, n_fin: int = 0,
                      lo: float = 0.0, hi: float = 0.0) -> dict:
    """The throughput chart from the moments `t` and the counts at each (series: done,
    failed, running); without them, the chart of no finished task."""
    title, notes = THROUGHPUT_TITLE, list(THROUGHPUT_NOTES)
    now = {k: int(v) for k, v in (counts or {}).items()}
    total = sum(now.values())
    if series is None:
        return {"title": title, "notes": notes, "now": now, "total": total,
                "plotly": C._empty(title, "no task has finished yet")}
    stamps = pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
    colors = {"done": "#2ca02c", "failed": "#d62728", "running": "#1f77b4"}
    data = [{"type": "scatter", "mode": "lines", "name": s, "x": list(stamps),
             "y": [int(v) for v in series[s]], "line": {"color": colors[s], "width": 2,
                                                        "shape": "hv" if s == "running"
                                                        else "linear"},
             "hovertemplate": f"%{{x}} UTC<br>{s}: %{{y}}<extra></extra>"}
            for s in ("done", "failed", "running")]
    span = hi - lo
    rate = n_fin / span if span > 0 else math.nan
    sub = (f"{n_fin} of {total} finished; {rate:.3g} tasks/s on average"
           if math.isfinite(rate) else None)
    layout = C._layout(title, {"title": {"text": "time (UTC)"}, "type": "date"},
                       {"title": {"text": "tasks"}, "rangemode": "tozero"}, sub,
                       legend={"orientation": "h", "y": -0.25}, height=300)
    return {"title": title, "notes": notes, "now": now, "total": total,
            "plotly": {"data": data, "layout": layout}}


# --------------------------------------------------------------------------- series
def _series_files(store, name: str) -> list[str]:
    from pushbutton.store import parts as R
    return R.parts(store.dir / "series" / name)


def resolve_tasks(store, eid: int, given: list[str]) -> list[str]:
    """Task ids from (prefixes of) ids, as `pb show` takes them; a bad one is an error."""
    out = []
    for g in given:
        g = g.strip()
        if not g:
            continue
        if not all(c.isalnum() or c in "-_" for c in g) or len(g) > 64:
            raise ValueError(f"task {g!r}: a task id has letters and digits only")
        try:
            out.append(store.find_task(eid, g)["id"])
        except PushbuttonError as e:
            raise ValueError(f"task {g!r}: {e}") from None
    if len(out) > MAX_SERIES_TASKS:
        raise ValueError(f"at most {MAX_SERIES_TASKS} tasks at once, got {len(out)}")
    return list(dict.fromkeys(out))


def series_payload(store, eid: int, name: str, given: list[str]) -> dict:
    """Per-step series of the chosen tasks (default: the first few that logged any), one
    figure per metric, one line per task."""
    import duckdb
    tasks = resolve_tasks(store, eid, given)
    files = _series_files(store, name)
    base = {"tasks": tasks, "chosen": bool(tasks), "figures": [], "notes": []}
    if not files:
        base["notes"].append("No task has logged a per-step series yet (pushbutton.log).")
        return base
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    rel = "read_parquet($files, union_by_name=true)"
    if not tasks:
        rows = con.execute(f"SELECT DISTINCT {N.TASK_ID} FROM {rel} ORDER BY 1 LIMIT "
                           f"{DEFAULT_SERIES_TASKS}", {"files": files}).fetchall()
        tasks = [r[0] for r in rows]
        base["tasks"] = tasks
        base["notes"].append(f"The first {len(tasks)} tasks (by id) that logged a series; "
                             "choose others by id.")
    if not tasks:
        return base
    s = con.execute(f"SELECT * FROM {rel} WHERE {N.TASK_ID} IN (SELECT unnest($ids)) "
                    f"ORDER BY {N.TASK_ID}, {N.STEP}", {"files": files, "ids": tasks}).df()
    con.close()
    params = _params_of(store, eid, tasks)
    metrics = [c for c in s.columns if not N.reserved(c)
               and pd.api.types.is_numeric_dtype(s[c])]
    missing = [t for t in tasks if t not in set(s[N.TASK_ID])]
    if missing:
        base["notes"].append(f"No series logged by {', '.join(missing)}.")
    for m in metrics:
        data = []
        for i, (tid, part) in enumerate(s.groupby(N.TASK_ID, sort=False)):
            part = part.dropna(subset=[m])
            if not len(part):
                continue
            label = f"{tid[:10]} ({params.get(tid, '')})"
            data.append({"type": "scatter", "mode": "lines", "name": C.esc(label),
                         "x": C._num(part[N.STEP]), "y": C._num(part[m]),
                         "line": {"color": C.PALETTE[i % len(C.PALETTE)]},
                         "hovertemplate": f"{C.esc(label)}<br>step %{{x}}<br>{C.esc(m)} = "
                                          "%{y:.4g}<extra></extra>"})
        title = f"{m} per step"
        base["figures"].append({
            "name": f"series-{m}", "title": title, "notes": [],
            "plotly": {"data": data, "layout": C._layout(
                title, C._axis("step", True), C._axis(m, True),
                legend={"orientation": "h", "y": -0.25}, showlegend=True, height=320)}})
    return base


def _params_of(store, eid: int, tasks: list[str]) -> dict:
    """task id -> "a=1, b=x" (for the legend)."""
    out = {}
    q = "SELECT id, params FROM tasks WHERE exp=? AND id IN (%s)" % ",".join("?" * len(tasks))
    for tid, params in store.db.execute(q, (eid, *tasks)):
        try:
            p = json.loads(params)
        except ValueError:
            p = {}
        out[tid] = ", ".join(f"{k}={v}" for k, v in p.items())
    return out
