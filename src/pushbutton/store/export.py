"""`pb results --format csv|json|parquet`: the results relation written by DuckDB's COPY, streamed.

The rows never become a pandas frame: DuckDB reads the Parquet parts and the task states and
writes the file itself, in a connection with a memory limit that spills to disk beyond it. The
file has the columns, names, order and values the frame path (`views.results` + pandas' writers)
gave: times as UTC ISO text with milliseconds (CSV, JSON) or timestamps in UTC (Parquet); NaN
written as a missing value, and ±inf too in JSON (as pandas wrote them); a parameter column of
text whose every value reads as a number becomes numbers (pandas' `to_numeric`, which the frame
path applied). The file is written under a temporary name and renamed, so an export cut short
leaves no half file; without `-o` it is copied to stdout from a temporary folder.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from pushbutton.core import memory, names as N
from pushbutton.core.errors import PushbuttonError

TIME_COLUMNS = (N.FINISHED_AT, "pb_t0", "pb_t1", N.TIME)  # (cli/tables.TIME_COLUMNS)
MEMORY = "128MB"   # what the export's DuckDB may hold before it spills to disk
THREADS = 1  # one thread: less memory, and the rows are written in their order
FORMATS = ("csv", "json", "parquet")
_INT = r"^\s*[+-]?[0-9]+\s*$"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(store, name: str, out: Path, spill: Path, memory: str | None):
    """The sandbox of views._sandbox (this experiment's folders only), plus the one file it
    writes, a memory limit and a folder to spill to."""
    import duckdb
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
              "threads": THREADS, "temp_directory": str(spill)}
    if memory:
        config["memory_limit"] = memory
    con = duckdb.connect(config=config)
    dirs = [str(store.dir / sub / name) + os.sep for sub in ("results", "series", "gathered")]
    con.execute("SET allowed_directories = [" + ", ".join(_lit(d) for d in dirs + [
        str(spill) + os.sep]) + "]")
    con.execute(f"SET allowed_paths = [{_lit(str(out))}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET enable_progress_bar = false")
    return con


def _time_text(c: str) -> str:
    """cli/tables.iso_utc(t, 3) in SQL: Python's fromtimestamp (the fraction rounded half to
    even to microseconds, a carry into the second), then the microseconds printed to 3 digits."""
    t = f"CASE WHEN isnan({c}) OR isinf({c}) THEN NULL ELSE {c} END"
    us = f"CAST(round_even(({t} - floor({t})) * 1e6, 0) AS BIGINT)"
    sec = f"(CAST(floor({t}) AS BIGINT) + ({us} >= 1000000)::BIGINT)"
    return (f"strftime(make_timestamp({sec} * 1000000), '%Y-%m-%dT%H:%M:%S') || "
            f"substr(format('{{:.3f}}', ({us} % 1000000) / 1e6), 2) || 'Z'")


def _numeric_text(con, view: str, cols: list[str]) -> dict:
    """Which text columns pandas' to_numeric turns into numbers: {column: 'BIGINT'|'DOUBLE'}
    (one scan for all of them)."""
    if not cols:
        return {}
    aggs = []
    for c in cols:
        x = _q(c)
        aggs.append(f"bool_and({x} IS NULL OR regexp_full_match({x}, '{_INT}'))")
        aggs.append(f"bool_and({x} IS NULL OR TRY_CAST(trim({x}) AS DOUBLE) IS NOT NULL)")
    row = con.execute(f"SELECT {', '.join(aggs)} FROM {view}").fetchone()
    out = {}
    for i, c in enumerate(cols):
        is_int, is_num = row[2 * i], row[2 * i + 1]
        if is_num is None:  # no rows
            continue
        if is_int:
            out[c] = "BIGINT"
        elif is_num:
            out[c] = "DOUBLE"
    return out


def _select(con, view: str, fmt: str, params: list[str], hidden: str) -> str:
    """The SELECT list over `view` that gives the frame path's values in `fmt`."""
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {view}").fetchall()}
    text_params = [c for c in params if types.get(c) == "VARCHAR"]
    numeric = _numeric_text(con, view, text_params)
    cols = []
    for c, ty in types.items():
        if c == hidden:
            continue
        x = _q(c)
        if c in numeric:
            x, ty = f"CAST(trim({x}) AS {numeric[c]})", numeric[c]
        floating = ty in ("DOUBLE", "FLOAT", "REAL")
        if c in TIME_COLUMNS and (floating or ty in ("BIGINT", "INTEGER", "HUGEINT",
                                                     "SMALLINT", "TINYINT", "UBIGINT")):
            d = f"CAST({x} AS DOUBLE)"
            if fmt == "parquet":
                x = (f"CASE WHEN isnan({d}) OR isinf({d}) THEN NULL "
                     f"ELSE to_timestamp({d}) END")
            else:
                x = _time_text(d)
        elif floating:
            bad = f"isnan({x}) OR isinf({x})" if fmt == "json" else f"isnan({x})"
            x = f"CASE WHEN {bad} THEN NULL ELSE {x} END"
        cols.append(f"{x} AS {_q(c)}")
    return ", ".join(cols)


