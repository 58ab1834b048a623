"""Every task's state as Arrow columns, read by SQLite and Arrow's CSV reader (views._state).

Reading 10^6 task rows as Python tuples and building Arrow arrays of them takes ~2.4 s; here
SQLite joins each chunk of rows into one text (fields split by the unit separator, rows by a
newline) and Arrow's CSV reader parses it in C: ~0.6 s. The same rows: a field holding a
separator or a line break would change a row's field count or the number of rows, and both are
checked; anything unusual gives None and views._state reads the rows one by one as before.
"""
from __future__ import annotations

from pushbutton.core import names as N

CHUNK = 500_000
_SEP = "\x1f"


def read_states(db, eid: int, idx_name: str):
    """pa.Table (N.TASK_ID, idx_name, N.STATUS, _bundle) of experiment `eid`, or None."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pc
    names = [N.TASK_ID, idx_name, N.STATUS, "_bundle"]
    types = {N.TASK_ID: pa.string(), idx_name: pa.int64(), N.STATUS: pa.string(),
             "_bundle": pa.string()}
    q = ("SELECT group_concat(id || char(31) || ifnull(idx, '') || char(31) || state || char(31) "
         "|| (CASE WHEN state = 'done' THEN ifnull(bundle, '') ELSE '' END), char(10)), "
         "count(*), sum(id = '' OR state = '' OR (state = 'done' AND bundle = '')) "
         "FROM tasks NOT INDEXED WHERE rowid BETWEEN ? AND ? AND exp = ?")
    # the whole table in page (rowid) order, a window of rowids at a time (as views._state
    # reads it NOT INDEXED: one pass over the pages, no index lookups)
    top = db.execute("SELECT max(rowid) FROM tasks").fetchone()[0] or 0
    tables = []
    for lo in range(0, top + 1, CHUNK):
        text, n, empty = db.execute(q, (lo, lo + CHUNK - 1, eid)).fetchone()
        if not n:
            continue
        if text is None or empty or "\r" in text:  # (an empty field would read as null)
            return None
        try:
            t = pc.read_csv(io.BytesIO(text.encode()),
                            read_options=pc.ReadOptions(column_names=names),
                            parse_options=pc.ParseOptions(delimiter=_SEP, quote_char=False,
                                                          newlines_in_values=False),
                            convert_options=pc.ConvertOptions(
                                column_types=types, null_values=[""],
                                strings_can_be_null=True, quoted_strings_can_be_null=False))
        except (pa.ArrowInvalid, UnicodeError):
            return None
        if t.num_rows != n:
            return None
        tables.append(t)
    if not tables:
        return None
    return pa.concat_tables(tables)
