"""What the command line says when a command fails: a user's mistake (PushbuttonError, a bad
option), Ctrl-C, and errors of the environment that a user can cause (a damaged database, a full
disk, a read-only store) as one paragraph naming the file and the fix, instead of a traceback.
PB_DEBUG=1 shows the traceback as well."""
from __future__ import annotations

import errno
import os
import sqlite3
import sys
from pathlib import Path

import click

from pushbutton.core.errors import PushbuttonError

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _db_file() -> str:
    from pushbutton.store.database import DIRNAME, OPENED, find_root
    if OPENED:
        return str(OPENED[-1])
    root = find_root()
    return str(Path(root or os.getcwd()) / DIRNAME / "state.sqlite")


def _folder(path: str) -> str:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p if p.is_dir() else p.parent)


def _disk_full(path: str) -> str:
    d = _folder(path)
    return (f"disk full (or over quota) while writing {path}: free space on the disk holding "
            f"{d} (see `df -h {d}`), or move the project to a disk with room, then run the same "
            "command again; what was stored before is intact")


def _read_only(path: str, detail: str) -> str:
    return (f"cannot write {path} ({detail}). Commands that only read a read-only project "
            "(pb status, results, sql, logs, history, report -o DIR) work on it; to run or "
            "change an experiment, make the folder writable or copy the project elsewhere")


def exit_for(e: BaseException) -> None:
    """Say what went wrong and exit with its status; return only for a bug (the caller raises it
    again, so that its traceback shows)."""
    if isinstance(e, click.exceptions.Abort):
        if isinstance(e.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            _interrupted()
        click.echo("aborted", err=True)
        sys.exit(1)
    if isinstance(e, click.ClickException):
        e.show()
        sys.exit(e.exit_code)
    if isinstance(e, PushbuttonError):
        click.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
    if isinstance(e, sqlite3.DatabaseError):  # a damaged state database, met by any command
        _database_error(e)
    elif isinstance(e, KeyboardInterrupt):
        _interrupted()
    elif isinstance(e, click.exceptions.Exit):
        sys.exit(e.exit_code)
    elif isinstance(e, BrokenPipeError):  # `pb results | head`: the reader left; not an error
        sys.stderr.close()
        sys.exit(0)
    else:  # the environment's errors (disk full, read-only, damaged database)
        report(e)  # exits with a message; returns only for a bug


def _interrupted():
    click.echo("\ninterrupted; what finished is stored — run the same command to resume",
               err=True)
    sys.exit(130)


def _database_error(e: sqlite3.DatabaseError) -> None:
    from pushbutton.store.database import DIRNAME, find_root
    from pushbutton.store.integrity import db_error, is_damage
    if not is_damage(e):  # full, read-only, locked: a message of its own
        report(e)
        return
    root = find_root()
    debug_traceback(e)
    click.secho(f"error: {db_error(root / DIRNAME if root else None, e)}", fg="red", err=True)
    sys.exit(2)


def report(e: BaseException) -> None:
    """Print the message for `e` and exit 2; return if `e` is not an error of this kind."""
    msg = explain(e)
    if msg is None:
        return
    debug_traceback(e)
    click.secho(f"error: {msg}", fg="red", err=True)
    if not os.environ.get("PB_DEBUG"):
        click.echo("  (PB_DEBUG=1 shows the traceback)", err=True)
    sys.exit(2)


def debug_traceback(e: BaseException) -> None:
    """With PB_DEBUG=1, the traceback goes to stderr before the message."""
    if os.environ.get("PB_DEBUG"):
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


def explain(e: BaseException) -> str | None:
    """The message for an error a user can cause, or None for anything else (a bug)."""
    if isinstance(e, sqlite3.DatabaseError):
        return _sqlite(e)
    if isinstance(e, OSError):
        return _oserror(e)
    mod = type(e).__module__ or ""
    if mod.startswith("duckdb") or mod.startswith("_duckdb"):
        return (f"the results could not be read ({type(e).__name__}: {str(e).strip()}); if a "
                "results file under .pushbutton/results is damaged, `pb doctor` finds it")
    if mod.startswith("pyarrow"):
        return (f"a results file could not be read or written ({type(e).__name__}: "
                f"{str(e).strip()}); `pb doctor` finds damaged files under .pushbutton/")
    return None


def _sqlite(e: sqlite3.DatabaseError) -> str:
    db = _db_file()
    text = str(e)
    low = text.lower()
    if "readonly" in low or "read-only" in low:
        return _read_only(db, text)
    if "full" in low:
        return _disk_full(db)
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return (f"the project's state database {db} is damaged ({text}). Run `pb doctor` to "
                "check it and repair what can be rebuilt from the bundles' outcome files, or "
                "restore the file from a backup")
    if "locked" in low or "busy" in low:
        return (f"the state database {db} stayed locked by another process ({text}); wait for "
                "it (a long transaction, or a process stopped with Ctrl-Z) and try again")
    if "unable to open" in low:
        return (f"cannot open the state database {db} ({text}): check that its folder exists "
                "and can be read")
    if "disk i/o" in low:
        return (f"disk I/O error on {db} ({text}): the disk may be full, failing or gone (a "
                "network mount?); check it, then run the same command again")
    return f"database error in {db}: {text}"


def _oserror(e: OSError) -> str:
    path = e.filename or _db_file()
    detail = e.strerror or str(e)
    if e.errno in _FULL:
        return _disk_full(str(path))
    if e.errno in _READONLY:
        return _read_only(str(path), detail)
    target = f" {path}" if e.filename else ""
    if e.filename2:
        target += f" -> {e.filename2}"
    return f"{detail}:{target}" if target else f"{detail} ({type(e).__name__})"
