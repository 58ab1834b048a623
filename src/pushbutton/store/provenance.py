"""Honest provenance for a run: which code (its code version: a content hash of the project's
files that are not data, store/code_version.py; and in git, the commit and the diff), which
Python and packages, which host, when."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from pushbutton.store.code_version import fingerprint

MAX_LISTED = 5000  # files whose hashes a run keeps (12 hex digits each)
PACKAGES = ("pushbutton", "numpy", "pandas", "pyarrow", "duckdb", "scipy", "scikit-learn",
            "torch", "matplotlib", "pydantic")


def _git(args, cwd, timeout=10):
    try:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


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
    # the version results are compared by (stale results): content, not the commit, so that an
    # edit is seen however many came before it, and a commit of figure settings is not one
    prov["code_version"], files = fingerprint(code_dir)
    if len(files) <= MAX_LISTED:  # which files changed between two runs can then be said
        prov["code_files"] = files
    return prov
