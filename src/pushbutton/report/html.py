"""The report: one self-contained HTML file (figures embedded, CSS and a little JS inline, no
network fetches) plus the figure files and the aggregated table beside it.

`build(context, outdir)` takes a plain dict so it can be used and tested without a project store;
`build_for_experiment(exp, outdir)` fills that dict from an Experiment.
"""
from __future__ import annotations

import base64
import datetime as _dt
import io
import math
import numbers
from pathlib import Path
from typing import Any

import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.core import __version__, names as N
from pushbutton.core.files import atomic_write

MAX_ROWS = 2000  # table rows in the HTML; the CSV beside it has all of them
FIGURE_DPI = 150  # embedded PNGs: a 6.4 in figure is 960 px wide, sharp at the page's width
STATES = ("done", "failed", "running", "pending", "cancelled")


# --------------------------------------------------------------------------- formatting
def fmt(v: Any) -> str:
    """A value as a researcher would print it: 4 significant digits, '–' for missing."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isnan(f):
            return "–"
        if f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return f"{f:.4g}"
    if isinstance(v, (pd.Timestamp, _dt.datetime)):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    try:
        if pd.isna(v):
            return "–"
    except (TypeError, ValueError):
        pass
    return str(v)


def _sort_key(v: Any) -> str:
    """data-sort value: numbers as repr (the JS compares them numerically), else the text."""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, numbers.Real) and not (isinstance(v, float) and math.isnan(v)):
        return repr(float(v))
    return fmt(v) if fmt(v) != "–" else ""


def _cell(v: Any, text: str | None = None) -> dict:
    num = isinstance(v, numbers.Real) and not isinstance(v, bool)
    return {"text": fmt(v) if text is None else text, "sort": _sort_key(v), "num": num}


def when(v: Any) -> str:
    """Epoch seconds (as the store keeps them) or text, as a UTC date-time."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v) and v > 1e8:
        return _dt.datetime.fromtimestamp(float(v), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return fmt(v)


def _duration(s: float) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "–"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} d"


def table(df: pd.DataFrame, columns: list[str] | None = None,
          headers: list[str] | None = None, max_rows: int = MAX_ROWS) -> dict:
    """DataFrame -> {"headers", "num" flags, "rows" of cells, "total", "shown"} for the template."""
    columns = list(df.columns) if columns is None else columns
    sub = df[columns].head(max_rows)
    rows = [[_cell(v) for v in rec] for rec in sub.itertuples(index=False, name=None)]
    num = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
           for c in columns]
    return {"headers": headers or [str(c) for c in columns], "num": num, "rows": rows,
            "total": len(df), "shown": len(sub)}


# --------------------------------------------------------------------------- sections
def _counts(ctx: dict, df: pd.DataFrame | None) -> dict:
    counts = dict(ctx.get("counts") or {})
    if not counts and df is not None and N.STATUS in df.columns:
        counts = {k: int(v) for k, v in df[N.STATUS].value_counts().items()}
    total = int(ctx.get("n_tasks") or sum(counts.values()))
    order = [s for s in STATES if s in counts] + [s for s in counts if s not in STATES]
    bars = [{"state": s, "n": int(counts[s]),
             "pct": 100.0 * counts[s] / total if total else 0.0} for s in order]
    unfinished = counts.get("pending", 0) + counts.get("running", 0)
    finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    return {"total": total, "bars": bars, "partial": unfinished > 0, "unfinished": unfinished,
            "finished": finished, "pct_finished": 100.0 * finished / total if total else 0.0}