def export(store, eid: int, name: str, fmt: str, output: str | None = None,
           where: str | None = None, run: int | None = None,
           limit: int | None = None) -> int:
    """Write every task's row (the `results` relation, as `exp.results()` has it) to `output`
    (None: stdout) in `fmt`; returns the number of rows written."""
    memory.import_arrow()  # the task states' table on malloc (core/memory), before DuckDB's threads
    import duckdb

    from pushbutton.store import views
    if fmt not in FORMATS:
        raise PushbuttonError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt == "parquet" and not output:
        raise PushbuttonError("--format parquet needs -o FILE.parquet")
    run = views._check_run(store, eid, run)
    if where:
        views.check_where(where)
    target = Path(output).resolve() if output else None
    if target is not None and target.is_dir():
        raise PushbuttonError(f"-o {output}: is a folder; give a file name")
    if target is not None and not target.parent.is_dir():  # before the temporary folder in it
        raise PushbuttonError(f"cannot write {target}: its folder {target.parent} does not "
                              f"exist; create it or give another -o path")
    work = Path(tempfile.mkdtemp(prefix=".pb-export-",
                                 dir=target.parent if target is not None else None))
    out = work / f"out.{fmt}"
    try:
        try:
            n = _write(store, eid, name, fmt, out, work, where, run, limit, MEMORY)
        except duckdb.OutOfMemoryException:  # what DuckDB could not spill: its default limit
            n = _write(store, eid, name, fmt, out, work, where, run, limit, None)
        if target is not None:
            os.replace(out, target)
        else:
            sys.stdout.flush()
            with open(out, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        return n
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(store, eid, name, fmt, out, work, where, run, limit, memory) -> int:
    """One COPY of the relation to `out` (DuckDB limited to `memory`, None: its default);
    returns the rows written."""
    import duckdb

    from pushbutton.store import views
    from pushbutton.store.integrity import check_read, store_fault
    con = _connect(store, name, out, work / "spill", memory)
    params, metrics = [], []
    try:
        params, metrics = views._build(con, store, eid, name, run)
        check_read(store, eid, name, con, whole=True)
        views._lock(con)
        order = f" ORDER BY {views._IDX} NULLS LAST, {N.TASK_ID}"
        # sorted once, by the COPY (the view sorts only to cut at a limit)
        con.execute("CREATE TEMP VIEW _pb_export AS SELECT * FROM _pb_results"
                    + (f" WHERE ({where})" if where else "")
                    + (f"{order} LIMIT {int(limit)}" if limit else ""))
        opts = {"csv": "FORMAT csv, HEADER", "json": "FORMAT json",
                "parquet": "FORMAT parquet, COMPRESSION zstd"}[fmt]
        sel = _select(con, "_pb_export", fmt, params, views._IDX)
        got = con.execute(f"COPY (SELECT {sel} FROM _pb_export{order}) TO "
                          f"{_lit(str(out))} ({opts})").fetchone()
        return int(got[0]) if got and got[0] is not None else 0
    except duckdb.Error as e:
        if isinstance(e, duckdb.OutOfMemoryException) or not where or store_fault(e):
            raise
        raise PushbuttonError(
            f"--where {where!r}: {str(e).splitlines()[0]}; columns are: {N.TASK_ID}, "
            f"{', '.join(params + metrics)}, {', '.join(N.TAIL)}") from None
    finally:
        con.close()
