"""The written pieces of a space: axis forms ({range = ..}, {linspace = ..}, {logspace = ..}, or
a list of values) and the distributions of `sample` (uniform, loguniform, randint, normal, choice).

Every bad value is refused with a SpecError naming file, key and a fix. The space kinds that
put these pieces together live in space.py, which imports this module (never the other way).
"""
from __future__ import annotations

import math
import numbers

from pushbutton.spec.checks import check_name, err, is_int, is_num, plain_value, unknown

_AXIS_FORMS = ("range", "linspace", "logspace")
_DISTS = ("uniform", "loguniform", "randint", "normal", "choice")
_AXIS_FIX = ("give a list of values, or {range = [start, stop, step]}, {linspace = [a, b, num]}, "
             "{logspace = [a, b, num]}, or a single value")


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
    if isinstance(v, _Dist):
        raise err(f"the distribution {v!r} cannot be a grid/zip axis", key, file,
                  "put random parameters in sample(...) / [space.sample]")
    if isinstance(v, dict):
        if len(v) != 1:
            raise err(f"an axis table must have exactly one key, got {sorted(map(str, v))}",
                      key, file, _AXIS_FIX)
        form, args = next(iter(v.items()))
        if form not in _AXIS_FORMS:
            fix = ("a distribution belongs in [space.sample] / sample(...)" if form in _DISTS
                   else _AXIS_FIX + "; to use a dict as a value, wrap it in a list: [{...}]")
            raise unknown("axis form", form, _AXIS_FORMS, key, file, fix)
        key = f"{key}.{form}"
        if not isinstance(args, (list, tuple)) or not all(is_num(a) for a in args):
            raise err(f"{form} needs a list of numbers, got {args!r}", key, file,
                      f"write {{{form} = " + ("[start, stop, step]}" if form == "range"
                                             else "[a, b, num]}"))
        if form == "range":
            if not 1 <= len(args) <= 3 or not all(is_int(a) for a in args) or \
                    (len(args) == 3 and args[2] == 0):
                raise err(f"range needs 1-3 integers (step not 0), got {list(args)}", key, file,
                          "write {range = [start, stop, step]}; for floats use linspace")
            v = range(*map(int, args))
        else:
            if len(args) != 3 or not is_int(args[2]) or args[2] < 1:
                raise err(f"{form} needs [a, b, num] with num a positive integer, got "
                          f"{list(args)}", key, file, f"write {{{form} = [a, b, num]}}")
            if form == "logspace" and max(abs(args[0]), abs(args[1])) > 300:
                raise err("logspace exponents beyond +-300 overflow a float", key, file,
                          "logspace takes exponents of 10: [-4, -1, 4] gives 1e-4 .. 1e-1")
            if not math.isfinite(float(args[1]) - float(args[0])):
                raise err("linspace ends too far apart for a float", key, file, "narrow it")
            v = _Lin(args[0], args[1], int(args[2]), form == "logspace")
    if isinstance(v, (range, _Lin)):
        try:
            if len(v) == 0:
                raise err(f"{v!r} is empty: empty space", key, file, "give it at least one value")
        except OverflowError:   # len() of more than 2**63 values
            raise err("the axis has too many values", key, file, "narrow it") from None
        return v
    if isinstance(v, (set, frozenset)):
        raise err("a set has no order, so the space would not be reproducible", key, file,
                  "use a list, e.g. sorted(values)")
    if v is None or isinstance(v, (str, bytes, numbers.Number)) or \
            (type(v).__module__ == "numpy" and getattr(v, "ndim", 1) == 0):
        return [plain_value(v, key, file)]         # a scalar is a one-value axis
    try:
        items = v.tolist() if type(v).__module__ == "numpy" else list(v)
    except TypeError:
        raise err(f"{type(v).__name__} is not a valid axis", key, file, _AXIS_FIX) from None
    if not items:
        raise err("the axis has no values: empty space", key, file, "give it at least one value")
    return [plain_value(x, key, file) for x in items]


def _axes_of(fn, dicts, kw, key, file):
    merged = {}
    for d in (*dicts, kw):
        if not isinstance(d, dict):
            raise err(f"{fn} takes its axes as a table / keyword arguments, got {d!r}", key, file,
                      f"write {fn}(name=[values, ...]) or {fn}({{'name': [values, ...]}})")
        for name, v in d.items():
            if name in merged:
                raise err(f"axis {name!r} is given twice", f"{key}.{name}", file, "give it once")
            check_name(name, f"{key}.{name}", file)
            merged[name] = v
    if not merged:
        raise err(f"{fn} has no axes: empty space", key, file,
                  f"give at least one axis, e.g. {fn} = {{n = [1, 2]}}")
    return {n: _axis(v, f"{key}.{n}", file) for n, v in merged.items()}

