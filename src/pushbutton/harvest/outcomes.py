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


STARTS = "starts.jsonl"  # a bundle's start lines (worker.py); a bundle written by an earlier
                         # worker has them in outcomes.jsonl, between its end lines
_START = re.compile(rb'^\{"id": ?"([0-9a-f]+)", ?"ev": ?"start"', re.M)


def _start_lines(folder: Path):
    """The bytes holding the bundle's start lines: starts.jsonl, else (an earlier worker's
    bundle) outcomes.jsonl."""
    for name in (STARTS, "outcomes.jsonl"):
        try:
            return (Path(folder) / name).read_bytes()
        except OSError:
            continue
    return b""


def started_ids(folder: Path) -> set:
    """The tasks of a bundle that have a start line (asked only of a bundle that stopped with
    tasks not ended: which of them were mid-run)."""
    return {m.group(1).decode() for m in _START.finditer(_start_lines(folder))}


def started_at(folder: Path, tid: str):
    """(t0, log slice) of a task that started and never ended: from its start line's offsets
    to the end of the bundle's logs (what a segfault or os._exit left)."""
    data = _start_lines(folder)
    i = data.rfind(b'{"id":"%s","ev":"start"' % tid.encode())
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


def _last_line(path: Path) -> bytes | None:
    """The file's last line (b"" where it is empty; its torn part where the last write is not
    complete: no newline at the end); None where there is no file. Read from the end: a
    tail of 4 KB, more only where one line is longer (a task's big metrics)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            want = 4096
            while True:
                f.seek(max(0, size - want))
                tail = f.read()
                body = tail[:-1] if tail.endswith(b"\n") else tail
                k = body.rfind(b"\n")
                if k >= 0 or want >= size:
                    return body[k + 1:] + (b"\n" if tail.endswith(b"\n") else b"")
                want *= 16
    except OSError:
        return None


def _id(line: bytes) -> str | None:
    m = ID_IN_LINE.search(line[:64])
    return m.group(1).decode() if m else None


def runs_a_task(folder: Path) -> bool:
    """Whether a bundle's worker is inside a task now. A worker runs its bundle's tasks one
    after another, so it is when its last start line names another task than its last end line
    (or an end line is being written); a bundle with no start line has not started."""
    folder = Path(folder)
    end = _last_line(folder / "outcomes.jsonl")
    if end and not end.endswith(b"\n"):  # an end line being written: its task is in there
        return True
    start = _last_line(folder / STARTS)
    if start is None:  # an earlier worker's bundle: its last outcome line is a start line
        return bool(end) and end.startswith(b'{"id":"') and b'","ev":"start"' in end[:64]
    if not start.strip():
        return False
    if not start.endswith(b"\n"):  # a start line being written
        return True
    return _id(start) != _id(end or b"")


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
