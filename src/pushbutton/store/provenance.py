"""Honest provenance for a run: which code (git commit + diff, or a content hash), which Python
and packages, which host, when."""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from pushbutton.core.files import project_files

PACKAGES = ("pushbutton", "numpy", "pandas", "pyarrow", "duckdb", "scipy", "scikit-learn",
            "torch", "matplotlib", "pydantic")
# files larger than this enter the code hash by size and modification time, not content: reading
# a big data file at every run would cost more than the hash is worth
_HASH_CONTENT_MAX = 64 * 1024 * 1024


def _git(args, cwd, timeout=10):
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def code_hash(folder: Path, max_files: int = 5000) -> str:
    """Content hash of the project's files under `folder` (when it is not in git): the same set
    of files that is shipped to a cluster (core.files.project_files), so the code version names
    what ran. A '+' at the end: more than `max_files` files, only the first ones were hashed."""
    folder = Path(folder)
    h = hashlib.blake2b(digest_size=10)
    n = 0
    for rel in project_files(folder):
        path = folder / rel
        try:
            st = path.stat()
            # name and size first, so that bytes cannot shift from one file to the next unseen
            h.update(f"{rel}\0{st.st_size}\0".encode())
            if st.st_size > _HASH_CONTENT_MAX:
                h.update(f"mtime={st.st_mtime_ns}".encode())
            else:
                h.update(path.read_bytes())
        except OSError:
            continue
        n += 1
        if n >= max_files:
            return "files:" + h.hexdigest() + "+"
    return "files:" + h.hexdigest()


def _versions() -> dict:
    from importlib import metadata
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def collect(code_dir: str | os.PathLike, message: str | None = None) -> dict:
    code_dir = Path(code_dir).resolve()
    prov = {"host": socket.gethostname(), "user": os.environ.get("USER", ""),
            "python": sys.version.split()[0], "executable": sys.executable,
            "platform": platform.platform(), "argv": sys.argv, "cwd": os.getcwd(),
            "time": time.time(), "message": message, "packages": _versions(),
            "code_dir": str(code_dir)}
    commit = _git(["rev-parse", "HEAD"], code_dir)
    if commit:
        commit = commit.strip()
        diff = _git(["diff", "HEAD", "--", "."], code_dir) or ""
        untracked = _git(["ls-files", "--others", "--exclude-standard", "--", "."], code_dir)
        prov.update(git_commit=commit, git_dirty=bool(diff.strip() or (untracked or "").strip()),
                    git_diff=diff[:200_000], git_untracked=(untracked or "").split())
        prov["code_version"] = commit[:12] + ("+dirty" if prov["git_dirty"] else "")
    else:
        prov["code_version"] = code_hash(code_dir)
    return prov
