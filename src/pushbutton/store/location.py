"""Which store an experiment uses. The store of a spec is the nearest `.pushbutton/` at or above
the spec's folder (like git's), wherever the shell stands; a first run creates one (`home`);
reading never does. `note` says which store a command used when a user would not guess it."""
from __future__ import annotations

import os
from pathlib import Path

from pushbutton.store.database import DIRNAME, find_root


def home(folder: str | os.PathLike, cwd: str | os.PathLike | None = None) -> Path:
    """Where a first run of a spec in `folder` creates the store when none is at or above it:
    the current folder when the spec lies in it or below (`pb run sub/experiment.toml` from
    the project's top keeps one store for the project), else the spec's own folder (never the
    shell's folder elsewhere: `cd /tmp && pb run ~/proj/experiment.toml` stores in ~/proj)."""
    folder = Path(folder).resolve()
    here = Path(cwd or os.getcwd()).resolve()
    return here if folder == here or here in folder.parents else folder


def root_for(folder: str | os.PathLike, cwd: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """(the store's project folder for a spec in `folder`, whether that store exists yet)."""
    found = find_root(folder)
    return (found, True) if found is not None else (home(folder, cwd), False)


def obvious(root: str | os.PathLike, cwd: str | os.PathLike | None = None) -> bool:
    """Whether `root` holds the store a user in `cwd` would guess: the one at or above it."""
    return find_root(cwd) == Path(root).resolve()


def note(root: str | os.PathLike, cwd: str | os.PathLike | None = None,
         new: bool = False) -> str | None:
    """'store: /path/.pushbutton' when it is not the obvious one (None when it is)."""
    if not new and obvious(root, cwd):
        return None
    if new and Path(root).resolve() == Path(cwd or os.getcwd()).resolve():
        return None
    return f"{'new store' if new else 'store'}: {Path(root).resolve() / DIRNAME}"
