"""Where a task's own folder is (`PB_TASK_DIR`; a `pb parrun` task's working folder):
`<task root>/<experiment>/<ab>/<task id>[.<gen>]`, worker.py's rule, with the task root its
bundle was given: `.pushbutton/tasks` here (local runs, SLURM on this host), `<base>/tasks` on
a remote SLURM target's work folder, a per-project temporary folder on each Dask host.
Used by `pb show TASK` (and whatever collects files from task folders)."""
from __future__ import annotations

import json
from pathlib import Path

from pushbutton.store import bundlelogs


def _safe_name(name) -> str:
    """worker.py's _safe_name: the experiment's folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name or "_")) \
        .lstrip(".") or "_"


def relative(experiment: str, task_id: str, gen: int = 0) -> str:
    """The folder below the task root."""
    return f"{_safe_name(experiment)}/{task_id[:2]}/{task_id}" + (f".{gen}" if gen else "")


def _task_root(spec_file: Path) -> str | None:
    try:
        return json.loads(spec_file.read_text()).get("task_root")
    except (OSError, ValueError, AttributeError):
        return None


def task_folder(store, task_id: str, exp: int | None = None) -> dict:
    """{"path", "target" (None: this machine), "host" (a Dask host, else None), "exists" (on
    this machine; None when elsewhere)} of a task's current folder (its generation's). `exp`:
    the experiment's id (two experiments with the same parameters share task ids)."""
    row = store.db.execute("SELECT t.rowid, t.gen, t.bundle, e.name FROM tasks t JOIN "
                           "experiments e ON e.id = t.exp WHERE t.id = ?"
                           + (" AND t.exp = ?" if exp is not None else ""),
                           (task_id,) + ((exp,) if exp is not None else ())).fetchone()
    if row is None:
        raise KeyError(task_id)
    rowid, gen, bundle, name = row
    if not bundle:  # a failed task's folder is that of its last attempt's bundle
        last = store.db.execute("SELECT bundle FROM attempts WHERE task=? ORDER BY n DESC "
                                "LIMIT 1", (rowid,)).fetchone()
        bundle = last[0] if last else None
    rel = relative(name, task_id, gen or 0)
    out = {"path": str(store.dir / "tasks" / rel), "target": None, "host": None}
    b = store.db.execute("SELECT backend, target FROM bundles WHERE id=?", (bundle,)).fetchone() \
        if bundle else None
    if b and b[0] == "slurm":
        remote = store.dir / "slurm-remote" / str(b[1]) / "bundles" / bundle / "bundle.json"
        root = _task_root(remote) if remote.exists() else None
        if root:
            out.update(path=f"{root}/{rel}", target=b[1])
        else:
            root = (bundlelogs.header(store.dir, bundle) or {}).get("task_root")
            if root:
                out["path"] = str(Path(root) / rel)
    elif b and b[0] == "dask":
        host = store.db.execute("SELECT host FROM tasks WHERE rowid=?", (rowid,)).fetchone()[0]
        out.update(path=f"<the Dask worker's temporary folder>/pushbutton-dask-tasks/<project>/"
                        f"{rel}", target=b[1], host=host)
    out["exists"] = Path(out["path"]).is_dir() if out["target"] is None else None
    return out
