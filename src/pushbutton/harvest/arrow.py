"""The fast path of ingest: outcome lines parsed by Arrow's JSON reader (C++), not line by line in
Python, so 10^6 results cost seconds. Anything unusual (a torn line, types Arrow cannot unify)
returns None and the Ingestor takes its line-by-line path, which handles every case."""
from __future__ import annotations

import json

from pushbutton.core import names as N
from pushbutton.core.arrays import bools, ints, strings, to_numpy
from pushbutton.harvest import taskindex


def parse(b, chunk: bytes, run_id: int, param_names: list[str]):
    """-> (ok pieces, failed records, Arrow table of successes or None, (n, mean duration)) or
    None. Nothing in `b` changes until every step that may give up (return None) has passed.
    The lines go through one Arrow read (a worker writes its start lines to starts.jsonl; those
    of an earlier worker's bundle, between its end lines, are cut out with numpy first). The chunk's
    tasks are matched to the bundle's by position in its index (harvest/taskindex.py), not
    through Python strings."""
    import pyarrow.compute as pc
    got = _read_lines(chunk)
    if got is None:
        return None
    ends, start_ids = got
    names = set(ends.column_names)
    ix = taskindex.of(b)
    kept = _first_ends(b, ix, ends, names)
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
        if isinstance(seen, set):
            b.ended.update(seen)
        else:  # positions in the bundle's index
            b.ended.mark(seen)
    failed = ends.take(ints(keep_fail)).to_pylist() if len(keep_fail) else []
    if not len(keep_ok):
        commit()
        return [], failed, None, (0, None)
    whole = len(keep_ok) == len(ends)
    ok_tbl = ends if whole else ends.take(ints(keep_ok))
    if isinstance(seen, set):
        pos_ok = ix.positions(ok_tbl["id"])
    else:
        pos_ok = seen if whole else seen[_numpy(keep_ok)]
    got = _ok_table(b, ix, ok_tbl, pos_ok, names, run_id, param_names)
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
    body, laid_out = _split_starts(chunk)
    try:
        tab = _read_json(body) if len(body) else pa.table({"id": strings([]), "ev": strings([])})
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
    is_end = pc.equal(tab["ev"], strings(["end"])[0])
    if pc.all(is_end).as_py() is not False:  # the usual chunk: end lines only
        ends, start_ids = tab, strings([])
    else:
        ends = tab.filter(is_end)
        start_ids = tab["id"].filter(pc.equal(tab["ev"], strings(["start"])[0]))
        # (combine_chunks of no chunks builds from a Python list: it would import pandas)
        start_ids = start_ids.combine_chunks() if start_ids.num_chunks else strings([])
    drop = [c for c in ("t",) if c in names]
    if laid_out is not None:
        start_ids = pa.concat_arrays([laid_out, start_ids]) if len(start_ids) else laid_out
    return (ends.drop_columns(drop) if drop else ends), start_ids


BLOCK = 4 << 20  # Arrow parses blocks of this size in parallel (one 16-MB block: one thread)


def _read_json(body):
    """Arrow's JSON reader over the lines (bytes or a numpy byte array, read in place), in
    blocks its threads share; a line longer than a block (a task's big metric) makes it refuse,
    and the lines are read again as one block."""
    import pyarrow as pa
    import pyarrow.json as pj
    buf = pa.py_buffer(body)
    try:
        return pj.read_json(pa.BufferReader(buf), read_options=pj.ReadOptions(block_size=BLOCK))
    except pa.ArrowInvalid:
        if len(body) <= BLOCK:
            raise
    return pj.read_json(pa.BufferReader(buf), read_options=pj.ReadOptions(
        block_size=max(1 << 26, len(body) + 1)))


_HEAD, _MID = b'{"id":"', b'","ev":"start"'  # a start line as worker.py lays it out
_ID = 20  # hex digits of a task id (core/ids: blake2b-80)