def _space(ctx: dict, df: pd.DataFrame | None) -> dict:
    """The parameter space as given (text), and per parameter what the table holds."""
    desc = ctx.get("space_description")
    rows = []
    if df is not None and len(df):
        for p in ctx.get("params") or A.param_columns(df):
            if p not in df.columns:
                continue
            vals = df[p].dropna()
            try:
                uniq = sorted(vals.unique().tolist())
            except TypeError:  # mixed types do not sort: keep first-seen order
                uniq = list(dict.fromkeys(vals.tolist()))
            shown = ", ".join(fmt(v) for v in uniq[:12]) + (" …" if len(uniq) > 12 else "")
            rng = f"{fmt(uniq[0])} … {fmt(uniq[-1])}" if uniq and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in uniq) else ""
            rows.append({"name": p, "n": len(uniq), "shown": shown, "range": rng,
                         "unit": (ctx.get("units") or {}).get(p, "")})
    if isinstance(desc, (list, tuple)):  # [{"name":..., "values"/"description":...}]
        return {"text": None, "declared": [{k: fmt(v) if k != "name" else v for k, v in d.items()}
                                           for d in desc], "rows": rows}
    return {"text": str(desc) if desc else None, "declared": [], "rows": rows}


def _results_table(ctx: dict, df: pd.DataFrame | None, outdir: Path) -> dict | None:
    from pushbutton.report.results_table import results_table
    return results_table({**ctx, "max_rows": MAX_ROWS}, df, outdir, _cell)


def _figures(ctx: dict, df, series, outdir: Path) -> tuple[list[dict], list[str]]:
    # matplotlib loads only when a report is built
    from pushbutton.analysis import figure_specs as FS, figures as F
    from pushbutton.report.results_table import boundary_table

    decls = ctx.get("figures")
    if decls is None:
        decls = FS.auto_declarations(df, series) if df is not None else []
    finished = df is not None and N.STATUS in df.columns and (df[N.STATUS] == "done").any()
    # SpecError for a bad declaration; column names only once tasks have produced metrics
    valid = FS.validate(decls, df, series, file=ctx.get("spec_file"),
                        check_columns=bool(finished) or (df is not None and N.STATUS not in df))
    out, problems = [], []
    figdir = outdir / "figures"
    for i, d in enumerate(valid):
        try:  # a figure that cannot be drawn (e.g. no data yet) must not sink the whole report
            fig = FS.render(d, df, series, ctx.get("units"))
            paths = F.save(fig, figdir / d["name"], formats=ctx.get("figure_formats",
                                                                      ("png", "svg", "pdf")))
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
        except Exception as e:  # noqa: BLE001 - reported in the page and the terminal instead
            where = f"figures[{i}]" if ctx.get("figures") is not None else "automatic"
            problems.append(f"figure {d['name']!r} ({d['kind']}, {where}) could not be drawn: "
                            f"{type(e).__name__}: {e}")
            continue
        title = d.get("title") or (fig.axes[0].get_title() if fig.axes else d["name"])
        bound = getattr(fig, "pb_boundary", None)
        out.append({"name": d["name"], "title": title, "caption": d.get("caption", ""),
                    "notes": F.notes(fig),
                    "boundary": boundary_table(bound, fmt) if bound else None,
                    "src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                    "files": [{"fmt": p.suffix[1:], "href": f"figures/{p.name}"} for p in paths],
                    "decl": ", ".join(f"{k} = {v!r}" for k, v in d.items() if k != "name")})
    written = {f["href"].split("/", 1)[1] for f in (x for o in out for x in o["files"])}
    for old in figdir.glob("*") if figdir.is_dir() else ():
        if old.suffix in (".png", ".svg", ".pdf") and old.name not in written:
            old.unlink()  # a figure no longer declared must not linger beside the report
    return out, problems


def _failures(ctx: dict, df) -> dict | None:
    f = ctx.get("failures_df")
    if f is None and df is not None:
        f = A.failures(df)
    if f is None or len(f) == 0:
        return None
    rows = []
    for rec in f.head(200).to_dict("records"):
        params = rec.get("example_params") or {}
        rows.append({"kind": fmt(rec.get("error_kind")), "cause": fmt(rec.get("cause")),
                     "count": int(rec.get("count", 1)), "task": fmt(rec.get("example_task")),
                     "params": ", ".join(f"{k}={fmt(v)}" for k, v in params.items()),
                     "traceback": str(rec.get("traceback_head") or "")})
    return {"rows": rows, "total": int(f["count"].sum()) if "count" in f else len(f)}


