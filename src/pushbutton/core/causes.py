"""What a failure is "the same" as: the cause of a failed task, for grouping failures.

Tasks that fail with the same exception type at the same place of the user's code have one
cause, whatever their messages say (`ZeroDivisionError` raised with different `a=` values is one
cause, not one per value). Failures without a Python traceback (a command's exit status, a
signal, a timeout, a lost node) are grouped by their kind and their message, with numbers
(job ids, node numbers, sizes) read as one.

    cause("exception", "ZeroDivisionError: division by zero", traceback)
      -> "ZeroDivisionError at task.py:6 in helper"
"""
from __future__ import annotations

import os
import re

_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)(?:, in (.+))?\s*$')
_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_NUMBER = re.compile(r"(?<!status )\d+(?:\.\d+)?")  # an exit status stays itself
# frames of installed libraries and of Python itself: the user's frame is the innermost other one
_LIBRARY = re.compile(r"([/\\](site|dist)-packages[/\\])|([/\\]lib[/\\]python\d[\d.]*[/\\])")


def _last_traceback(text: str):
    """(frames [(file, line, function)], exception line) of the last Python traceback in
    `text` (a traceback, or the tail of a command's stderr), or None."""
    if not text:
        return None
    i = text.rfind("Traceback (most recent call last):")
    if i < 0:
        return None
    frames, exc = [], None
    for line in text[i:].splitlines()[1:]:
        m = _FRAME.match(line)
        if m:
            frames.append((m.group(1), int(m.group(2)), (m.group(3) or "").strip()))
        elif line.strip() and not line.startswith((" ", "\t")):
            exc = line.strip()
            break
    return frames, exc


def _user_frame(frames):
    """The innermost frame outside installed libraries and Python's own modules (the user's
    line that led to the error), else the innermost frame."""
    for f in reversed(frames):
        if not _LIBRARY.search(f[0]) and not f[0].startswith("<"):
            return f
    return frames[-1] if frames else None


def _short_path(path: str, root: str | None) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel
        except ValueError:
            pass
    return os.path.basename(path)


def _exception_type(error: str, exc_line: str | None) -> str | None:
    for text in (error, exc_line):
        m = _TYPE.match((text or "").strip())
        if m and (m.group(1)[0].isupper() or "." in m.group(1)):
            return m.group(1)
    return None


def location(traceback: str | None, root: str | None = None) -> str | None:
    """'file.py:LINE in function' of the user's frame in a traceback, or None."""
    tb = _last_traceback(traceback or "")
    if not tb or not tb[0]:
        return None
    path, line, fn = _user_frame(tb[0])
    return f"{_short_path(path, root)}:{line}" + (f" in {fn}" if fn else "")


def cause(kind: str | None, error: str | None, traceback: str | None = None,
          root: str | None = None) -> str:
    """The group a failure belongs to: 'ExceptionType at file.py:LINE in function' for a Python
    exception (also one in a command's stderr), else 'kind: message' with numbers as '#'."""
    kind = kind or "unknown"
    error = (error or "").strip()
    if kind in ("exception", "exit", "memory"):  # (a timeout's place is wherever it struck)
        tb = _last_traceback(traceback or "")
        etype = _exception_type(error if kind != "exit" else "", tb[1] if tb else None)
        where = location(traceback, root) if tb else None
        if etype and where:
            return f"{etype} at {where}"
        if etype:
            return etype
    first = error.splitlines()[0] if error else ""
    return f"{kind}: {_NUMBER.sub('#', first)[:160]}" if first else kind
