"""A bundle's tasks as arrays, for the fast path of ingest (harvest/arrow.py).

Built once per bundle (at its first fast ingest) from the bundle's task dict: the ids as an
Arrow string array, rowids and attempts as numpy arrays, the parameters as one Arrow table read
from their canonical JSON. A chunk's end lines are then matched to the bundle's tasks with
Arrow's hash lookup (`positions`), and its rows' rowids, attempts and parameter columns are cut
out by position: no Python work per task. Which tasks ended (`Marks`) is a flag per position,
set without making a Python string per task, and still answers the set questions the
line-by-line path, finalize and the SLURM harvest ask of it.
"""
from __future__ import annotations

import io
from operator import itemgetter


class TaskIndex:
    """The tasks of `tasks` (id -> (rowid, attempt, params as canonical JSON)) in its order."""

    def __init__(self, tasks: dict):
        import numpy as np
        from pushbutton.core.arrays import strings
        self.source = tasks
        self.n = len(tasks)
        self.ids = strings(list(tasks))
        vals = tasks.values()
        self.rowid = np.fromiter(map(itemgetter(0), vals), np.int64, self.n)
        self.attempt = np.fromiter(map(itemgetter(1), vals), np.int64, self.n)
        self._params = None     # Arrow table, or False where Arrow cannot read them
        self._where = None      # id -> position, built when a question about one id comes
        self._next = 0          # where the next chunk's tasks probably start

    def positions(self, ids):
        """Positions (numpy int64) of `ids` among these tasks; None when one is not of them.
        A worker runs its bundle's tasks in order, so a chunk's end lines usually name the
        tasks right after the last chunk's: that guess is checked by one comparison, and only
        when it fails are the ids looked up by hash."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pushbutton.core.arrays import strings, to_numpy
        if isinstance(ids, pa.ChunkedArray):  # (no chunks: combine_chunks would import pandas)
            ids = ids.combine_chunks() if ids.num_chunks else strings([])
        m, k = len(ids), self._next
        if m and k + m <= self.n and not ids.null_count and \
                pc.all(pc.equal(ids, self.ids.slice(k, m))).as_py():
            self._next = k + m
            return np.arange(k, k + m, dtype=np.int64)
        pos = pc.index_in(ids, value_set=self.ids)
        if pos.null_count:
            return None
        p = to_numpy(pos).astype(np.int64)
        if m:
            self._next = int(p[-1]) + 1
        return p

    def position(self, tid) -> int | None:
        if self._where is None:
            self._where = {t: i for i, t in enumerate(self.source)}
        return self._where.get(tid)

    def params(self, plain):
        """The parameters as columns (`plain` makes nested values JSON text), one row per task;
        None when Arrow's JSON reader cannot give them one type each (the line-by-line path
        then)."""
        if self._params is None:
            import pyarrow as pa
            import pyarrow.json as pj
            text = "\n".join(map(itemgetter(2), self.source.values())).encode()
            try:
                tab = pj.read_json(io.BytesIO(text), read_options=pj.ReadOptions(
                    block_size=max(1 << 20, len(text) + 1)))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                self._params = False
                return None
            if tab.num_rows != self.n:
                self._params = False
                return None
            self._params = pa.table({c: plain(tab[c].combine_chunks())
                                     for c in tab.column_names})
        return self._params or None


def of(b) -> TaskIndex:
    """The bundle's index (made again if its task dict was replaced, as `pb repair` does)."""
    ix = b.index
    if ix is None or ix.source is not b.tasks:
        ix = b.index = TaskIndex(b.tasks)
        b.ended.bind(ix)
    return ix


class Marks:
    """A set of task ids (the tasks of a bundle that ended): a Python set, plus one flag per
    position of the bundle's index that the fast path sets for a whole chunk at once. Every id
    of the set that is one of the index's tasks is flagged too, so the fast path's check (none
    of a chunk's tasks ended before) looks at the flags alone."""

    def __init__(self, items=()):
        self._py = set(items)
        self._ix = None
        self._flags = None

    def bind(self, ix: TaskIndex) -> None:
        import numpy as np
        if self._ix is not None:  # the bundle's tasks were replaced: keep what was flagged
            self._py.update(self._flagged())
        self._ix, self._flags = ix, np.zeros(ix.n, dtype=bool)
        for t in self._py:
            i = ix.position(t)
            if i is not None:
                self._flags[i] = True

    # -- the fast path: positions of the bound index ------------------------------------
    def any_at(self, pos) -> bool:
        return bool(self._flags[pos].any())

    def mark(self, pos) -> None:
        self._flags[pos] = True

    def _flagged(self) -> list:
        if self._ix is None or not self._flags.any():  # (no numpy import on the slow path)
            return []
        import numpy as np
        from pushbutton.core.arrays import ints
        return self._ix.ids.take(ints(np.flatnonzero(self._flags))).to_pylist()

    def missing(self, tasks) -> list:
        """The ids of `tasks` not in the set, in its order."""
        ix = self._ix
        if ix is None or ix.source is not tasks:
            return [t for t in tasks if t not in self]
        import numpy as np
        from pushbutton.core.arrays import ints
        left = np.flatnonzero(~self._flags)
        if not len(left):
            return []
        return [t for t in ix.ids.take(ints(left)).to_pylist() if t not in self._py]

    # -- the set protocol the rest of ingest uses ------------------------------------------
    def __contains__(self, tid) -> bool:
        if tid in self._py:
            return True
        if self._ix is None:
            return False
        i = self._ix.position(tid)
        return i is not None and bool(self._flags[i])

    def add(self, tid) -> None:
        self._py.add(tid)
        if self._ix is not None:
            i = self._ix.position(tid)
            if i is not None:
                self._flags[i] = True

    def update(self, tids) -> None:
        for t in tids:
            self.add(t)

    def discard(self, tid) -> None:
        self._py.discard(tid)
        if self._ix is not None:
            i = self._ix.position(tid)
            if i is not None:
                self._flags[i] = False

    def __iter__(self):
        return iter(self._py.union(self._flagged()))

    def __len__(self) -> int:
        return len(self._py.union(self._flagged()))

    def __bool__(self) -> bool:
        return bool(self._py) or (self._ix is not None and bool(self._flags.any()))

    def __repr__(self) -> str:
        return f"Marks({sorted(self)!r})"
