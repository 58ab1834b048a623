"""The results table of the experiment page: server-side sorting, filtering (the `where`
language of `pb results`), paging and column choice over the store's results view.

Each experiment's table is written once to a Parquet file by a child process
(ui/snapshot.py, from `store.views.connect`: the one definition of a task's current result)
and every page is a DuckDB query over that file, in a connection limited in memory and
sandboxed like `pb sql`'s (it reads that file and nothing else). A 10^6-row table is thus one
columnar scan per page, and the server never holds the table's rows in Python. The file is
re-made when the store changed (counts, runs, the results manifest) and it is older than
`FRESH_S`; while a new one is made the old one is served (the page says how old it is and that
a newer one is on its way). The first copy of an experiment is waited for `first_wait_s` at
most: past that the page says it is being made (`NotReady`) instead of hanging for the 10-15 s
a 10^6-row copy takes."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.errors import PushbuttonError

FRESH_S = 2.0       # a copy younger than this is used as it is
PAGE_SIZES = (20, 50, 100, 500)
HIDDEN = (N.ERROR, N.HOST, N.NODE, N.RUN_ID, N.FINISHED_AT)  # what `pb results` hides too
TABLE = "pb_ui_results"
MEMORY = "160MB"    # DuckDB's limit in the server (it spills to its temporary folder beyond)
BUILD_TIMEOUT_S = 600
FIRST_WAIT_S = 1.0  # how long a page waits for an experiment's first copy before saying so
# a replaced copy stays open this long: a request that took it just before a newer one came
# reads it to the end (closed at once, its query failed: a page with no rows, a 500)
RETIRE_S = 30.0
ROW = "_pb_ui_row"  # the space order: the file's row number


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Snapshot:
    def __init__(self, con, columns: list, key, built: float, took: float, path: Path):
        self.con, self.columns, self.key = con, columns, key
        self.built, self.took, self.path = built, took, path
        self.lock = threading.Lock()  # one query at a time on a DuckDB connection
        self.cache: dict = {}  # what is computed from this copy (the figures, by version)
        self.cache_lock = threading.Lock()
        self.warmed = threading.Event()  # set once Tables.warm has run on it


class NotReady(PushbuttonError):
    """The experiment's first copy is still being made."""


