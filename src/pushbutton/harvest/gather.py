"""`pb gather FILE [EXPERIMENT]` (ClusterJob's `reduce`): FILE from every done task's folder,
one table with the parameter columns added, stored so that `pb sql` sees it
(store/gathered.py holds the layout and the reading side).

A task's folder is where worker.py puts it: `<task root>/<experiment>/<ab>/<id>[.<gen>]` (the
task root: `.pushbutton/tasks` here, or the `task_root` of the bundle that ran the task when
that folder is on this machine, as on a shared file system). `pb run` tasks write there
through $PB_TASK_DIR / `pushbutton.current_task().dir`; `pb parrun script.R / .m` tasks run in
it.

Incremental: the manifest remembers (generation, size, mtime) of each file it read, so a round
reads only the files of tasks done since, or changed; one gather runs at a time per file (a
lock). A done task whose file is missing, is not a table, or is a link out of its folder is
listed with the reason — never left out in silence.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.errors import PushbuttonError
from pushbutton.harvest import gather_formats as F
from pushbutton.store import bundlelogs
from pushbutton.store import gathered as G
from pushbutton.store.parts import _typed, columns_meta

COMPACT_PARTS = 16     # more parts than this: the live rows are merged into one
GRACE_S = 10.0         # merged-away parts stay this long for readers still reading them


@dataclass
class Gathered:
    file: str
    view: str
    frame: object                        # the table (pandas)
    done: int = 0                        # done tasks
    with_rows: int = 0                   # done tasks whose file gave rows
    read: int = 0                        # files read in this round
    not_done: int = 0                    # tasks of the space not done (yet)
    problems: list = field(default_factory=list)   # (task id, params, reason)
    notes: list = field(default_factory=list)


def safe_name(name) -> str:
    """The experiment's folder name under the task root (worker.py's _safe_name)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name or "_")) \
        .lstrip(".") or "_"


def task_dir(task_root, experiment, tid: str, gen: int) -> Path:
    """As worker.py's _task_dir: <root>/<experiment>/<ab>/<id>, then <id>.<gen> after --rerun."""
    base = Path(task_root) / safe_name(experiment) / tid[:2] / tid
    return base if not gen else base.with_name(f"{tid}.{int(gen)}")


def check_file(file: str) -> str:
    f = str(file or "").strip()
    p = Path(f)
    if not f or p.is_absolute() or ".." in p.parts or f.startswith("~"):
        raise PushbuttonError(f"pb gather {file!r}: FILE is a path inside each task's folder, "
                              "e.g. results.csv or out/metrics.json (no absolute path, no ..)")
    return p.as_posix()


class _Roots:
    """Task roots: this store's, or the one the bundle that ran a task names (when it exists
    on this machine)."""

    def __init__(self, store):
        self.store, self.default, self.cache = store, store.dir / "tasks", {}

    def of(self, bundle):
        if not bundle:
            return self.default
        if bundle not in self.cache:
            root = self.default
            row = self.store.db.execute("SELECT dir FROM bundles WHERE id=?", (bundle,)).fetchone()
            try:
                spec = json.loads((Path(row[0]) / "bundle.json").read_text()) \
                    if row and row[0] and (Path(row[0]) / "bundle.json").exists() \
                    else (bundlelogs.header(self.store.dir, bundle) or {})
                if spec.get("task_root") and Path(spec["task_root"]).is_dir():
                    root = Path(spec["task_root"])
            except (OSError, ValueError):
                pass
            self.cache[bundle] = root
        return self.cache[bundle]


