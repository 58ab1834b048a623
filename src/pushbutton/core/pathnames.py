"""Names that become parts of paths (experiments, clusters, targets, parrun runners, figures).

One rule everywhere, checked before anything is written: a letter or digit, then letters,
digits, '.', '_' or '-', and no '..'. Such a name is a single path component that can never
point outside the folder it is joined to.
"""
from __future__ import annotations

import re

_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")
RULE_TEXT = "start with a letter or digit, then letters, digits, '.', '_' or '-' (no '..')"


def problem(name, max_len: int = 100) -> str | None:
    """Why `name` cannot be used as a path component, or None if it can."""
    if not isinstance(name, str) or not name:
        return "it is empty" if name == "" else f"it is not a string ({type(name).__name__})"
    if len(name) > max_len:
        return f"it is longer than {max_len} characters"
    if not _RULE.fullmatch(name) or ".." in name:
        return RULE_TEXT
    return None


def check(name, what: str, *, max_len: int = 100, file: str | None = None,
          key: str | None = None, fix: str | None = None, error=None):
    """`name` if valid; else raises `error(message)` or a SpecError naming file and key."""
    why = problem(name, max_len)
    if why is None:
        return name
    msg = f"bad {what} {name!r}: {why}"
    fix = fix or f"use e.g. 'sweep-1' ({RULE_TEXT}, at most {max_len} characters)"
    if error is not None:
        raise error(msg, fix)
    from pushbutton.core.errors import SpecError
    raise SpecError(msg, file=file, key=key, fix=fix)
