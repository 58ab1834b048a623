"""Checks every part of a space shares: parameter names, plain values, counts, and the
SpecError that names file, key and a fix (with a did-you-mean for misspelt keys).

Imports nothing of the spec stage, so the space kinds, their written form and `where` can all
use it without importing each other in a circle.
"""
from __future__ import annotations

import difflib
import math
import numbers
import re

from pushbutton.core.errors import SpecError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


def err(msg, key=None, file=None, fix=None):
    return SpecError(msg, file=file, key=key, fix=fix)


def unknown(what, got, allowed, key, file, fix=None):
    close = difflib.get_close_matches(str(got), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return err(f"unknown {what} {got!r}{hint}", key, file,
               fix or f"use one of: {', '.join(allowed)}")


def is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_num(x):
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:   # an int beyond float range
        return False


def plain_value(v, key, file=None):
    """A plain JSON-able Python value (numpy scalars/arrays converted), else SpecError."""
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        v = v.tolist()   # numpy scalar -> Python scalar, array -> nested lists
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        raise err(f"{v!r} is not a valid parameter value", key, file,
                  "use a finite number (NaN and inf cannot be stored or hashed)")
    if isinstance(v, (list, tuple)):
        return [plain_value(x, key, file) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: plain_value(x, key, file) for k, x in v.items()}
    raise err(f"value {v!r} of type {type(v).__name__} cannot be a parameter value", key, file,
              "use numbers, strings, booleans, None, or lists/dicts of those")


def check_name(name, key, file):
    if not isinstance(name, str) or not _NAME.match(name):
        raise err(f"{name!r} is not a valid parameter name", key, file,
                  "start with a letter or _, then letters, digits, _, . or -")


def positive_count(n, what, key, file):
    if not is_int(n) or n < 1:
        raise err(f"{what} must be a positive integer, got {n!r}", key, file,
                  f"write {what} = 5 (a whole number >= 1)")
    return int(n)
