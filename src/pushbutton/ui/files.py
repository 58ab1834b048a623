"""A task folder's files, served read-only: a path given in a request never leaves the folder
(no '..', no absolute path, no symlink pointing out), and the folder itself must be inside the
store."""
from __future__ import annotations

from pathlib import Path

MAX_LIST = 500            # entries listed
MAX_SHOW = 2 * 1024 ** 2  # bytes of a file shown (the rest is cut, and said so)


class Refused(Exception):
    pass


def folder_of(store, task_id: str, exp: int) -> Path | None:
    """The task's folder on this machine, if it exists and is inside the store."""
    from pushbutton.execution.taskdirs import task_folder
    f = task_folder(store, task_id, exp)
    if f["target"] is not None or not f["exists"]:
        return None
    p = Path(f["path"]).resolve()
    return p if p.is_relative_to(store.root.resolve()) else None


def inside(folder: Path, rel: str) -> Path:
    """The file `rel` names in `folder`, or Refused."""
    if not rel or "\x00" in rel or rel.startswith(("/", "\\")) or Path(rel).is_absolute():
        raise Refused("absolute paths are not served")
    if any(part == ".." for part in Path(rel.replace("\\", "/")).parts):
        raise Refused("'..' is not served")
    p = (folder / rel).resolve()
    if not p.is_relative_to(folder):
        raise Refused("that path leads out of the task's folder")
    return p


def listing(folder: Path) -> list[dict]:
    """[{'path' (relative), 'size', 'served'}] of the folder's files, at most MAX_LIST; a
    symlink pointing out of the folder is listed, not served."""
    out = []
    for p in sorted(folder.rglob("*")):
        if len(out) >= MAX_LIST:
            break
        rel = p.relative_to(folder).as_posix()
        try:
            real = p.resolve()
            ok = real.is_relative_to(folder)
            if ok and real.is_dir():
                continue
            size = real.stat().st_size if ok else None
        except OSError:
            ok, size = False, None
        out.append({"path": rel, "size": size, "served": ok, "link": p.is_symlink()})
    return out


def read(path: Path) -> tuple[str, bool]:
    """(text, cut) of a file: decoded as UTF-8 with replacement, at most MAX_SHOW bytes."""
    with open(path, "rb") as f:
        data = f.read(MAX_SHOW + 1)
    return data[:MAX_SHOW].decode("utf-8", "replace"), len(data) > MAX_SHOW
