"""A space's written form (the [space] TOML table or a dict) and the checks shared by all kinds.

Axis forms ({range = ..}, {linspace = ..}, {logspace = ..}) are read here, and every bad value is
refused with a SpecError naming file, key and a fix (with a did-you-mean for misspelt keys).
The space kinds themselves live in space.py; they are imported inside functions because space.py
imports this module at load time.
"""
from __future__ import annotations

import difflib
import math
import numbers
import re

from pushbutton.core.errors import SpecError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_AXIS_FORMS = ("range", "linspace", "logspace")
_DISTS = ("uniform", "loguniform", "randint", "normal", "choice")
_SPACE_KEYS = ("grid", "zip", "sample", "union", "reps", "where")
_AXIS_FIX = ("give a list of values, or {range = [start, stop, step]}, {linspace = [a, b, num]}, "
             "{logspace = [a, b, num]}, or a single value")


def _err(msg, key=None, file=None, fix=None):
    return SpecError(msg, file=file, key=key, fix=fix)


def _unknown(what, got, allowed, key, file, fix=None):
    close = difflib.get_close_matches(str(got), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return _err(f"unknown {what} {got!r}{hint}", key, file,
                fix or f"use one of: {', '.join(allowed)}")


def _is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_num(x):
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:   # an int beyond float range
        return False


def _value(v, key, file=None):
    """A plain JSON-able Python value (numpy scalars/arrays converted), else SpecError."""
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        v = v.tolist()   # numpy scalar -> Python scalar, array -> nested lists
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        raise _err(f"{v!r} is not a valid parameter value", key, file,
                   "use a finite number (NaN and inf cannot be stored or hashed)")
    if isinstance(v, (list, tuple)):
        return [_value(x, key, file) for x in v]
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {k: _value(x, key, file) for k, x in v.items()}
    raise _err(f"value {v!r} of type {type(v).__name__} cannot be a parameter value", key, file,
               "use numbers, strings, booleans, None, or lists/dicts of those")


def _check_name(name, key, file):
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(f"{name!r} is not a valid parameter name", key, file,
                   "start with a letter or _, then letters, digits, _, . or -")


def _count(n, what, key, file):
    if not _is_int(n) or n < 1:
        raise _err(f"{what} must be a positive integer, got {n!r}", key, file,
                   f"write {what} = 5 (a whole number >= 1)")
    return int(n)


class _Lin:
    """Lazy linspace/logspace axis, rounded to 12 significant digits so 0.1 stays 0.1."""
    __slots__ = ("a", "b", "num", "log", "digits")

    def __init__(self, a, b, num, log):
        self.a, self.b, self.num, self.log = float(a), float(b), num, log
        scale = max(abs(self.a), abs(self.b))
        self.digits = 12 - math.floor(math.log10(scale)) if scale else 12

    def __len__(self):
        return self.num

    def __getitem__(self, i):   # internal: 0 <= i < num
        if i == 0 or i == self.num - 1:   # exact ends (num == 1 gives a, as numpy does)
            x = self.a if i == 0 else self.b
        else:
            x = self.a + (self.b - self.a) * i / (self.num - 1)
        x = round(x, self.digits) + 0.0   # + 0.0 turns -0.0 into 0.0
        return float(f"{10.0 ** x:.12g}") if self.log else x

    def __iter__(self):
        return map(self.__getitem__, range(self.num))


def _axis(v, key, file):
    """One grid/zip axis: an indexable, sized sequence of values (range and _Lin stay lazy)."""
    from pushbutton.spec.space import _Dist  # lazy: space.py imports this module
    if isinstance(v, _Dist):
        raise _err(f"the distribution {v!r} cannot be a grid/zip axis", key, file,
                   "put random parameters in sample(...) / [space.sample]")
    if isinstance(v, dict):
        if len(v) != 1:
            raise _err(f"an axis table must have exactly one key, got {sorted(map(str, v))}",
                       key, file, _AXIS_FIX)
        form, args = next(iter(v.items()))
        if form not in _AXIS_FORMS:
            fix = ("a distribution belongs in [space.sample] / sample(...)" if form in _DISTS
                   else _AXIS_FIX + "; to use a dict as a value, wrap it in a list: [{...}]")
            raise _unknown("axis form", form, _AXIS_FORMS, key, file, fix)
        key = f"{key}.{form}"
        if not isinstance(args, (list, tuple)) or not all(_is_num(a) for a in args):
            raise _err(f"{form} needs a list of numbers, got {args!r}", key, file,
                       f"write {{{form} = " + ("[start, stop, step]}" if form == "range"
                                              else "[a, b, num]}"))
        if form == "range":
            if not 1 <= len(args) <= 3 or not all(_is_int(a) for a in args) or \
                    (len(args) == 3 and args[2] == 0):
                raise _err(f"range needs 1-3 integers (step not 0), got {list(args)}", key, file,
                           "write {range = [start, stop, step]}; for floats use linspace")
            v = range(*map(int, args))
        else:
            if len(args) != 3 or not _is_int(args[2]) or args[2] < 1:
                raise _err(f"{form} needs [a, b, num] with num a positive integer, got "
                           f"{list(args)}", key, file, f"write {{{form} = [a, b, num]}}")
            if form == "logspace" and max(abs(args[0]), abs(args[1])) > 300:
                raise _err("logspace exponents beyond +-300 overflow a float", key, file,
                           "logspace takes exponents of 10: [-4, -1, 4] gives 1e-4 .. 1e-1")
            if not math.isfinite(float(args[1]) - float(args[0])):
                raise _err("linspace ends too far apart for a float", key, file, "narrow it")
            v = _Lin(args[0], args[1], int(args[2]), form == "logspace")
    if isinstance(v, (range, _Lin)):
        try:
            if len(v) == 0:
                raise _err(f"{v!r} is empty: empty space", key, file, "give it at least one value")
        except OverflowError:   # len() of more than 2**63 values
            raise _err("the axis has too many values", key, file, "narrow it") from None
        return v
    if isinstance(v, (set, frozenset)):
        raise _err("a set has no order, so the space would not be reproducible", key, file,
                   "use a list, e.g. sorted(values)")
    if v is None or isinstance(v, (str, bytes, numbers.Number)) or \
            (type(v).__module__ == "numpy" and getattr(v, "ndim", 1) == 0):
        return [_value(v, key, file)]         # a scalar is a one-value axis
    try:
        items = v.tolist() if type(v).__module__ == "numpy" else list(v)
    except TypeError:
        raise _err(f"{type(v).__name__} is not a valid axis", key, file, _AXIS_FIX) from None
    if not items:
        raise _err("the axis has no values: empty space", key, file, "give it at least one value")
    return [_value(x, key, file) for x in items]


def _axes_of(fn, dicts, kw, key, file):
    merged = {}
    for d in (*dicts, kw):
        if not isinstance(d, dict):
            raise _err(f"{fn} takes its axes as a table / keyword arguments, got {d!r}", key, file,
                       f"write {fn}(name=[values, ...]) or {fn}({{'name': [values, ...]}})")
        for name, v in d.items():
            if name in merged:
                raise _err(f"axis {name!r} is given twice", f"{key}.{name}", file, "give it once")
            _check_name(name, f"{key}.{name}", file)
            merged[name] = v
    if not merged:
        raise _err(f"{fn} has no axes: empty space", key, file,
                   f"give at least one axis, e.g. {fn} = {{n = [1, 2]}}")
    return {n: _axis(v, f"{key}.{n}", file) for n, v in merged.items()}

def _dist_of(v, key, file):
    """A _Dist, or ("const", value) for a plain value."""
    from pushbutton.spec.space import _Dist, _make_dist  # lazy: space.py imports this module
    if isinstance(v, _Dist):
        return v
    if isinstance(v, dict):
        if len(v) != 1 or next(iter(v)) not in _DISTS:
            got = next(iter(v)) if len(v) == 1 else sorted(map(str, v))
            fix = ("range/linspace/logspace belong in grid" if got in _AXIS_FORMS else
                   "write e.g. x = {uniform = [0, 1]} or c = {choice = ['a', 'b']}")
            raise _unknown("distribution", got, _DISTS, key, file, fix)
        kind, args = next(iter(v.items()))
        args = args if isinstance(args, (list, tuple)) else [args]
        return _make_dist(kind, [args] if kind == "choice" else list(args), f"{key}.{kind}", file)
    if isinstance(v, (list, tuple, set, range)):
        raise _err("a list in sample is ambiguous", key, file,
                   "use choice([...]) / {choice = [...]} to draw from it, or put it in grid")
    return ("const", _value(v, key, file))


def _from_dict(d, file, key):
    """[space] table -> (grid * zip * sample * union).where(...) * reps(n)."""
    from pushbutton.spec.space import _Concat, _Filter, _Grid, _Product, _Reps, _Sample, _Zip  # lazy: no cycle
    from pushbutton.spec.where import _WHERE_FIX
    if not isinstance(d, dict):
        raise _err(f"must be a table, got {type(d).__name__} {d!r}", key, file,
                   "write a table with grid / zip / sample / union / reps / where keys")
    for k in d:
        if k not in _SPACE_KEYS:
            raise _unknown("key", k, _SPACE_KEYS, f"{key}.{k}", file)
    factors = []
    for name, make in (("grid", lambda a, k: _Grid(a)), ("zip", lambda a, k: _Zip(a, k, file))):
        if name in d:
            if not isinstance(d[name], dict):
                raise _err(f"{name} must be a table of axes, got {d[name]!r}", f"{key}.{name}",
                           file, f"write {name} = {{n = [1, 2], x = ['a', 'b']}}")
            factors.append(make(_axes_of(name, (d[name],), {}, f"{key}.{name}", file),
                                f"{key}.{name}"))
    if "sample" in d:
        s, k = d["sample"], f"{key}.sample"
        if not isinstance(s, dict):
            raise _err(f"sample must be a table, got {s!r}", k, file,
                       "write sample = {n = 100, seed = 1, x = {uniform = [0, 1]}}")
        if "n" not in s:
            raise _err("sample needs n, the number of points", f"{k}.n", file, "add n = 100")
        factors.append(_Sample(s["n"], s.get("seed", 0),
                               {p: v for p, v in s.items() if p not in ("n", "seed")}, k, file))
    if "union" in d:
        u, k = d["union"], f"{key}.union"
        if not isinstance(u, list) or not u:
            raise _err(f"union must be a non-empty list of tables, got {u!r}", k, file,
                       "write [[space.union]] sections, each a space of its own")
        factors.append(_Concat([_from_dict(x, file, f"{k}[{i}]") for i, x in enumerate(u)]))
    space = None
    if factors:
        space = factors[0] if len(factors) == 1 else _Product(factors, key, file)
    elif "reps" not in d:
        raise _err("empty space: no grid, zip, sample or union", key, file,
                   "add e.g. grid = {n = [1, 2, 3]}")
    if "where" in d:
        if space is None:
            raise _err("where needs something to filter", f"{key}.where", file,
                       "add a grid, zip, sample or union")
        if not isinstance(d["where"], str) or not d["where"].strip():
            raise _err(f"where must be a non-empty string expression, got {d['where']!r}",
                       f"{key}.where", file, _WHERE_FIX)
        space = _Filter(space, d["where"], f"{key}.where", file)
    if "reps" in d:
        r = _Reps(d["reps"], f"{key}.reps", file)
        space = r if space is None else _Product([space, r], key, file)
    return space
