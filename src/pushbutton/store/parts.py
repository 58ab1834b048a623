"""The results table: Parquet parts written at ingest, queried with DuckDB, handed out as pandas.

Each successful task attempt is one row: pb_task_id, the parameters, the metrics, and the pb_
meta columns (names.py). Parts are append-only and named by (bundle, byte offset of the outcomes
they came from), so re-ingesting after a crash rewrites the same part instead of adding a
duplicate; readers keep one row per (task, bundle), and which of them is a task's current result
is the task row's decision (views.py). `compact` merges small parts; `parts` lists what readers
read (the folder's manifest, see partset.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.arrays import array as to_arrow, strings
from pushbutton.core.files import replacing

META = [N.TASK_ID, N.BUNDLE, N.RUN_ID, N.ATTEMPTS, N.DURATION, N.HOST, N.NODE, N.FINISHED_AT]
# the keys of the row dicts the driver hands to write_part
_ROW_KEYS = ["task_id", "bundle", "run_id", "attempts", "duration_s", "host", "node",
             "finished_at"]
_TEXT = {N.HOST, N.NODE}  # text even where every value is missing (a part of older lines)


def _typed(values):
    import pyarrow as pa
    try:  # one type for the whole column handles the common cases fast (no pandas: arrays.py)
        arr = to_arrow(values)
        if not (pa.types.is_struct(arr.type) or pa.types.is_null(arr.type)
                or pa.types.is_list(arr.type)):  # nested values are stored as JSON text
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            kinds.add("b")
        elif isinstance(v, int):
            kinds.add("i")
        elif isinstance(v, float):
            kinds.add("f")
        elif isinstance(v, str):
            kinds.add("s")
        else:
            kinds.add("j")
        if len(kinds) > 1 and not kinds <= {"i", "f"}:
            break
    if not kinds:
        return to_arrow(values, type=pa.float64())
    if kinds == {"b"}:
        return to_arrow(values, type=pa.bool_())
    if kinds == {"i"}:
        try:
            return to_arrow(values, type=pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            return to_arrow([None if v is None else float(v) for v in values], pa.float64())
    if kinds <= {"i", "f"}:
        return to_arrow([None if v is None else float(v) for v in values], pa.float64())
    if kinds == {"s"}:
        return to_arrow(values, type=pa.string())
    return to_arrow([None if v is None else (v if isinstance(v, str) else
                                             json.dumps(v, sort_keys=True)) for v in values],
                    type=pa.string())


def write_part(path: Path, rows, param_names: list[str], plain: bool = False) -> None:
    """rows: dicts with the _ROW_KEYS, 'params' and 'metrics' (or an Arrow table already built).
    Metric names were checked by the worker (no pb_ prefix, none equal to a parameter's).
    Written to a temp name, then renamed. `plain`: written without pyarrow (parquet_plain.py:
    the same columns and types, uncompressed), for a small run that never imports it."""
    if not plain:
        import pyarrow as pa
        import pyarrow.parquet as pq
        if isinstance(rows, pa.Table):
            with replacing(path) as tmp:
                pq.write_table(rows, tmp, compression="zstd",
                               use_dictionary=N.dictionary_columns(rows.column_names))
            return
    pcols = list(param_names)
    seen = set(pcols)
    for r in rows:  # parameters not declared up front (concatenated spaces)
        for k in r["params"]:
            if k not in seen:
                seen.add(k)
                pcols.append(k)
    mcols, mseen = [], set()
    for r in rows:
        for k in r["metrics"]:
            if k not in mseen and k not in seen and not N.reserved(k):  # never shadow a column
                mseen.add(k)
                mcols.append(k)
    meta = {"params": pcols, "metrics": mcols}
    if plain:
        _write_plain(path, rows, pcols, mcols, meta)
        return
    arrays, names = [], []
    for c, k in zip(META, _ROW_KEYS):
        vals = [r.get(k) for r in rows]
        arrays.append(strings(vals) if c in _TEXT else _typed(vals))
        names.append(c)
    for c in pcols:
        arrays.append(_typed([r["params"].get(c) for r in rows]))
        names.append(c)
    for c in mcols:
        arrays.append(_typed([r["metrics"].get(c) for r in rows]))
        names.append(c)
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({"pushbutton": json.dumps(meta)})
    with replacing(path) as tmp:
        pq.write_table(table, tmp, compression="zstd",
                       use_dictionary=N.dictionary_columns(table.column_names))


def _write_plain(path: Path, rows, pcols, mcols, meta: dict) -> None:
    """write_part's columns through parquet_plain (no pyarrow)."""
    from pushbutton.store import parquet_plain as pp
    columns = []
    for c, k in zip(META, _ROW_KEYS):
        typ, vals = pp.typed([r.get(k) for r in rows])
        if c in _TEXT and all(v is None or isinstance(v, str) for v in vals):
            typ = pp.TEXT
        columns.append((c, typ, vals))
    columns += [(c, *pp.typed([r["params"].get(c) for r in rows])) for c in pcols]
    columns += [(c, *pp.typed([r["metrics"].get(c) for r in rows])) for c in mcols]
    with replacing(path) as tmp:
        pp.write(tmp, columns, {"pushbutton": json.dumps(meta)})


def parts(folder: Path) -> list[str]:
    """The files a reader reads: those the folder's manifest lists (see partset.py)."""
    from pushbutton.store import partset
    return [str(Path(folder) / n) for n in sorted(partset.current(folder))]


def columns_meta(folder: Path) -> dict:
    """Which columns are parameters and which are metrics (union over parts)."""
    import pyarrow.parquet as pq
    params, metrics = [], []
    for p in parts(folder):
        md = pq.read_schema(p).metadata or {}
        raw = md.get(b"pushbutton")
        if raw:
            m = json.loads(raw)
            params += [c for c in m["params"] if c not in params]
            metrics += [c for c in m["metrics"] if c not in metrics]
    return {"params": params, "metrics": metrics}


def latest_sql(folder: Path) -> str | None:
    """SQL for every stored result over all parts, one row per (task, bundle) (a compaction
    interrupted between its rename and its deletes leaves a row twice); None when there are
    none. Results of earlier runs stay: which row is a task's current one is decided by the task
    row (views.py)."""
    ps = parts(folder)
    if not ps:
        return None
    if len(ps) == 1 and Path(ps[0]).name.startswith("compact-"):  # deduplicated when written
        return "SELECT * FROM read_parquet('" + ps[0].replace("'", "''") + "')"
    lst = ", ".join("'" + p.replace("'", "''") + "'" for p in ps)
    return (f"SELECT * FROM read_parquet([{lst}], union_by_name=true) "
            f"QUALIFY row_number() OVER (PARTITION BY {N.TASK_ID}, {N.BUNDLE} "
            f"ORDER BY {N.FINISHED_AT} DESC) = 1")


def compact(folder: Path, min_parts: int = 16, newest_per_task: bool = True,
            committed=None, full: bool = True, by_size: bool = True) -> int:
    """Merge the parts of one experiment (full: into one file, as at the end of a run; else the
    tiered incremental merge run during a run). Crash-safe and safe for readers: the merged file
    is written, the manifest swapped, then the parts deleted. Results keep one row per (task,
    bundle) (`newest_per_task`: the name predates that); series (many rows per task) keep every
    row. DuckDB streams the copy, so memory stays flat whatever the size. `committed(names) ->
    set`: the parts that may be merged (those whose outcomes SQLite has committed; default: all).
    `by_size` False: a few parts are not merged for their bytes (see partset.compact)."""
    from pushbutton.store import partset
    return partset.compact(folder, committed=committed, full=full,
                           newest_per_task=newest_per_task, min_parts=min_parts,
                           by_size=by_size)


def write_series(path: Path, rows: list[dict], plain: bool = False) -> None:
    """rows: {task_id, step, time, m: {metric: value}} -> one Parquet part with the columns
    pb_task_id, pb_step, pb_time and the metrics under their own names (a pb_ name, which
    pushbutton.log refuses, is left out). `plain`: without pyarrow, as in write_part."""
    cols, seen = [], set()
    for r in rows:
        for k in r["m"]:
            if k not in seen and not N.reserved(k):
                seen.add(k)
                cols.append(k)
    if plain:
        from pushbutton.store import parquet_plain as pp
        columns = [(name, *pp.typed([r[k] for r in rows])) for name, k in
                   ((N.TASK_ID, "task_id"), (N.STEP, "step"), (N.TIME, "time"))]
        columns += [(c, *pp.typed([r["m"].get(c) for r in rows])) for c in cols]
        with replacing(path) as tmp:
            pp.write(tmp, columns)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq
    arrays = [_typed([r["task_id"] for r in rows]), _typed([r["step"] for r in rows]),
              _typed([r["time"] for r in rows])]
    names = [N.TASK_ID, N.STEP, N.TIME]
    for c in cols:
        arrays.append(_typed([r["m"].get(c) for r in rows]))
        names.append(c)
    with replacing(path) as tmp:
        pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp, compression="zstd")