class Tables:
    """The experiments' results files and a connection over each, shared by the threads."""

    def __init__(self, first_wait_s: float | None = None):
        self.first_wait_s = first_wait_s  # None: FIRST_WAIT_S
        self.warm = None  # called as warm(root, name, snapshot) in the build's thread, after it
        self._snaps: dict = {}
        self._lock = threading.Lock()
        self._building: dict = {}  # name -> threading.Event set when its build ends
        self._errors: dict = {}    # name -> (why its last build failed, the store's key then)
        self._retired: list = []   # (when replaced, Snapshot): closed RETIRE_S after
        self.dir = Path(tempfile.mkdtemp(prefix="pb-ui-"))
        import atexit
        atexit.register(self.close)

    def close(self):
        import shutil
        for snap in list(self._snaps.values()) + [s for _, s in self._retired]:
            snap.con.close()
        self._snaps.clear()
        self._retired.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def updating(self, name: str) -> bool:
        """Whether a newer copy of the experiment is being made."""
        return name in self._building

    @property
    def page_wait(self) -> float:
        """How long a page waits for an experiment's first copy."""
        return FIRST_WAIT_S if self.first_wait_s is None else self.first_wait_s

    def get(self, store, eid: int, name: str, wait: float = BUILD_TIMEOUT_S,
            counts: dict | None = None) -> Snapshot:
        """The experiment's copy (the last one while a newer is made); its first copy is
        waited for `wait` seconds (the pages: `page_wait`), then NotReady."""
        key = change_key(store, eid, name, counts)
        snap = self._snaps.get(name)
        if snap is not None and (snap.key == key or time.time() - snap.built < FRESH_S):
            return snap
        failed = self._errors.get(name)
        if snap is None and failed is not None and failed[1] == key and \
                name not in self._building:
            raise PushbuttonError(failed[0])  # the same store: the same failure, said again
        done = self._start(store.root, eid, name, key)
        if snap is not None:
            return snap  # the new one is on its way
        if not done.wait(wait):
            n = sum((store.counts(eid) if counts is None else counts).values())
            raise NotReady(f"the results table of {name!r} is being copied for the pages "
                           f"({n} tasks; 10^6 take about 15 s): shown when it is ready")
        snap = self._snaps.get(name)
        if snap is None:
            raise PushbuttonError(self._errors.get(name, ("the results table could not be "
                                                          "read",))[0])
        return snap

    def _start(self, root, eid, name, key) -> threading.Event:
        with self._lock:
            ev = self._building.get(name)
            if ev is not None:
                return ev
            ev = self._building[name] = threading.Event()

        def work():
            snap = None
            try:
                snap = self._build(root, name, key)
            finally:
                with self._lock:
                    self._building.pop(name, None)
                ev.set()
            if snap is not None:
                try:  # what the figures request will ask of this copy, made before it asks
                    if self.warm is not None:
                        self.warm(root, name, snap)
                except Exception:  # noqa: BLE001 - the request computes (and reports) it then
                    pass
                finally:
                    snap.warmed.set()
        threading.Thread(target=work, daemon=True, name="pb-ui-results").start()
        return ev

    def _build(self, root, name, key):
        import duckdb
        t0 = time.time()
        n = len(list(self.dir.glob("*.parquet")))
        path = self.dir / f"t{n}-{os.getpid()}-{int(t0 * 1000)}.parquet"
        r = subprocess.run([sys.executable, "-m", "pushbutton.ui.snapshot", str(root), name,
                            str(path)], capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S)
        if r.returncode != 0:
            self._errors[name] = ((r.stderr.strip().splitlines() or ["?"])[-1], key)
            return None
        con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False,
                                     "memory_limit": MEMORY, "threads": 2})
        con.execute(f"SET temp_directory = {_lit(str(self.dir / 'spill'))}")
        con.execute(f"SET allowed_directories = [{_lit(str(self.dir) + os.sep)}]")
        con.execute("SET enable_external_access = false")
        con.execute(f"CREATE VIEW {TABLE} AS SELECT * EXCLUDE (file_row_number), "
                    f"file_row_number AS {ROW} FROM read_parquet({_lit(str(path))}, "
                    "file_row_number = true)")
        con.execute("SET lock_configuration = true")
        columns = [r[0] for r in con.execute(f"DESCRIBE {TABLE}").fetchall() if r[0] != ROW]
        snap = Snapshot(con, columns, key, t0, time.time() - t0, path)
        self._errors.pop(name, None)
        now = time.time()
        with self._lock:
            old = self._snaps.get(name)
            self._snaps[name] = snap
            if old is not None:
                self._retired.append((now, old))
            due = [s for t, s in self._retired if now - t >= RETIRE_S]
            self._retired = [(t, s) for t, s in self._retired if now - t < RETIRE_S]
        for s in due:
            with s.lock:
                s.con.close()
            s.path.unlink(missing_ok=True)
        return snap


def change_key(store, eid: int, name: str, counts: dict | None = None):
    """What changes whenever the results view would: the counts per state, the last run, the
    results folder's manifest."""
    c = store.counts(eid) if counts is None else counts
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
    order = (f" ORDER BY {_q(sort)} {'DESC' if desc else 'ASC'} NULLS LAST, {ROW}" if sort
             else f" ORDER BY {ROW}")
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
        cur = snap.con.execute(f"SELECT * EXCLUDE ({ROW}) FROM {TABLE} WHERE {N.TASK_ID} = ?",
                               [task_id])
        r = cur.fetchone()
        names = [d[0] for d in cur.description]
    return dict(zip(names, r)) if r else {}
