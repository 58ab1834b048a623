"""Files gathered from task folders (`pb gather FILE`, harvest/gather.py): one table per file.

`.pushbutton/gathered/<experiment>/<view>/` holds Parquet parts and `GATHER.json`, the manifest
(written atomically, last): the file's name, its parameter columns, and per task the
generation, size and mtime of the file that was read, the part holding its rows (or why it
could not be read). A gather round writes the rows of the files it re-read as one new part
and then swaps the manifest, so a reader sees the rows before the round or after it, never
half. A part row carries pb_task_id, the parameters, pb_row (the row's place in its file), the
file's columns and pb_part (its part), and only the rows of the part the manifest names for
their task count: a file read again supersedes its earlier rows.

Rows belong to a task's current generation: the table is the manifest's entries whose
generation is the task's and whose task is done now, so a `--rerun` (a new generation, the
task pending again) never shows old and new rows together, even before the next gather.
`pb sql` sees each table as a view named after the file (`results.csv` -> results_csv).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.errors import StoreError
from pushbutton.core.files import atomic_write

MANIFEST = "GATHER.json"
ROW = "pb_row"
PART = "pb_part"
_TAKEN = {"results", "tasks", "series"}   # the views pb sql has already


def view_name(file: str) -> str:
    """The `pb sql` view of a gathered file: its name with every other character as `_`."""
    v = re.sub(r"[^A-Za-z0-9_]", "_", file).strip("_") or "file"
    if v[0].isdigit():
        v = "f_" + v
    return "gathered_" + v if v.lower() in _TAKEN else v


def root(store, experiment: str) -> Path:
    return store.dir / "gathered" / experiment


def folder(store, experiment: str, file: str) -> Path:
    return root(store, experiment) / view_name(file)


def read_manifest(d: Path) -> dict | None:
    p = Path(d) / MANIFEST
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"{p}: cannot be read ({e})") from None
    try:
        m = json.loads(text)
        if not isinstance(m.get("tasks"), dict) or not isinstance(m.get("parts"), list):
            raise ValueError("no 'tasks' or 'parts'")
    except (ValueError, AttributeError) as e:
        raise StoreError(f"{p} is damaged ({e})", ) from None
    return m


def write_manifest(d: Path, m: dict) -> None:
    atomic_write(Path(d) / MANIFEST, json.dumps(m, separators=(",", ":")))


def current(store, eid: int, m: dict) -> list:
    """[(task id, part name, place in the space)] of the entries that count now: rows of the
    task's current generation, the task done."""
    tasks = m.get("tasks", {})
    out = []
    for tid, idx, gen in store.db.execute(
            "SELECT id, idx, gen FROM tasks NOT INDEXED WHERE exp=? AND state='done' AND "
            "idx IS NOT NULL",
            (eid,)):
        e = tasks.get(tid)
        if e and e.get("part") and int(e.get("gen") or 0) == int(gen or 0):
            out.append((tid, e["part"], idx))
    return out


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def add_view(con, store, eid: int, d: Path, view: str | None = None) -> str | None:
    """Create the view of one gathered file in DuckDB connection `con` (which may read `d`);
    returns its name (None when `d` holds no manifest)."""
    import pyarrow as pa
    m = read_manifest(d)
    if m is None:
        return None
    view = view or m.get("view") or d.name
    cur = current(store, eid, m)
    parts = sorted({p for _, p, _ in cur})
    files = [str(Path(d) / p) for p in parts]
    keep = f"_pb_keep_{view}"
    con.register(keep, pa.table({N.TASK_ID: pa.array([c[0] for c in cur], pa.string()),
                                 "part": pa.array([c[1] for c in cur], pa.string()),
                                 "idx": pa.array([c[2] for c in cur], pa.int64())}))
    if not files:
        con.execute(f"CREATE VIEW {_q(view)} AS SELECT NULL::VARCHAR AS {N.TASK_ID}, "
                    f"NULL::BIGINT AS {ROW} WHERE false")
        return view
    lst = ", ".join(_lit(f) for f in files)
    src = f"read_parquet([{lst}], union_by_name=true)"
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    params = [c for c in m.get("params", []) if c in cols]
    rest = [c for c in cols if c not in params and c not in (N.TASK_ID, ROW, PART)]
    select = ", ".join(f"r.{_q(c)}" for c in [N.TASK_ID] + params + rest + [ROW])
    con.execute(f"CREATE VIEW {_q(view)} AS SELECT {select} FROM {src} r JOIN {keep} k "
                f"ON k.{N.TASK_ID} = r.{N.TASK_ID} AND k.part = r.{PART} "
                f"ORDER BY k.idx, r.{N.TASK_ID}, r.{ROW}")
    return view


def add_views(con, store, eid: int, experiment: str) -> list:
    """Every gathered file of the experiment as a view of `con` (pb sql)."""
    base = root(store, experiment)
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        if d.is_dir() and (d / MANIFEST).exists():
            v = add_view(con, store, eid, d)
            if v:
                out.append(v)
    return out


def sandbox(dirs):
    """A DuckDB connection that may read only `dirs` (as views.py's: no writes, no
    extensions, locked)."""
    import duckdb
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute("SET allowed_directories = [" + ", ".join(_lit(str(x) + "/") for x in dirs)
                + "]")
    con.execute("SET enable_external_access = false")
    return con


def frame(store, eid: int, experiment: str, file: str):
    """The gathered table of `file` as a DataFrame (what `pb gather` prints)."""
    d = folder(store, experiment, file)
    con = sandbox([d])
    view = add_view(con, store, eid, d, view="_pb_gathered")
    con.execute("SET lock_configuration = true")
    if view is None:
        import pandas as pd
        return pd.DataFrame(columns=[N.TASK_ID, ROW])
    return con.execute(f"SELECT * FROM {_q(view)}").df()


def files(store, experiment: str) -> list:
    """(file, view) of every file gathered for the experiment."""
    base = root(store, experiment)
    out = []
    if base.is_dir():
        for d in sorted(base.iterdir()):
            m = read_manifest(d) if d.is_dir() else None
            if m:
                out.append((m.get("file"), m.get("view") or d.name))
    return out
