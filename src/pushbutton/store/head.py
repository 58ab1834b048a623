"""The first rows of a results table without pandas or pyarrow (`pb results --limit N`).

Importing pandas and pyarrow costs more than reading 20 rows through the state index. For the
first rows alone (views.results with a limit and no where/run), the task states go into DuckDB
as a small table, the column roles are read from the parts' footers by DuckDB, and the rows come
back as Python values in a `Rows`, which `cli.tables.print_frame` prints as it prints a frame.

A `Rows` is only given where it prints exactly as the pandas frame would: every column of a type
whose pandas form is known (integers and floats: numeric; booleans and text: not), and a text
parameter only where one of its values is plainly text (pandas would otherwise read it as
numbers). Anything else gives None, and the caller builds the frame as before.
"""
from __future__ import annotations

import json

from pushbutton.core import names as N

_IDX = "_pb_idx"
NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE"}
PLAIN = NUMERIC | {"BOOLEAN", "VARCHAR", '"NULL"'}  # NULL: all None, an object column
_NUMBERISH = set("0123456789+-.eE_, \t\ninfatyINFATY")


class Col:
    """One column: its values (None for null) and whether pandas would call it numeric."""

    def __init__(self, values: list, numeric: bool):
        self.values, self.numeric = values, numeric

    def tolist(self) -> list:
        return list(self.values)

    def __eq__(self, other):  # df[c] == x, then .all()
        return _All(v == other for v in self.values)

    __hash__ = None


class _All:
    def __init__(self, it):
        self._v = list(it)

    def all(self) -> bool:
        return all(self._v)


class Rows:
    """The few pandas frame operations print_frame uses, over Python lists."""

    def __init__(self, columns: list[str], data: dict[str, list], numeric: dict[str, bool]):
        self.columns, self._data, self._numeric = list(columns), data, numeric
        self.attrs: dict = {}

    def __len__(self) -> int:
        return len(self._data[self.columns[0]]) if self.columns else 0

    def __getitem__(self, key):
        if isinstance(key, list):
            return Rows(key, {c: self._data[c] for c in key}, self._numeric)
        return Col(self._data[key], self._numeric[key])

    def head(self, n: int) -> "Rows":
        return Rows(self.columns, {c: v[:n] for c, v in self._data.items()}, self._numeric)

    def drop(self, columns) -> "Rows":
        return self[[c for c in self.columns if c not in set(columns)]]


def _plainly_text(values: list) -> bool:
    """Some value pandas.to_numeric cannot read as a number (so it leaves the column as text)."""
    return any(isinstance(v, str) and not set(v) <= _NUMBERISH for v in values)


def rows(con, query: str, params: list[str]) -> Rows | None:
    """The query's rows as a Rows, or None where they might print otherwise than as the pandas
    frame (views.results then builds that)."""
    cur = con.execute(query)
    names = [d[0] for d in cur.description]
    types = [str(d[1]) for d in cur.description]
    got = cur.fetchall()
    if not got or any(t not in PLAIN for t in types) or len(set(names)) != len(names):
        return None
    data = {c: [r[i] for r in got] for i, c in enumerate(names)}
    for c, t in zip(names, types):
        if t in ("VARCHAR", '"NULL"') and c in params and not _plainly_text(data[c]):
            return None  # pandas.to_numeric might make numbers of it
    return Rows(names, data, {c: t in NUMERIC for c, t in zip(names, types)})


def put_state(con, store, eid: int, only: list[str]) -> None:
    """The states of tasks `only` as the table _pb_state (what views._state gives, in DuckDB)."""
    q = (f"SELECT id, idx, state, CASE WHEN state='done' THEN bundle END FROM tasks WHERE exp=? "
         f"AND id IN ({','.join('?' * len(only))})")
    got = store.db.execute(q, (eid, *only)).fetchall()
    con.execute(f"CREATE TEMP TABLE _pb_state ({N.TASK_ID} VARCHAR, {_IDX} BIGINT, "
                f"{N.STATUS} VARCHAR, _bundle VARCHAR)")
    if got:
        con.executemany("INSERT INTO _pb_state VALUES (?, ?, ?, ?)", got)


def none_pending(store, eid: int, only: list[str]) -> bool:
    """No task of `only` is a scheduled task not done (the pending part is then empty)."""
    return not store.db.execute(
        "SELECT 1 FROM tasks WHERE exp=? AND idx IS NOT NULL AND state != 'done' AND id IN "
        f"({','.join('?' * len(only))}) LIMIT 1", (eid, *only)).fetchone()


def put_no_pending(con) -> None:
    """The empty pending part, typed as an empty pandas frame of them registers ("NULL")."""
    cols = ("_tid", "_attempts", "_error_kind", "_error", "_duration", "_host", "_node", "_run",
            "_t1")
    con.execute("CREATE VIEW _pb_pending AS SELECT " + ", ".join(f"NULL AS {c}" for c in cols)
                + " WHERE false")


def columns_meta(con, files: list[str]) -> dict:
    """parts.columns_meta, read by DuckDB (no pyarrow): parameters and metrics, union over the
    parts in their order."""
    params, metrics = [], []
    if not files:
        return {"params": params, "metrics": metrics}
    lst = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    got = dict(con.execute(f"SELECT file_name, value FROM parquet_kv_metadata([{lst}]) "
                           "WHERE decode(key) = 'pushbutton'").fetchall())
    for f in files:
        raw = got.get(f)
        if raw:
            m = json.loads(raw)
            params += [c for c in m["params"] if c not in params]
            metrics += [c for c in m["metrics"] if c not in metrics]
    return {"params": params, "metrics": metrics}