def _lock(d: Path):
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _rel(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def _stat(tdir: Path, file: str):
    """(os.stat_result, None) of the task's file, or (None, why not)."""
    path = tdir / file
    if not tdir.is_dir():
        return None, (f"missing: the task has no folder ({_rel(tdir)}); a `pb run` task writes "
                      "its files into $PB_TASK_DIR (pushbutton.current_task().dir)")
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None, f"missing: no {file} in its folder {_rel(tdir)}"
    except OSError as e:
        return None, f"cannot be read: {e}"
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_relative_to(Path(os.path.realpath(tdir))):
            return None, (f"{file} in its folder is a link to {target}, not a file of its own "
                          f"(the script's folder holds one of that name?): move {target} away "
                          "and run the experiment again with --rerun")
        st = path.stat()
    import stat as S
    if not S.S_ISREG(st.st_mode):
        return None, f"{_rel(path)} is not a file"
    return st, None


def _columns(cols, rows, params, notes, tid):
    """The file's columns as stored: pb_ names renamed, a column named like a parameter
    dropped when it only repeats the parameter's value, else kept as <name>_file."""
    out_cols, keep = [], []
    for k, c in enumerate(cols):
        if N.reserved(c):
            out_cols.append("file_" + c)
            keep.append(k)
            continue
        if c in params:
            pv = params[c]
            same = all(r[k] == pv or (isinstance(r[k], (int, float)) and isinstance(pv, (
                int, float)) and not isinstance(pv, bool) and float(r[k]) == float(pv))
                or (isinstance(r[k], str) and r[k] == str(pv)) for r in rows)
            if same:
                continue
            notes.append((tid, f"column {c!r} differs from parameter {c} = {pv!r}: kept as "
                          f"{c}_file"))
            out_cols.append(f"{c}_file")
            keep.append(k)
            continue
        out_cols.append(c)
        keep.append(k)
    return out_cols, [[r[k] for k in keep] for r in rows]


def gather(store, eid: int, name: str, file: str, header=None) -> Gathered:
    """Bring FILE of every done task into the store (only new or changed files are read) and
    return the table."""
    file = check_file(file)
    d = G.folder(store, name, file)
    d.mkdir(parents=True, exist_ok=True)
    fd = _lock(d)
    try:
        return _round(store, eid, name, file, header, d)
    finally:
        os.close(fd)


def _round(store, eid, name, file, header, d) -> Gathered:
    import pyarrow as pa
    import pyarrow.parquet as pq
    m = G.read_manifest(d) or {"file": file, "view": G.view_name(file), "params": [],
                               "parts": [], "tasks": {}, "retired": [], "seq": 0,
                               "headers": []}
    if m.get("file") != file:
        raise PushbuttonError(f"pb gather {file}: its table would be named "
                              f"{G.view_name(file)}, the name of the table of "
                              f"{m.get('file')} gathered before; rename one of the files")
    header_key = {None: "auto", True: "yes", False: "no"}[header]
    if m.get("header", "auto") != header_key:   # another reading of the same bytes: re-read
        m["tasks"] = {}
        m["header"] = header_key
    res = Gathered(file, m["view"], None)
    res.not_done = store.db.execute("SELECT count(*) FROM tasks WHERE exp=? AND idx IS NOT "
                                    "NULL AND state != 'done'", (eid,)).fetchone()[0]
    done = store.db.execute("SELECT id, gen, params, bundle FROM tasks NOT INDEXED WHERE exp=? AND "
                            "state='done' AND idx IS NOT NULL ORDER BY idx", (eid,)).fetchall()
    res.done = len(done)
    roots = _Roots(store)
    known = {tuple(h) for h in m.get("headers", [])}
    # the parameters in the space's order (the task rows' JSON has its keys sorted)
    pcols = list(m.get("params") or columns_meta(store.dir / "results" / name)["params"])
    entries, new_rows = {}, []
    new_cols: list = []
    part = f"g-{int(m.get('seq', 0)) + 1:06d}.parquet"
    for tid, gen, ptext, bundle in done:
        gen = int(gen or 0)
        params = json.loads(ptext)
        for k in params:
            if k not in pcols:
                pcols.append(k)
        old = m["tasks"].get(tid)
        tdir = task_dir(roots.of(bundle), name, tid, gen)
        st, why = _stat(tdir, file)
        if st is None:
            if old and int(old.get("gen") or 0) == gen and old.get("part"):
                entries[tid] = old      # read before; the file is gone since (pb clean)
            else:
                res.problems.append((tid, params, why))
            continue
        sig = {"gen": gen, "size": st.st_size, "mtime": st.st_mtime_ns}
        if old and all(old.get(k) == v for k, v in sig.items()):
            entries[tid] = old
            if old.get("problem"):
                res.problems.append((tid, params, old["problem"]))
            continue
        res.read += 1
        try:
            cols, rows, head = F.read((tdir / file).read_bytes(), file, header, known)
        except F.Malformed as e:
            entries[tid] = dict(sig, problem=f"malformed: {e}")
            res.problems.append((tid, params, entries[tid]["problem"]))
            continue
        except OSError as e:
            res.problems.append((tid, params, f"cannot be read: {e}"))
            continue
        if head and head not in known:
            known.add(head)
        cols, rows = _columns(cols, rows, params, res.notes, tid)
        if not rows:
            entries[tid] = dict(sig, problem="no rows (only a header)")
            res.problems.append((tid, params, entries[tid]["problem"]))
            continue
        for c in cols:
            if c not in new_cols:
                new_cols.append(c)
        for k, r in enumerate(rows):
            new_rows.append((tid, params, k + 1, dict(zip(cols, r))))
        entries[tid] = dict(sig, part=part, rows=len(rows))
    if new_rows:
        names = [N.TASK_ID] + pcols + [G.ROW] + [c for c in new_cols if c not in pcols
                                                 and c not in (N.TASK_ID, G.ROW, G.PART)]
        arrays = [_typed([r[0] for r in new_rows])]
        arrays += [_typed([r[1].get(c) for r in new_rows]) for c in pcols]
        arrays += [pa.array([r[2] for r in new_rows], pa.int64())]
        arrays += [_typed([r[3].get(c) for r in new_rows]) for c in names[len(pcols) + 2:]]
        arrays.append(pa.array([part] * len(new_rows), pa.string()))
        from pushbutton.core.files import replacing
        with replacing(d / part) as tmp:
            pq.write_table(pa.Table.from_arrays(arrays, names=names + [G.PART]), tmp,
                           compression="zstd")
        m["seq"] = int(m.get("seq", 0)) + 1
    m.update(tasks=entries, params=pcols, headers=sorted(list(h) for h in known))
    _settle(d, m)
    G.write_manifest(d, m)
    _delete_retired(d, m)
    res.with_rows = sum(1 for e in entries.values() if e.get("part"))
    res.frame = G.frame(store, eid, name, file)
    return res


def _settle(d: Path, m: dict) -> None:
    """The manifest's part list: the parts its entries use (when there are too many, their
    live rows merged into one); the others retire (deleted GRACE_S later)."""
    used = sorted({e["part"] for e in m["tasks"].values() if e.get("part")})
    if len(used) > COMPACT_PARTS:
        used = [_merge(d, m, used)]
    now = time.time()
    retired = {r[0]: r[1] for r in m.get("retired", [])}
    for p in m.get("parts", []):
        if p not in used:
            retired.setdefault(p, now)
    m["parts"] = used
    m["retired"] = sorted([p, t] for p, t in retired.items() if p not in used)


def _merge(d: Path, m: dict, used: list) -> str:
    import duckdb
    import pyarrow as pa
    name = f"g-{int(m.get('seq', 0)) + 1:06d}.parquet"
    keep = pa.table({"tid": [t for t, e in m["tasks"].items() if e.get("part")],
                     "part": [e["part"] for e in m["tasks"].values() if e.get("part")]})
    con = duckdb.connect()
    con.register("keep", keep)
    lst = ", ".join("'" + str(d / p).replace("'", "''") + "'" for p in used)
    from pushbutton.core.files import replacing
    with replacing(d / name) as tmp:
        con.execute(
            f"COPY (SELECT r.* REPLACE ('{name}' AS {G.PART}) FROM read_parquet([{lst}], "
            f"union_by_name=true) r JOIN keep k ON k.tid = r.{N.TASK_ID} AND "
            f"k.part = r.{G.PART} ORDER BY r.{N.TASK_ID}, r.{G.ROW}) TO "
            "'" + str(tmp).replace("'", "''") + "' (FORMAT parquet, COMPRESSION zstd)")
    con.close()
    for e in m["tasks"].values():
        if e.get("part"):
            e["part"] = name
    m["seq"] = int(m.get("seq", 0)) + 1
    return name


def _delete_retired(d: Path, m: dict) -> None:
    """Delete retired parts past their grace, and parts no manifest lists (a round that
    died before its manifest): this round holds the lock, so no writer is using them."""
    listed = set(m["parts"]) | {p for p, _ in m.get("retired", [])}
    for p in d.glob("g-*.parquet"):
        if p.name not in listed:
            p.unlink(missing_ok=True)
    now, keep = time.time(), []
    for p, t in m.get("retired", []):
        if now - t >= GRACE_S:
            try:
                (d / p).unlink()
            except FileNotFoundError:
                pass
        else:
            keep.append([p, t])
    if keep != m.get("retired"):
        m["retired"] = keep
        G.write_manifest(d, m)
