"""File helpers every stage shares, defined once: atomic writes, the user's pushbutton folders,
the set of a project's files (shipped to a cluster; outside git also the files the code version
hashes, store/code_version.py), signal names and the numeric libraries' thread variables.

The compute-node worker (execution/worker.py) keeps its own small copies of a few of these: it
is shipped alone to machines where pushbutton is not installed, so it imports nothing of ours.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

# Folders that are never part of a project's code: version control, pushbutton's own store and
# service state, virtual environments, caches and build output.
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".pushbutton", ".services", "__pycache__", ".venv", "venv", "env",
    "node_modules", ".mypy_cache", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints", ".tox",
    "site-packages", "build", "dist"})
SKIP_FILES = ("*.pyc", "*.pyo")

# OpenMP / BLAS thread counts: one per task CPU, so N workers do not start N x cores threads
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@contextlib.contextmanager
def replacing(path: str | os.PathLike):
    """A temporary path next to `path` for a writer that needs a file name (Parquet, torch.save):
    when the block ends without error it replaces `path` (atomic on POSIX: readers see the old
    file or the new one, never a torn one); on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn
    one (see `replacing`)."""
    raw = data.encode() if isinstance(data, str) else data
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(raw)
        if mode is not None:
            os.chmod(tmp, mode)


def write_json(path: str | os.PathLike, obj, indent: int | None = 1) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, default=str))


def _xdg(var: str, *default: str) -> Path:
    base = os.environ.get(var) or os.path.join(os.path.expanduser("~"), *default)
    return Path(base) / "pushbutton"


def config_dir() -> Path:
    """~/.config/pushbutton (targets, cluster templates)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def state_dir() -> Path:
    """~/.local/state/pushbutton (clusters pushbutton built)."""
    return _xdg("XDG_STATE_HOME", ".local", "state")


def cache_dir() -> Path:
    """~/.cache/pushbutton (facts about targets that can be asked again)."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def skipped_dir(parent: str, name: str) -> bool:
    """Whether a folder is outside a project's files: listed above, hidden, or a virtualenv."""
    return (name in SKIP_DIRS or name.startswith(".")
            or os.path.exists(os.path.join(parent, name, "pyvenv.cfg")))


def project_files(root: str | os.PathLike, suffixes: tuple[str, ...] | None = None):
    """The project's files under `root`, sorted, as paths relative to it: what is shipped to a
    cluster, and outside git what the code version hashes. `suffixes` narrows to some kinds."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not skipped_dir(dirpath, d))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            if suffixes is not None and not name.endswith(suffixes):
                continue
            p = Path(dirpath) / name
            try:
                if not p.is_file():
                    continue
            except OSError:
                continue
            yield p.relative_to(root)


def rsync_excludes() -> list[str]:
    """The same rule as project_files, for rsync (hidden folders and files, virtualenvs by name)."""
    return [f"{d}/" for d in sorted(SKIP_DIRS)] + [".*", *SKIP_FILES]


SMALL_FILE = 1 << 20  # files up to this size are copied into a task's own folder, not linked


def fill_task_folder(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make `dst` a fresh folder in which `src`'s files are visible (a `pb parrun` task's, or
    the folder its grid is read in): each entry of `src` except hidden ones and __pycache__,
    small regular files copied (what a task writes into them stays its own), folders and
    bigger files linked. worker.py keeps a copy of this function (see the top of this file)."""
    import shutil
    dst = os.fspath(dst)
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    os.makedirs(dst)
    for entry in os.scandir(src):
        name = entry.name
        if name.startswith(".") or name == "__pycache__":
            continue
        target = os.path.join(dst, name)
        try:
            if entry.is_file() and entry.stat().st_size <= SMALL_FILE:
                shutil.copy2(entry.path, target)
            elif os.path.exists(entry.path):  # a folder, a big file (a dangling link: left out)
                os.symlink(os.path.realpath(entry.path), target)
        except FileNotFoundError:  # gone meanwhile
            continue


def signal_name(num: int) -> str:
    """'SIGSEGV' for 11 (or the number when the platform has no name for it)."""
    try:
        return signal.Signals(abs(num)).name
    except ValueError:
        return str(abs(num))


def complete_lines(path: str | os.PathLike, offset: int, limit: int | None = None) -> bytes:
    """What was appended to `path` since `offset`, up to its last newline (a line still being
    written, or torn, waits for the next look); with `limit`, at most that many bytes unless
    a single line is longer (then up to that line's end)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return b""
    if size <= offset:
        return b""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size - offset if limit is None else min(size - offset, limit))
        if limit is not None and b"\n" not in data and offset + len(data) < size:
            data += f.read(size - offset - len(data))  # one line longer than the limit
    return data[:data.rfind(b"\n") + 1]