def _timing(df, cpus=None) -> dict | None:
    if df is None or df.empty:
        return None
    t = A.timing(df)
    # the sum of durations is task time; CPU time only when each task's CPUs are known (> 1)
    cpus = cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 1 else None
    return {"task_time": _duration(t["task_seconds"]),
            "cpu_time": _duration(t["task_seconds"] * cpus) if cpus else None, "cpus": cpus,
            "mean": _duration(t["duration_mean_s"]),
            "median": _duration(t["duration_median_s"]), "p90": _duration(t["duration_p90_s"]),
            "max": _duration(t["duration_max_s"]), "wall": _duration(t["wall_s"]),
            "failure_rate": "–" if math.isnan(t["failure_rate"]) else f"{t['failure_rate']:.1%}",
            "retried": t["retried_tasks"], "by_kind": t["failures_by_kind"],
            "hosts": t["hosts"], "nodes": _nodes(t["nodes"])}


def _nodes(rows: list[dict]) -> list[dict]:
    """The per-node table of the timing section, with a bar as wide as the node's share of
    the busiest node's tasks."""
    most = max((r["tasks"] for r in rows), default=0)
    return [{"node": r["node"], "tasks": r["tasks"], "failures": r["failures"],
             "total": _duration(r["task_s"]), "total_s": r["task_s"],
             "mean": _duration(r["mean_s"]),
             "mean_s": "" if math.isnan(r["mean_s"]) else r["mean_s"],
             "pct": 100.0 * r["tasks"] / most if most else 0.0} for r in rows]


def _runs(ctx: dict) -> list[dict]:
    """Runs with their provenance; packages and diffs shown collapsed."""
    out = []
    for r in ctx.get("runs") or []:
        prov = dict(r.get("provenance") or {})
        pkgs = prov.pop("packages", None) or {}
        diff = prov.pop("diff", None) or prov.pop("git_diff", None) or ""
        for k in _PROV_HIDDEN:
            prov.pop(k, None)
        out.append({"id": fmt(r.get("run_id") or r.get("id")),
                    "started": when(r.get("started_at", r.get("started"))),
                    "finished": when(r.get("finished_at", r.get("ended"))),
                    "message": fmt(r.get("message")) if r.get("message") else "",
                    "backend": fmt(r.get("backend") or r.get("target") or ""),
                    "status": fmt(r.get("status")) if r.get("status") else "",
                    "code": fmt(r.get("code_version") or prov.get("code_version")
                                or prov.get("git_commit") or prov.get("code_hash") or ""),
                    "prov": [(k, when(v) if k == "time" else _prov_text(v))
                             for k, v in prov.items()],
                    "packages": sorted((str(k), fmt(v)) for k, v in dict(pkgs).items()),
                    "diff": str(diff)})
    return out


# shown elsewhere in the report (spec, message) or too long to be useful per run
_PROV_HIDDEN = ("spec", "message", "code_files")


