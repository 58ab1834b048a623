"""An experiment's recorded task times, read once per submit round: the bundle sizes
(submit.bundle_size's measured duration) and the balanced plan (balance.py) use the same figures.

A done attempt's duration lives only in the results' Parquet parts (pb_duration_s: the tasks
table keeps t0/t1 of failed attempts, not of done ones); a failed attempt's in the tasks table
(t1 - t0). Only pb_duration_s is read at once, and pb_task_id + pb_finished_at when the plan
needs them (column projection, ParquetFile: no pyarrow.dataset); they stay Arrow arrays (about
40 bytes a recorded task, no Python object per task), and what the plan needs is drawn from them
vectorised: the mean, a stride sample of up to SAMPLE tasks to fit the predictor, and the own
time of each task about to be planned (`pc.index_in`). The times only guide the plan: a part
that cannot be read is left out.
"""
from __future__ import annotations

import math

SAMPLE = 20_000  # task times read to fit the predictor (a stride over the experiment's tasks)


class Recorded:
    """What the store recorded of an experiment's task durations (see the module's doc). The
    durations are read at once (8 bytes a task); the task ids (about 25 bytes a task, most of
    the reading) only when asked for: a harvest's retry round, whose predictor is fitted
    already and whose tasks never had a done attempt, reads none."""

    def __init__(self, files: list, failed: dict):
        self.files = files
        self.failed = failed  # task id -> t1 - t0 of a failed attempt (up to 4 * SAMPLE)
        self._ids = self._finished = None
        self.durations = self._load(False)[1]
        self.done = 0 if self.durations is None else len(self.durations)
        self.n = self.done + len(self.failed)
        self.mean = None  # the mean duration of the done attempts (None before the first)
        if self.done:
            import pyarrow.compute as pc
            self.mean = pc.mean(self.durations).as_py()

    @property
    def ids(self):
        """The task ids of `durations`, row for row (read on first use)."""
        if self._ids is None and self.done:
            self._ids, self.durations, self._finished = self._load(True)
        return self._ids

    def _load(self, ids: bool):
        """(ids or None, durations, finish times or None) of the done attempts: Arrow arrays
        (or all None)."""
        if not self.files:
            return None, None, None
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from pushbutton.core import names as N
        cols = [N.TASK_ID, N.DURATION]  # both must be there, whichever are read
        tables = []
        for f in self.files:
            try:
                pf = pq.ParquetFile(f)
                have = pf.schema_arrow.names
                if set(cols) <= set(have):
                    tables.append(pf.read(columns=cols + [N.FINISHED_AT] * (
                        N.FINISHED_AT in have) if ids else cols[1:]))
            except (OSError, pa.ArrowException):
                continue  # the times only guide the plan
        if not tables:
            return None, None, None
        t = pa.concat_tables(tables, promote_options="default")
        if t[N.DURATION].null_count:
            t = t.filter(pc.is_valid(t[N.DURATION]))
        if not t.num_rows:
            return None, None, None
        if not ids:
            return None, _one(t[N.DURATION], pa.float64()), None
        fin = (_one(t[N.FINISHED_AT], pa.float64()) if N.FINISHED_AT in t.column_names
               else None)
        return _one(t[N.TASK_ID], pa.string()), _one(t[N.DURATION], pa.float64()), fin

    def sample(self, k: int = SAMPLE) -> dict:
        """Task id -> seconds of up to about k recorded tasks, a stride over the results (the
        last one recorded of a task wins), plus the failed attempts' times."""
        out = dict(self.failed)
        ids = self.ids
        if ids is not None:
            step = max(1, math.ceil(len(ids) / k))
            out.update(zip(ids[::step].to_pylist(), self.durations[::step].to_pylist()))
        return out

    def own(self, ids: list[str], done_before: list[bool] | None = None) -> list:
        """The latest recorded time of each of these tasks (None where there is none): the
        Parquet row of its last done attempt (by pb_finished_at; the parts are in no time
        order), else a failed attempt's time. One vectorised pass
        over the recorded ids (a hash of the wanted ones), whatever their number.
        done_before: per task, whether it can have a done attempt (one that was reset for a
        rerun, attempt0 > 0); the Parquet rows are looked up for those only."""
        got = [None] * len(ids)
        look = ids if done_before is None else [t for t, d in zip(ids, done_before) if d]
        if self.done and look:
            import pyarrow.compute as pc
            pos = pc.index_in(self.ids, value_set=_strings(look))
            hit = pc.is_valid(pos)  # the recorded rows of wanted tasks, in recorded order
            at = (range(len(ids)) if done_before is None
                  else [i for i, d in enumerate(done_before) if d])
            fin = ([0.0] * len(look) if self._finished is None
                   else self._finished.filter(hit).to_pylist())
            when = [None] * len(ids)
            for i, v, f in zip(pos.filter(hit).to_pylist(),
                               self.durations.filter(hit).to_pylist(), fin):
                j = at[i]
                if when[j] is None or (f or 0.0) >= when[j]:  # the later attempt wins
                    got[j], when[j] = v, f or 0.0
        if self.failed:
            got = [self.failed.get(t) if g is None else g for t, g in zip(ids, got)]
        return got


def read(store, eid: int, name: str, ids: bool = True) -> Recorded:
    """The experiment's recorded times; ids=False: for the mean only (no failed attempts'
    times, and `ids` is not to be asked for)."""
    failed = {}
    if ids:
        failed = dict(store.db.execute(  # not 'done' (the index on state: no 10^6-row scan)
            "SELECT id, t1 - t0 FROM tasks WHERE exp=? AND state IN ('pending', 'running', "
            "'failed', 'cancelled') AND state != 'done' AND t0 IS NOT NULL AND t1 IS NOT NULL "
            "AND t1 >= t0 "
            "LIMIT ?", (eid, 4 * SAMPLE)))
    d = store.dir / "results" / name
    from pushbutton.store import parts
    return Recorded(parts.parts(d) if d.is_dir() else [], failed)


def _strings(xs: list[str]):
    """An Arrow string array from Python strings, built from its buffers: pa.array(list)
    imports pandas (about 1 s) to ask whether the list is one of its objects."""
    import itertools
    from array import array
    import pyarrow as pa
    joined = "".join(xs)
    if joined.isascii():  # task ids: one bytes object, not one per id
        data, lens = joined.encode(), map(len, xs)
    else:
        parts = [x.encode() for x in xs]
        data, lens = b"".join(parts), map(len, parts)
    ends = array("q", itertools.accumulate(lens, initial=0))
    return pa.LargeStringArray.from_buffers(len(xs), pa.py_buffer(ends),
                                            pa.py_buffer(data)).cast(pa.string())


def _one(col, typ):
    """A column as one array of this type (no copy where it is one already)."""
    a = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return a if a.type == typ else a.cast(typ)


def mean_duration(store, eid: int) -> float | None:
    """The mean recorded duration of the experiment's done attempts (None before the first)."""
    row = store.db.execute("SELECT name FROM experiments WHERE id=?", (eid,)).fetchone()
    return read(store, eid, row[0], ids=False).mean if row else None