def _dist_of(v, key, file):
    """A _Dist, or ("const", value) for a plain value."""
    if isinstance(v, _Dist):
        return v
    if isinstance(v, dict):
        if len(v) != 1 or next(iter(v)) not in _DISTS:
            got = next(iter(v)) if len(v) == 1 else sorted(map(str, v))
            fix = ("range/linspace/logspace belong in grid" if got in _AXIS_FORMS else
                   "write e.g. x = {uniform = [0, 1]} or c = {choice = ['a', 'b']}")
            raise unknown("distribution", got, _DISTS, key, file, fix)
        kind, args = next(iter(v.items()))
        args = args if isinstance(args, (list, tuple)) else [args]
        return _make_dist(kind, [args] if kind == "choice" else list(args), f"{key}.{kind}", file)
    if isinstance(v, (list, tuple, set, range)):
        raise err("a list in sample is ambiguous", key, file,
                  "use choice([...]) / {choice = [...]} to draw from it, or put it in grid")
    return ("const", plain_value(v, key, file))


# --- the distributions of sample(...): each draw computed alone from hash bytes ----------------
class _Dist:
    __slots__ = ("kind", "args")

    def __init__(self, kind, args):
        self.kind, self.args = kind, tuple(args)

    def __repr__(self):
        return f"{self.kind}({', '.join(map(repr, self.args))})"

    def draw(self, h: bytes):
        """A value from 16 hash bytes: stable across Python versions, unlike random.Random."""
        k, a = self.kind, self.args
        bits = int.from_bytes(h[:8], "little")
        u = (bits >> 11) * 2.0**-53                               # uniform in [0, 1)
        if k == "uniform":
            return a[0] + (a[1] - a[0]) * u
        if k == "loguniform":
            x = math.exp(math.log(a[0]) + (math.log(a[1]) - math.log(a[0])) * u)
            return min(max(x, a[0]), a[1])
        if k == "randint":
            return a[0] + bits % (a[1] - a[0] + 1)
        if k == "normal":                                         # Box-Muller
            u2 = (int.from_bytes(h[8:], "little") >> 11) * 2.0**-53
            return a[0] + a[1] * math.sqrt(-2.0 * math.log(1.0 - u)) * math.cos(2 * math.pi * u2)
        return a[0][bits % len(a[0])]                             # choice


def _make_dist(kind, args, key, file):
    if kind == "choice":
        vals = args[0] if len(args) == 1 else None
        if not isinstance(vals, (list, tuple)) or not vals:
            raise err(f"choice needs a non-empty list of values, got {vals!r}", key, file,
                      "write choice(['a', 'b']) / {choice = ['a', 'b']}")
        return _Dist(kind, [[plain_value(v, key, file) for v in vals]])
    ok = len(args) == 2 and all(is_num(a) for a in args)
    lo, hi = (args if ok else (0, 0))
    if kind == "randint":
        ok = ok and is_int(lo) and is_int(hi) and lo <= hi
        need = "two integers lo <= hi (both included)"
    elif kind == "normal":
        ok, need = ok and hi >= 0, "mu and sigma >= 0"
    elif kind == "loguniform":
        ok, need = ok and 0 < lo <= hi, "0 < lo <= hi"
    else:
        ok, need = ok and lo <= hi and math.isfinite(hi - lo), "two finite numbers lo <= hi"
    if kind == "normal" and ok:   # Box-Muller stays within 9 sigma: keep every draw finite
        ok = math.isfinite(abs(lo) + 10.0 * hi)
    if not ok:
        raise err(f"{kind} needs {need}, got {list(args)!r}", key, file,
                  f"write {kind}(a, b) / {{{kind} = [a, b]}}")
    conv = int if kind == "randint" else float
    return _Dist(kind, [conv(lo), conv(hi)])


def uniform(lo, hi):
    return _make_dist("uniform", [lo, hi], "uniform", None)


def loguniform(lo, hi):
    return _make_dist("loguniform", [lo, hi], "loguniform", None)


def randint(lo, hi):
    """Integers from lo to hi, both included."""
    return _make_dist("randint", [lo, hi], "randint", None)


def normal(mu, sigma):
    return _make_dist("normal", [mu, sigma], "normal", None)


def choice(values):
    return _make_dist("choice", [values], "choice", None)
