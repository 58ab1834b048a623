"""An experiment's recorded task times, read once per submit round: the bundle sizes
(submit.bundle_size's measured duration) and the balanced plan (balance.py) use the same figures.

A done attempt's duration lives only in the results' Parquet parts (pb_duration_s: the tasks
table keeps t0/t1 of failed attempts, not of done ones); a failed attempt's in the tasks table
(t1 - t0). Only the two columns pb_task_id and pb_duration_s are read (column projection,
ParquetFile: no pyarrow.dataset), and they stay Arrow arrays (about 30 bytes a recorded task at
10^6, no Python object per task); what the plan needs is drawn from them vectorised: the mean,
a stride sample of up to SAMPLE tasks to fit the predictor, and the own time of each task about
to be planned (`pc.index_in`). The times only guide the plan: a part that cannot be read is
left out.
"""
from __future__ import annotations

import math

SAMPLE = 20_000  # task times read to fit the predictor (a stride over the experiment's tasks)


class Recorded:
    """What the store recorded of an experiment's task durations (see the module's doc)."""

    def __init__(self, ids=None, durations=None, failed: dict | None = None):
        self.ids, self.durations = ids, durations  # Arrow arrays (done attempts), or None
        self.failed = failed or {}  # task id -> t1 - t0 of a failed attempt (up to 4 * SAMPLE)
        self.done = 0 if durations is None else len(durations)
        self.n = self.done + len(self.failed)
        self._mean = None
        if self.done:
            import pyarrow.compute as pc
            self._mean = pc.mean(durations).as_py()

    @property
    def mean(self) -> float | None:
        """The mean duration of the done attempts recorded (None before the first one)."""
        return self._mean

    def sample(self, k: int = SAMPLE) -> dict:
        """Task id -> seconds of up to about k recorded tasks, a stride over the results (the
        last one recorded of a task wins), plus the failed attempts' times."""
        out = dict(self.failed)
        if self.done:
            step = max(1, math.ceil(self.done / k))
            out.update(zip(self.ids[::step].to_pylist(), self.durations[::step].to_pylist()))
        return out

    def own(self, ids: list[str]) -> list:
        """The last recorded time of each of these tasks (None where there is none): the
        Parquet row of a done attempt, else a failed attempt's time. One vectorised pass
        over the recorded ids (a hash of the wanted ones), whatever their number."""
        got = [None] * len(ids)
        if self.done and ids:
            import pyarrow.compute as pc
            pos = pc.index_in(self.ids, value_set=_strings(ids))
            hit = pc.is_valid(pos)  # the recorded rows of wanted tasks, in recorded order
            for i, v in zip(pos.filter(hit).to_pylist(), self.durations.filter(hit).to_pylist()):
                got[i] = v  # a later row of the same task wins
        if self.failed:
            got = [self.failed.get(t) if g is None else g for t, g in zip(ids, got)]
        return got


def read(store, eid: int, name: str, ids: bool = True) -> Recorded:
    """The experiment's recorded times; ids=False: the durations only (the mean)."""
    failed = {}
    if ids:
        failed = dict(store.db.execute(  # not 'done' (the index on state: no 10^6-row scan)
            "SELECT id, t1 - t0 FROM tasks WHERE exp=? AND state IN ('pending', 'running', "
            "'failed', 'cancelled') AND t0 IS NOT NULL AND t1 IS NOT NULL AND t1 >= t0 "
            "LIMIT ?", (eid, 4 * SAMPLE)))
    d = store.dir / "results" / name
    from pushbutton.store import parts
    files = parts.parts(d) if d.is_dir() else []
    if not files:
        return Recorded(failed=failed)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pushbutton.core import names as N
    cols = [N.TASK_ID, N.DURATION] if ids else [N.DURATION]
    tables = []
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            if set(cols) <= set(pf.schema_arrow.names):
                tables.append(pf.read(columns=cols))
        except (OSError, pa.ArrowException):
            continue
    if not tables:
        return Recorded(failed=failed)
    t = pa.concat_tables(tables, promote_options="default")
    if t[N.DURATION].null_count:
        t = t.filter(pc.is_valid(t[N.DURATION]))
    if not t.num_rows:
        return Recorded(failed=failed)
    dur = _one(t[N.DURATION], pa.float64())
    return Recorded(_one(t[N.TASK_ID], pa.string()) if ids else None, dur, failed)


def _strings(xs: list[str]):
    """An Arrow string array from Python strings, built from its buffers: pa.array(list)
    imports pandas (about 1 s) to ask whether the list is one of its objects."""
    import itertools
    from array import array
    import pyarrow as pa
    data = [x.encode() for x in xs]
    ends = array("q", itertools.accumulate(map(len, data), initial=0))
    return pa.LargeStringArray.from_buffers(len(xs), pa.py_buffer(ends),
                                            pa.py_buffer(b"".join(data))).cast(pa.string())


def _one(col, typ):
    """A column as one array of this type (no copy where it is one already)."""
    a = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return a if a.type == typ else a.cast(typ)


def mean_duration(store, eid: int) -> float | None:
    """The mean recorded duration of the experiment's done attempts (None before the first)."""
    row = store.db.execute("SELECT name FROM experiments WHERE id=?", (eid,)).fetchone()
    return read(store, eid, row[0], ids=False).mean if row else None