def _prov_text(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return fmt(v)


# --------------------------------------------------------------------------- build
def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # every value from a spec or a task is text, never markup
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def build(context: dict, outdir: str | Path, filename: str = "report.html",
          problems: list | None = None) -> Path:
    """Write `outdir/report.html` (self-contained), `outdir/figures/*` and
    `outdir/aggregated.csv`; returns the HTML path. What the page shows as a problem (a figure
    that could not be drawn) is also appended to `problems` when a list is given, for the
    terminal.

    context keys (all optional except title): title, description, spec_text, spec_file,
    space_description (text or [{name, values}]), counts ({state: n}; else from the table),
    n_tasks, results_df, series_df, figures ([[figures]] declarations; None = automatic),
    units, params, metrics, aggregate_by, ci, cpus (per task), failures_df, runs ([{run_id,
    started_at, finished_at, message, backend, provenance: {..., packages: {}, diff}}]),
    generated_at.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    df = context.get("results_df")
    series = context.get("series_df")
    if df is not None and context.get("params") and not df.attrs.get("params"):
        df = df.copy()
        df.attrs["params"] = list(context["params"])
        if context.get("metrics"):
            df.attrs["metrics"] = list(context["metrics"])
    figures, drawn = _figures(context, df, series, outdir)
    if problems is not None:
        problems.extend(drawn)
    page = {
        "title": context.get("title") or context.get("name") or "Experiment report",
        "name": context.get("name") or "",
        "description": context.get("description") or "",
        "spec_text": context.get("spec_text") or "",
        "spec_file": context.get("spec_file") or "",
        "space": _space(context, df),
        "counts": _counts(context, df),
        "results": _results_table(context, df, outdir),
        "figures": figures,
        "problems": drawn + list(context.get("warnings") or []),
        "failures": _failures(context, df),
        "timing": _timing(df, context.get("cpus")),
        "runs": _runs(context),
        "generated_at": context.get("generated_at")
        or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
    }
    html = _env().get_template("report.html.j2").render(**page)
    path = outdir / filename
    atomic_write(path, html)  # a browser that has the old report open never sees half a file
    return path


# --------------------------------------------------------------------------- from a project store
def context_from_store(store, eid: int, name: str, spec: dict | None = None,
                       spec_file: str | None = None, space: str | None = None) -> dict:
    """The `build` context of a stored experiment: its table, series, runs and spec."""
    import json

    from pushbutton.store import parts as R
    from pushbutton.store import views as table

    stored = next((e["spec"] for e in store.experiments() if e["id"] == eid), {}) or {}
    spec = dict(spec or {k: v for k, v in stored.items() if not k.startswith("_")})
    spec_file = spec_file or stored.get("_spec_file")
    df = table.results(store, eid, name)
    meta = R.columns_meta(store.dir / "results" / name)
    params = [c for c in meta["params"] if c in df.columns]
    known = set(params) | set(meta["metrics"])
    params += [c for c in df.columns if c not in known and not N.reserved(c)]  # not run yet
    df.attrs["params"] = params
    df.attrs["metrics"] = [c for c in meta["metrics"] if c in df.columns]
    series = table.series(store, eid, name)
    series.attrs["params"] = [c for c in params if c in series.columns]
    spec_text = ""
    if spec_file and Path(spec_file).is_file():
        spec_text = Path(spec_file).read_text(encoding="utf-8", errors="replace")
    elif spec:
        spec_text = json.dumps(spec, indent=2, default=str)
    runs = [{**r, "run_id": r.get("number", r.get("id"))} for r in store.runs(eid)]  # (pb history)
    return {"title": name, "name": name,
            "description": spec.get("description", ""), "spec_text": spec_text,
            "spec_file": Path(spec_file).name if spec_file else "",
            "space_description": space or stored.get("_space") or "",
            "counts": store.counts(eid), "results_df": df, "series_df": series,
            "figures": spec.get("figures") or None, "units": spec.get("units") or {},
            "cpus": (spec.get("resources") or {}).get("cpus"),
            "params": params, "metrics": df.attrs["metrics"], "runs": runs}


def default_outdir(store, name: str) -> Path:
    """`.pushbutton/reports/<experiment>/` of the store: inside the store's folder (ignored by
    git like the rest of it), not a new folder among the project's files; `-o` / `outdir`
    puts a report anywhere else."""
    return Path(store.dir) / "reports" / name


def build_for_experiment(exp, outdir=None, open_browser: bool = False) -> Path:
    """Report of an `Experiment` (what `exp.report()` calls). A figure that could not be drawn
    is a warning (it is also a banner in the page)."""
    import warnings
    eid = exp._exp_id()
    ctx = context_from_store(exp.store, eid, exp.name, spec=exp.spec.model_dump(),
                             spec_file=exp.spec_file, space=repr(exp.space))
    problems: list[str] = []
    path = build(ctx, outdir or default_outdir(exp.store, exp.name), problems=problems)
    for p in problems:
        warnings.warn(p, stacklevel=3)
    if open_browser:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())
    return path
