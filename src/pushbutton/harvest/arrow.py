"""The fast path of ingest: outcome lines parsed by Arrow's JSON reader (C++), not line by line in
Python, so 10^6 results cost seconds. Anything unusual (a torn line, types Arrow cannot unify)
returns None and the Ingestor takes its line-by-line path, which handles every case."""
from __future__ import annotations

import io
import json

from pushbutton.core import names as N
from pushbutton.core.arrays import bools, ints, strings


def parse(b, chunk: bytes, run_id: int, param_names: list[str]):
    """-> (ok_sql, failed records, Arrow table of successes or None, (n, mean duration)) or
    None. Nothing in `b` changes until every step that may give up (return None) has passed.
    The whole chunk, start lines too, goes through one Arrow read: splitting the lines in
    Python first cost as much as the read."""
    import pyarrow.compute as pc
    got = _read_lines(chunk)
    if got is None:
        return None
    ends, start_ids = got
    names = set(ends.column_names)
    kept = _first_ends(b, ends, names)
    if kept is None:
        return None
    keep_ok, keep_fail, seen = kept
    # only a start without an end in this chunk is worth keeping (finalize asks about those)
    if len(start_ids):
        open_ids = start_ids.filter(pc.invert(pc.is_in(start_ids, value_set=ends["id"]))) \
            if len(ends) else start_ids
        started = [t for t in open_ids.to_pylist() if t in b.tasks]
    else:
        started = []

    def commit():
        b.started.update(started)
        b.ended.update(seen)
    failed = ends.take(ints(keep_fail)).to_pylist() if len(keep_fail) else []
    if not len(keep_ok):
        commit()
        return [], failed, None, (0, None)
    ok_tbl = ends if len(keep_ok) == len(ends) else ends.take(ints(keep_ok))
    got = _ok_table(b, ok_tbl, names, run_id, param_names)
    if got is None:
        return None
    commit()
    ok_sql, table, durations = got
    return ok_sql, failed, table, durations


def _read_lines(chunk: bytes):
    """(end lines as an Arrow table, ids of the start lines); None when Arrow cannot read the
    lines as outcomes (a torn line, a line that is not an outcome: the line-by-line path
    decides)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    try:
        tab = pj.read_json(io.BytesIO(chunk), read_options=pj.ReadOptions(block_size=1 << 26))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    names = set(tab.column_names)
    if not {"id", "ev"} <= names:
        return None
    if tab["id"].null_count or tab["ev"].null_count or not all(
            pa.types.is_string(tab[c].type) for c in ("id", "ev")) or not all(
            pa.types.is_floating(tab[c].type) or pa.types.is_integer(tab[c].type)
            or pa.types.is_null(tab[c].type) for c in ("t0", "t1") if c in names):
        return None  # a line that is not an outcome (`null`, `{}`): the line-by-line path
    start_ids = tab["id"].filter(pc.equal(tab["ev"], strings(["start"])[0]))
    ends = tab.filter(pc.equal(tab["ev"], strings(["end"])[0]))
    drop = [c for c in ("t",) if c in names]
    return (ends.drop_columns(drop) if drop else ends), start_ids.combine_chunks()


def _first_ends(b, ends, names):
    """Row numbers of the successful and the failed ends, one end per task and bundle."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    ids = ends["id"].to_pylist()
    seen = set(ids)
    okt = ends["ok"].type if "ok" in names else pa.null()
    if len(seen) == len(ids) and seen.isdisjoint(b.ended) and seen <= b.tasks.keys() and (
            pa.types.is_boolean(okt) or pa.types.is_null(okt)):
        # the usual chunk: each of its tasks ends once, for the first time
        if pa.types.is_null(okt):
            return np.arange(0), np.arange(len(ids)), seen
        ok = pc.fill_null(ends["ok"], bools([False])[0])  # (to_numpy would import pandas)
        return pc.indices_nonzero(ok), pc.indices_nonzero(pc.invert(ok)), seen
    oks = ends["ok"].to_pylist() if "ok" in names else [False] * len(ids)
    keep_ok, keep_fail, seen = [], [], set()
    for i, (tid, ok) in enumerate(zip(ids, oks)):
        if tid not in b.tasks or tid in b.ended or tid in seen:
            continue
        seen.add(tid)
        (keep_ok if ok else keep_fail).append(i)
    return keep_ok, keep_fail, seen


def _ok_table(b, ok_tbl, names, run_id: int, param_names):
    """(ok_sql, result table, durations) of the successful ends; None to give up."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    if not {"t0", "t1"} <= names or ("metrics" in names and not (
            pa.types.is_struct(ok_tbl["metrics"].type)
            or pa.types.is_null(ok_tbl["metrics"].type))):
        return None
    ok_ids = ok_tbl["id"].to_pylist()
    tasks = b.tasks
    info = [tasks[t] for t in ok_ids]  # (rowid, attempt, params text)
    ok_sql = [(att, b.id, run_id, rowid) for rowid, att, _ in info]
    dur = pc.subtract(ok_tbl["t1"], ok_tbl["t0"])
    n = len(ok_ids)
    host, node = _text(ok_tbl, names, "host", n), _text(ok_tbl, names, "node", n)
    if host is None or node is None:  # not text: the line-by-line path marks them damaged
        return None
    cols = {N.TASK_ID: ok_tbl["id"], N.BUNDLE: pa.repeat(strings([b.id])[0], n),
            N.RUN_ID: ints([run_id] * n), N.ATTEMPTS: ints([a for _, a, _ in info]),
            N.DURATION: dur, N.HOST: host, N.NODE: node, N.FINISHED_AT: ok_tbl["t1"]}
    try:
        ptab = pj.read_json(io.BytesIO("\n".join(p for _, _, p in info).encode()))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    pcols = list(param_names) + [c for c in ptab.column_names if c not in param_names]
    for c in pcols:
        if c in ptab.column_names:
            cols[c] = _plain(ptab[c])
    mcols = _metric_columns(ok_tbl, names, set(pcols), cols)
    meta = {"params": [c for c in pcols if c in ptab.column_names], "metrics": mcols}
    table = pa.table(cols).replace_schema_metadata({"pushbutton": json.dumps(meta)})
    counted = n - dur.null_count
    return ok_sql, table, (counted, pc.mean(dur).as_py() if counted else None)


def _text(tbl, names, key: str, n: int):
    """A text field of the end lines as a string column (null where the lines lack it: a
    line written before the field existed); None when it holds something else."""
    import pyarrow as pa
    if key not in names or pa.types.is_null(tbl[key].type):
        return pa.nulls(n, pa.string())
    return tbl[key] if pa.types.is_string(tbl[key].type) else None


def _metric_columns(ok_tbl, names, params: set, cols: dict) -> list[str]:
    """The metrics struct as columns (added to `cols`); returns their names."""
    import pyarrow as pa
    mcols = []
    if "metrics" in names and pa.types.is_struct(ok_tbl["metrics"].type):
        m = ok_tbl["metrics"].combine_chunks()
        for i in range(m.type.num_fields):
            name = m.type.field(i).name
            if name in params or N.reserved(name):  # the worker refuses these; never shadow
                continue
            cols[name] = _plain(m.field(i))
            mcols.append(name)
    return mcols


def _plain(col):
    """Nested values (lists, dicts) as JSON text, like the line-by-line path stores them."""
    import pyarrow as pa
    t = col.type
    if pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_null(t):
        if pa.types.is_null(t):
            return pa.nulls(len(col), pa.float64())
        return strings([None if v is None else json.dumps(v, sort_keys=True)
                        for v in col.to_pylist()])
    return col
