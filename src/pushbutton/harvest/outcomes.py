"""Reading a bundle's outcome lines (what worker.py writes) and turning them into SQL rows: the
pieces of ingest that hold no state of their own."""
from __future__ import annotations

import json
import re
from pathlib import Path

from pushbutton.store.counts import ranges_of as ranges  # the driver uses it too

ID_IN_LINE = re.compile(rb'"id":\s*"([0-9a-f]+)"')


def log_slice(lg) -> str | None:
    """The [out0, out1, err0, err1] offsets of a task's output in its bundle's logs, as stored."""
    return "[%d,%d,%d,%d]" % tuple(lg) if lg else None


def valid_record(rec) -> bool:
    """An outcome line as the worker writes it: an object with a task id and an event, and (for
    an end line) fields of the right kinds."""
    if not (isinstance(rec, dict) and isinstance(rec.get("id"), str)
            and isinstance(rec.get("ev"), str)):
        return False
    if rec["ev"] != "end":
        return True
    get = rec.get  # once per outcome of a run: spelled out, no generator (a small run's cost)
    lg = get("log")
    return (isinstance(get("metrics"), _DICT) and isinstance(get("t0"), _NUM)
            and isinstance(get("t1"), _NUM) and isinstance(get("error"), _STR)
            and isinstance(get("kind"), _STR) and isinstance(get("host"), _STR)
            and isinstance(get("node"), _STR)  # absent in older lines
            and (lg is None or (isinstance(lg, list) and len(lg) == 4
                                and isinstance(lg[0], int) and isinstance(lg[1], int)
                                and isinstance(lg[2], int) and isinstance(lg[3], int))))


_NUM, _STR, _DICT = (int, float, type(None)), (str, type(None)), (dict, type(None))


def task_in_line(line: bytes) -> str | None:
    """The task id of a (possibly torn) outcome line, if one can be read from it."""
    m = ID_IN_LINE.search(line)
    return m.group(1).decode() if m else None


def series_rows(chunk: bytes) -> list[dict]:
    """series.jsonl lines (`pushbutton.log(step, ...)`) -> rows of the series table."""
    rows = []
    for line in chunk.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        m = rec.get("m") if isinstance(rec, dict) else None
        if isinstance(m, dict) and rec.get("task"):
            rows.append({"task_id": rec["task"], "step": rec.get("step"), "time": rec.get("t"),
                         "m": m})
    return rows


def started_at(folder: Path, tid: str):
    """(t0, log slice) of a task that started and never ended: from its start line's offsets
    to the end of the bundle's logs (what a segfault or os._exit left)."""
    key = b'{"id":"%s","ev":"start"' % tid.encode()
    try:
        data = (folder / "outcomes.jsonl").read_bytes()
    except OSError:
        return None, None
    i = data.rfind(key)
    if i < 0:
        return None, None
    try:
        rec = json.loads(data[i:data.index(b"\n", i)])
        o0, e0 = rec["log"]
    except (ValueError, KeyError, TypeError):
        return None, None
    sizes = []
    for name in ("stdout.log", "stderr.log"):
        try:
            sizes.append((folder / name).stat().st_size)
        except OSError:
            sizes.append(0)
    return rec.get("t"), "[%d,%d,%d,%d]" % (o0, max(o0, sizes[0]), e0, max(e0, sizes[1]))


def runs_a_task(folder: Path) -> bool:
    """Whether a bundle's worker is inside a task now: the last complete line of its
    outcomes.jsonl is a start line (a worker runs its bundle's tasks one after another, so a
    bundle runs at most one task at a time; one with no outcomes yet has not started)."""
    try:
        with open(Path(folder) / "outcomes.jsonl", "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return False
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if not lines:
        return False
    last = lines[-1] if tail.endswith(b"\n") or len(lines) < 2 else lines[-2]
    if not tail.endswith(b"\n"):  # an end line being written: its task is still in there
        return True
    return last.startswith(b'{"id":"') and b'","ev":"start"' in last[:64]


def spans(parts) -> list[tuple[int, int]]:
    """Consecutive runs of the rowids in `parts` (numpy arrays or lists; any order, repeats
    allowed) as [(first, last)]: in numpy when a part is an array (the fast path), else in
    Python (a run on the line-by-line path imports no numpy)."""
    if all(isinstance(p, list) for p in parts):
        return ranges(sorted({r for p in parts for r in p}))
    import numpy as np
    r = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if not len(r):
        return []
    step = np.diff(r)
    if not (step > 0).all():  # (a bundle's rows come in order: the sort is rarely needed)
        r = np.unique(r)
        step = np.diff(r)
    cut = np.flatnonzero(step != 1)
    first = np.concatenate((r[:1], r[cut + 1]))
    last = np.concatenate((r[cut], r[-1:]))
    return list(zip(first.tolist(), last.tolist()))


def range_rows(pieces) -> list[tuple]:
    """(bundle, run, attempts, rowids) pieces of the successful tasks -> (attempt, bundle, run,
    first, last) rows: one UPDATE per run of consecutive tasks."""
    out = []
    for bid, run, atts, rowids in pieces:
        if isinstance(rowids, list):
            groups: dict = {}
            for a, r in zip(atts, rowids):
                groups.setdefault(a, []).append(r)
            out.extend((a, bid, run, f, z) for a, rs in groups.items() for f, z in ranges(rs))
            continue
        import numpy as np
        uniq = np.unique(atts).tolist()
        for a in uniq:
            sel = rowids if len(uniq) == 1 else rowids[atts == a]
            out.extend((a, bid, run, f, z) for f, z in spans([sel]))
    return out


def write_failures(db, fail_sql, attempts_sql) -> None:
    """Failed attempts: the task's state (pending again, or failed) and its attempts row."""
    if fail_sql:
        db.executemany("UPDATE tasks SET state=?, attempts=?, bundle=?, run=?, t0=?, t1=?, "
                       "host=?, node=?, log=?, error_kind=?, error=?, cause=? WHERE rowid=?",
                       fail_sql)
        db.executemany("INSERT INTO attempts(task, n, run, bundle, kind, error, traceback, t0, "
                       "t1, host, node, log) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", attempts_sql)
