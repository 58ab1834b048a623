"""The code version of a run: a content hash of every file of the project that is not data.

The files: in a git work tree, every file git tracks (the whole repository, as it is on disk,
uncommitted edits included); outside git, every non-hidden file under the spec's folder
(core.files.project_files: no store, virtualenv, cache or build folder). Of these, data is left
out: binary files (a NUL byte in the first 8 KiB), text files over `MAX_TEXT` and the text
data formats in `DATA_SUFFIXES`. A pushbutton spec enters by what a task computes only (its
`function`, `command` and `path`): its figures, units, description, space, resources and run
options do not change any task's result, so editing them does not make results stale.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from pushbutton.core.files import project_files
from pushbutton.core.ids import canonical

PREFIX = "code:"  # versions made by this rule (earlier ones were git commits or 'files:...')
MAX_TEXT = 8 * 1024 * 1024  # a text file larger than this is data (a CSV, a dump, a log)
PROBE = 8192  # bytes looked at for a NUL (git's rule for binary)
DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".log", ".parquet", ".arrow", ".feather")
SPEC_COMPUTE_KEYS = ("function", "command", "path")  # what in a spec a task's result depends on


def _git_files(folder: Path) -> tuple[Path, list[str]] | None:
    """(top of the work tree, tracked files) when `folder` is in a git work tree."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder,
                             capture_output=True, text=True, timeout=10)
        if top.returncode != 0 or not top.stdout.strip():
            return None
        root = Path(top.stdout.strip())
        ls = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                            timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if ls.returncode != 0:
        return None
    return root, sorted(p for p in ls.stdout.decode("utf-8", "surrogateescape").split("\0") if p)


def project_code_files(folder: str | os.PathLike) -> tuple[Path, list[str]]:
    """(base folder, relative paths) of the files the code version looks at (data included;
    `content` leaves data out)."""
    folder = Path(folder).resolve()
    git = _git_files(folder)
    if git is not None:
        return git
    return folder, [str(p) for p in project_files(folder)]


def _spec_part(raw: bytes) -> bytes | None:
    """What a task computes, for a pushbutton spec file (None: not a spec, hash it whole)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(data, dict) and "space" in data and
            ("function" in data or "command" in data)):
        return None
    return canonical({k: data.get(k) for k in SPEC_COMPUTE_KEYS}).encode()


def content(path: Path) -> bytes | None:
    """The bytes of `path` that enter the code version; None for data (or an unreadable file)."""
    if path.suffix.lower() in DATA_SUFFIXES:
        return None
    try:
        if not path.is_file() or path.stat().st_size > MAX_TEXT:
            return None
        with open(path, "rb") as f:
            raw = f.read(PROBE)
            if b"\0" in raw:  # binary: data (weights, arrays, images), not read further
                return None
            raw += f.read()
    except OSError:
        return None
    if path.suffix == ".toml":
        part = _spec_part(raw)
        if part is not None:
            return b"spec\0" + part
    return raw


def code_version(folder: str | os.PathLike, max_files: int = 20000) -> str:
    """'code:<hash>' of the project's files that are not data. A '+' at the end: more than
    `max_files` files, only the first ones were hashed."""
    return fingerprint(folder, max_files)[0]


def fingerprint(folder: str | os.PathLike, max_files: int = 20000) -> tuple[str, dict]:
    """(the code version, {file: a short hash of its content}): the files let a later run
    say which of them changed (`changed_files`)."""
    base, files = project_code_files(folder)
    h = hashlib.blake2b(digest_size=10)
    n, each = 0, {}
    for rel in files:
        path = base / rel
        data = content(path)
        if data is None:
            if not os.path.lexists(path):  # a tracked file deleted is a change of the code
                h.update(f"{rel}\0deleted\0".encode())
                each[rel] = "deleted"
            continue
        # name and size first, so that bytes cannot shift from one file to the next unseen
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
        each[rel] = hashlib.blake2b(data, digest_size=6).hexdigest()
        n += 1
        if n >= max_files:
            return PREFIX + h.hexdigest() + "+", each
    return PREFIX + h.hexdigest(), each


def changed_files(before: dict, after: dict) -> list[str]:
    """What differs between two runs' files (`fingerprint`): 'a.py', 'b.py (new)',
    'c.py (deleted)', in name order."""
    gone = "deleted"
    out = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel, gone), after.get(rel, gone)
        if old == new:
            continue
        out.append(f"{rel} (new)" if old == gone else f"{rel} (deleted)" if new == gone
                   else rel)
    return out