def _split_starts(chunk: bytes):
    """(the chunk without the start lines that have worker.py's layout (bytes, or a numpy byte
    array), their task ids as an Arrow array or None). A worker writes them to starts.jsonl;
    a bundle an earlier worker wrote has them here, between the end lines. They carry nothing
    the fast path reads but the id (it asks only which tasks started), so they are cut out
    with numpy rather than parsed: Arrow then reads the end lines alone. The line-by-line path
    reads start lines by their layout too (Ingestor._records); every other line goes to Arrow
    as before."""
    import numpy as np
    import pyarrow as pa
    if not chunk.endswith(b"\n") or _MID not in chunk:  # (a worker's bundle now: starts.jsonl)
        return chunk, None
    buf = np.frombuffer(chunk, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    if len(nl) < 2:
        return chunk, None
    first = np.concatenate(([0], nl[:-1] + 1))
    width = len(_HEAD) + _ID + len(_MID)
    # a start line has '"' where an end line has its blank ({"id": "...)
    cand = np.flatnonzero((nl - first > width) & (buf[np.minimum(first + 6, nl)] == 34))
    if not len(cand):
        return chunk, None
    # each candidate's first bytes, gathered through a window view of the buffer (an index
    # array per byte cost more than the rest of the split)
    pre = np.lib.stride_tricks.sliding_window_view(buf, width)[first[cand]]
    want = np.frombuffer(_HEAD + b"0" * _ID + _MID, dtype=np.uint8)
    fixed = np.ones(width, dtype=bool)
    fixed[len(_HEAD):len(_HEAD) + _ID] = False
    digits = pre[:, len(_HEAD):len(_HEAD) + _ID]
    hexed = ((digits >= 48) & (digits <= 57)) | ((digits >= 97) & (digits <= 102))
    start = (pre[:, fixed] == want[fixed]).all(axis=1) & hexed.all(axis=1)
    if not start.any():
        return chunk, None
    ids = np.ascontiguousarray(digits[start])
    k = len(ids)
    laid_out = pa.Array.from_buffers(pa.string(), k, [None, pa.py_buffer(
        (np.arange(k + 1, dtype=np.int32) * _ID).tobytes()), pa.py_buffer(ids.tobytes())])
    keep = np.ones(len(first), dtype=bool)
    keep[cand[start]] = False
    body = buf[np.repeat(keep, nl - first + 1)]  # the other lines, as they are (no copy
    return body, laid_out                          # to bytes: Arrow reads the array's buffer)


def _numpy(rows):
    """Row numbers (an Arrow array from a compute function, or a list) as a numpy array."""
    import numpy as np
    if isinstance(rows, list):
        return np.array(rows, dtype=np.int64)
    return to_numpy(rows)


def _distinct(pos, n: int) -> bool:
    """Whether positions (each below n) are all different (no task ends twice in a chunk)."""
    import numpy as np
    if len(pos) and pos[-1] - pos[0] == len(pos) - 1 and (np.diff(pos) == 1).all():
        return True  # consecutive
    seen = np.zeros(n, dtype=bool)
    seen[pos] = True
    return int(np.count_nonzero(seen)) == len(pos)


def _first_ends(b, ix, ends, names):
    """Row numbers of the successful and the failed ends, one end per task and bundle, and the
    tasks they end: positions in the bundle's index (a numpy array) in the usual chunk, else a
    set of ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    okt = ends["ok"].type if "ok" in names else pa.null()
    p = ix.positions(ends["id"]) if pa.types.is_boolean(okt) or pa.types.is_null(okt) else None
    if p is not None:
        if not b.ended.any_at(p) and _distinct(p, ix.n):
            # the usual chunk: each of its tasks ends once, for the first time
            if pa.types.is_null(okt):
                return np.arange(0), np.arange(len(p)), p
            ok = pc.fill_null(ends["ok"], bools([False])[0])  # (to_numpy would import pandas)
            return pc.indices_nonzero(ok), pc.indices_nonzero(pc.invert(ok)), p
    ids = ends["id"].to_pylist()
    oks = ends["ok"].to_pylist() if "ok" in names else [False] * len(ids)
    keep_ok, keep_fail, seen = [], [], set()
    for i, (tid, ok) in enumerate(zip(ids, oks)):
        if tid not in b.tasks or tid in b.ended or tid in seen:
            continue
        seen.add(tid)
        (keep_ok if ok else keep_fail).append(i)
    return keep_ok, keep_fail, seen


def _ok_table(b, ix, ok_tbl, pos, names, run_id: int, param_names):
    """(ok piece, result table, durations) of the successful ends (`pos`: their tasks'
    positions in the bundle's index); None to give up."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    if not {"t0", "t1"} <= names or ("metrics" in names and not (
            pa.types.is_struct(ok_tbl["metrics"].type)
            or pa.types.is_null(ok_tbl["metrics"].type))):
        return None
    n = len(pos)
    host, node = _text(ok_tbl, names, "host", n), _text(ok_tbl, names, "node", n)
    if host is None or node is None:  # not text: the line-by-line path marks them damaged
        return None
    ptab = ix.params(plain)
    if ptab is None:
        return None
    take = ints(pos)
    attempts = ix.attempt[pos]
    ok_sql = (b.id, run_id, attempts, ix.rowid[pos])
    dur = pc.subtract(ok_tbl["t1"], ok_tbl["t0"])
    cols = {N.TASK_ID: ok_tbl["id"], N.BUNDLE: pa.repeat(strings([b.id])[0], n),
            N.RUN_ID: ints(np.full(n, run_id, dtype=np.int64)), N.ATTEMPTS: ints(attempts),
            N.DURATION: dur, N.HOST: host, N.NODE: node, N.FINISHED_AT: ok_tbl["t1"]}
    pcols = list(param_names) + [c for c in ptab.column_names if c not in param_names]
    pcols = [c for c in pcols if c in ptab.column_names]
    for c in pcols:
        cols[c] = ptab[c].take(take)
    mcols = _metric_columns(ok_tbl, names, set(param_names) | set(pcols), cols)
    meta = {"params": pcols, "metrics": mcols}
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
            cols[name] = plain(m.field(i))
            mcols.append(name)
    return mcols


def plain(col):
    """Nested values (lists, dicts) as JSON text, like the line-by-line path stores them."""
    import pyarrow as pa
    t = col.type
    if pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_null(t):
        if pa.types.is_null(t):
            return pa.nulls(len(col), pa.float64())
        return strings([None if v is None else json.dumps(v, sort_keys=True)
                        for v in col.to_pylist()])
    return col
