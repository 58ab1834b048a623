"""The results table of the experiment page: server-side sorting, filtering (the `where`
language of `pb results`), paging and column choice over the store's results view.

Each experiment's table is copied once into an in-memory DuckDB table (from
`store.views.connect`, the one definition of a task's current result) and queried there, so a
page of a 10^6-row table is one indexed-free scan, not a rebuild of the view. The copy is
refreshed when the store changed (counts, runs, the results manifest) and is older than
`FRESH_S`; a copy that took long to build is refreshed in the background and the old one is
served meanwhile (the page says how old it is). At most `KEEP` copies are kept."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

from pushbutton.core import names as N
from pushbutton.core.errors import PushbuttonError

FRESH_S = 2.0       # a copy younger than this is used as it is
SLOW_BUILD_S = 0.5  # a copy that took longer is refreshed in the background
KEEP = 2            # copies kept (experiments whose tables were looked at last)
PAGE_SIZES = (20, 50, 100, 500)
HIDDEN = (N.ERROR, N.HOST, N.NODE, N.RUN_ID, N.FINISHED_AT)  # what `pb results` hides too
TABLE = "pb_ui_results"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Snapshot:
    def __init__(self, con, columns: list, key, built: float, took: float):
        self.con, self.columns, self.key = con, columns, key
        self.built, self.took = built, took
        self.lock = threading.Lock()  # one query at a time on a DuckDB connection


class Tables:
    """The copies of the experiments' results tables, shared by the server's threads."""

    def __init__(self):
        self._snaps: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._building: set = set()

    def get(self, store, eid: int, name: str) -> Snapshot:
        key = change_key(store, eid, name)
        with self._lock:
            snap = self._snaps.get(name)
            if snap is not None:
                self._snaps.move_to_end(name)
        if snap is not None and (snap.key == key or time.time() - snap.built < FRESH_S):
            return snap
        if snap is not None and snap.took > SLOW_BUILD_S:
            self._refresh_later(store.root, eid, name)
            return snap
        return self._build(store, eid, name, key)

    def _build(self, store, eid, name, key) -> Snapshot:
        from pushbutton.store.views import connect
        t0 = time.time()
        con = connect(store, name)
        con.execute(f"CREATE TEMP TABLE {TABLE} AS SELECT * FROM results")
        columns = [r[0] for r in con.execute(f"DESCRIBE {TABLE}").fetchall()]
        snap = Snapshot(con, columns, key, t0, time.time() - t0)
        with self._lock:
            old = self._snaps.pop(name, None)
            self._snaps[name] = snap
            while len(self._snaps) > KEEP:
                self._snaps.popitem(last=False)[1].con.close()
        if old is not None:
            with old.lock:
                old.con.close()
        return snap

    def _refresh_later(self, root, eid, name):
        with self._lock:
            if name in self._building:
                return
            self._building.add(name)

        def work():
            from pushbutton.store.database import Store
            store = Store(root, create=False)
            try:
                self._build(store, eid, name, change_key(store, eid, name))
            except Exception:  # noqa: BLE001 - the next request builds (and reports) it
                pass
            finally:
                store.close()
                with self._lock:
                    self._building.discard(name)
        threading.Thread(target=work, daemon=True, name=f"pb-ui-results-{name}").start()


def change_key(store, eid: int, name: str):
    """What changes whenever the results view would: the counts per state, the last run, the
    results folder's manifest."""
    import os
    c = store.counts(eid)
    run = store.db.execute("SELECT max(id), max(coalesce(ended, 0)) FROM runs WHERE exp=?",
                           (eid,)).fetchone()
    try:
        st = os.stat(store.dir / "results" / name / "MANIFEST.json")
        manifest = (st.st_mtime_ns, st.st_size)
    except OSError:
        manifest = None
    return (tuple(sorted(c.items())), tuple(run), manifest)


def default_columns(columns: list) -> list:
    return [c for c in columns if c not in HIDDEN]


def query(snap: Snapshot, where: str | None = None, sort: str | None = None,
          desc: bool = False, page: int = 0, size: int = 50, cols: list | None = None) -> dict:
    """One page of the table: {'columns', 'rows' (lists), 'total' (rows matching), 'page',
    'pages', 'size', 'sort', 'desc', 'where', 'error', 'as_of'}."""
    import duckdb

    from pushbutton.store.views import check_where
    size = size if size in PAGE_SIZES else 50
    shown = [c for c in (cols or []) if c in snap.columns] or default_columns(snap.columns)
    if N.TASK_ID not in shown:
        shown = [N.TASK_ID] + shown
    if sort not in snap.columns:
        sort = None
    out = {"columns": shown, "rows": [], "total": 0, "page": 0, "pages": 1, "size": size,
           "sort": sort, "desc": bool(desc), "where": where or "", "error": None,
           "as_of": snap.built, "all_columns": snap.columns}
    cond = ""
    if where:
        try:
            check_where(where, "the filter")
        except PushbuttonError as e:
            out["error"] = str(e)
            return out
        cond = f" WHERE ({where})"
    order = (f" ORDER BY {_q(sort)} {'DESC' if desc else 'ASC'} NULLS LAST, rowid" if sort
             else " ORDER BY rowid")
    sel = ", ".join(_q(c) for c in shown)
    with snap.lock:
        try:
            total = snap.con.execute(f"SELECT count(*) FROM {TABLE}{cond}").fetchone()[0]
            pages = max(1, -(-total // size))
            page = min(max(0, int(page)), pages - 1)
            rows = snap.con.execute(f"SELECT {sel} FROM {TABLE}{cond}{order} LIMIT {size} "
                                    f"OFFSET {page * size}").fetchall()
        except duckdb.Error as e:
            out["error"] = (f"the filter {where!r}: {str(e).splitlines()[0]}; columns are: "
                            + ", ".join(snap.columns))
            return out
    out.update(rows=[list(r) for r in rows], total=total, page=page, pages=pages)
    return out


def row(snap: Snapshot, task_id: str) -> dict:
    """The task's row of the table ({} when it is not in the current space)."""
    with snap.lock:
        cur = snap.con.execute(f"SELECT * FROM {TABLE} WHERE {N.TASK_ID} = ?", [task_id])
        r = cur.fetchone()
        names = [d[0] for d in cur.description]
    return dict(zip(names, r)) if r else {}
