"""The lazy parameter-space algebra: grid, zip, + (concatenation), * (product), reps, sample, where.

A Space is a sequence of points (dicts). Nothing is materialised: every kind knows its size and
computes its i-th point from i in O(number of axes), so a 10^9-point space still answers len() and
s[i] at once. Order is that of nested for-loops written left to right: the last axis (or factor)
varies fastest. Only `where` needs one streaming pass to learn which inner indices match.
"""
from __future__ import annotations

import ast
import builtins
import difflib
import hashlib
import itertools
import math
import numbers
import operator
import re
import sys
import warnings
from array import array
from bisect import bisect_right

from .errors import SpecError
from .ids import derive_seed

__all__ = ["Space", "grid", "zip", "reps", "sample", "where",
           "uniform", "loguniform", "randint", "normal", "choice"]

_zip = builtins.zip          # this module's `zip` is the space constructor
_BIG = 10**6                 # above this many values, iterate by index, not via itertools pools
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


class Space:
    """A lazy, indexable sequence of parameter points (dicts)."""
    kind = "space"
    names: tuple = ()
    _origin = (None, None)   # (file, key) it was read from, for error messages

    # --- what subclasses provide: size (Python int), _get(i) for 0 <= i < size, _expr()
    @property
    def size(self) -> int:
        raise NotImplementedError

    def _get(self, i):
        raise NotImplementedError

    def _expr(self):
        return self.kind

    @property
    def _bound(self):          # size without evaluating where filters (an upper bound)
        return self.size

    def _pending(self):        # True if some where filter has not been evaluated yet
        return False

    # --- the sequence protocol
    def __len__(self):
        n = self.size
        if n > sys.maxsize:
            raise _err(f"space has {n} points, too many for len()", self._origin[1],
                       self._origin[0], "use space.size")
        return n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in range(self.size)[i]]
        i, n = operator.index(i), self.size
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"point {i} out of range for a space of {n} points")
        return self._get(i)

    def __iter__(self):
        return map(self._get, range(self.size))

    # --- the algebra
    def __add__(self, other):
        return _Concat([self, other]) if isinstance(other, Space) else NotImplemented

    def __radd__(self, other):      # lets sum(spaces) work
        return self if isinstance(other, int) and other == 0 else NotImplemented

    def __mul__(self, other):
        return _Product([self, other]) if isinstance(other, Space) else NotImplemented

    def where(self, pred) -> Space:
        return _Filter(self, pred)

    def reps(self, n) -> Space:
        return _Product([self, _Reps(n)])

    # --- looking at it
    def head(self, k=5) -> list:
        return [self._get(i) for i in range(min(k, self.size))]

    def describe(self) -> dict:
        return {"kind": self.kind, "size": self.size, "names": list(self.names)}

    def __repr__(self):
        if self._pending() and self._bound > 100_000:   # don't run a big filter just to print
            return f"{self._expr()}  [<= {self._bound:,} points]"
        return f"{self._expr()}  [{self.size:,} points]"

    def check_size(self, limit=1_000_000, confirm=False) -> int:
        """Number of points; SpecError if empty, or over `limit` and not confirmed."""
        file, key = self._origin
        fix = "pass --yes / confirm=True or narrow the space"
        bound = self._bound
        # a filtered space far over the limit is refused on its bound: counting it would take long
        if not confirm and bound > limit and (not self._pending() or bound > 20 * limit):
            extra = " before where filtering" if self._pending() else ""
            raise _err(f"space has {bound} points{extra}, more than {limit}", key, file, fix)
        n = self.size
        if n == 0:
            raise _err("empty space: the where filter matches no point", key, file,
                       "loosen the where expression")
        if n > limit and not confirm:
            raise _err(f"space has {n} points, more than {limit}", key, file, fix)
        return n

    @staticmethod
    def from_dict(d, file=None, key="space") -> Space:
        """Build a space from its TOML form (the [space] table); errors name file, key and fix."""
        s = _from_dict(d, file, key)
        s._origin = (file, key)
        return s


class _Grid(Space):
    kind = "grid"

    def __init__(self, axes):
        self.names, self._axes = tuple(axes), list(axes.values())
        self._lens = [len(a) for a in self._axes]
        self._size = math.prod(self._lens)
        self._rev = list(_zip(reversed(self._axes), reversed(self._lens)))

    size = property(lambda self: self._size)

    def _get(self, i):
        vals = []
        for ax, n in self._rev:
            i, r = divmod(i, n)
            vals.append(ax[r])
        vals.reverse()
        return dict(_zip(self.names, vals))

    def __iter__(self):
        if sum(self._lens) > _BIG:        # itertools.product would materialise a huge axis first
            return super().__iter__()
        names = self.names
        return (dict(_zip(names, v)) for v in itertools.product(*self._axes))

    def _expr(self):
        return f"{self.kind}({', '.join(f'{n}={k}' for n, k in _zip(self.names, self._lens))})"


class _Zip(_Grid):
    kind = "zip"

    def __init__(self, axes, key, file):
        super().__init__(axes)
        if len(set(self._lens)) > 1:
            got = ", ".join(f"{n}={k}" for n, k in _zip(self.names, self._lens))
            raise _err(f"zipped axes have different lengths: {got}", key, file,
                       "give every zipped axis the same number of values (or use grid for all "
                       "combinations)")
        self._size = self._lens[0]

    def _get(self, i):
        return {n: ax[i] for n, ax in _zip(self.names, self._axes)}

    def __iter__(self):
        if self._size > _BIG:
            return map(self._get, range(self._size))
        names = self.names
        return (dict(_zip(names, v)) for v in _zip(*self._axes))


def _count(n, what, key, file):
    if not _is_int(n) or n < 1:
        raise _err(f"{what} must be a positive integer, got {n!r}", key, file,
                   f"write {what} = 5 (a whole number >= 1)")
    return int(n)


class _Reps(Space):
    """Replicates {"rep": r, "seed": ...}; in a product the seed is derived from the full point."""
    kind = "reps"
    names = ("rep", "seed")

    def __init__(self, n, key="reps", file=None):
        self.n = _count(n, "reps", key, file)

    size = property(lambda self: self.n)

    def _get(self, r):
        return {"rep": r, "seed": derive_seed({}, r)}

    def _expr(self):
        return f"reps({self.n})"


def _reseed(point):
    others = {k: v for k, v in point.items() if k != "rep" and k != "seed"}
    point["seed"] = derive_seed(others, point["rep"])
    return point


class _Product(Space):
    kind = "product"

    def __init__(self, factors, key=None, file=None):
        flat = []
        for f in factors:   # flatten, so a reps(n) factor sees the whole point whatever the nesting
            flat.extend(f.factors if isinstance(f, _Product) else [f])
        seen = {}
        for f in flat:
            for n in f.names:
                if n in seen:
                    raise _err(f"parameter {n!r} appears in two factors of a product "
                               f"({seen[n]} and {f._expr()})", key or n, file,
                               "rename one of them, or concatenate with + instead")
                seen[n] = f._expr()
        self.factors, self.names = flat, tuple(seen)
        self._reps = any(isinstance(f, _Reps) for f in flat)
        self._sizes = None

    @property
    def sizes(self):
        if self._sizes is None:
            self._sizes = [f.size for f in self.factors]
        return self._sizes

    size = property(lambda self: math.prod(self.sizes))
    _bound = property(lambda self: math.prod(f._bound for f in self.factors))

    def _pending(self):
        return any(f._pending() for f in self.factors)

    def _get(self, i):
        parts = []
        for f, n in _zip(reversed(self.factors), reversed(self.sizes)):
            i, r = divmod(i, n)
            parts.append(f._get(r))
        point = {}
        for p in reversed(parts):
            point.update(p)
        return _reseed(point) if self._reps else point

    def __iter__(self):
        first, rest = self.factors[0], self.factors[1:]
        if sum(f._bound for f in rest) > _BIG:   # bound: don't run filters twice
            return super().__iter__()
        return self._stream(first, [list(f) for f in rest])

    def _stream(self, first, pools):
        reps = self._reps
        for a in first:
            for combo in itertools.product(*pools):
                point = dict(a)
                for p in combo:
                    point.update(p)
                yield _reseed(point) if reps else point

    def _expr(self):
        return " * ".join(f"({f._expr()})" if isinstance(f, _Concat) else f._expr()
                          for f in self.factors)


class _Concat(Space):
    kind = "concat"

    def __init__(self, parts):
        self.parts = [q for p in parts for q in (p.parts if isinstance(p, _Concat) else [p])]
        self.names = tuple(dict.fromkeys(n for p in self.parts for n in p.names))
        self._offsets = None

    @property
    def offsets(self):
        if self._offsets is None:
            self._offsets = list(itertools.accumulate((p.size for p in self.parts), initial=0))
        return self._offsets

    size = property(lambda self: self.offsets[-1])
    _bound = property(lambda self: sum(p._bound for p in self.parts))

    def _pending(self):
        return any(p._pending() for p in self.parts)

    def _get(self, i):
        j = bisect_right(self.offsets, i) - 1
        return self.parts[j]._get(i - self.offsets[j])

    def __iter__(self):
        return itertools.chain.from_iterable(self.parts)

    def _expr(self):
        return " + ".join(p._expr() for p in self.parts)


# --- where: a safe expression language over parameter names -----------------------------------
_FUNCS = {"abs": abs, "min": min, "max": max, "round": round, "len": len,
          "int": int, "float": float, "str": str, "bool": bool}
_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.Add, ast.Sub, ast.Mult,
          ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
          ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
          ast.Is, ast.IsNot, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, ast.Set,
          ast.Call)
_WHERE_FIX = ("use parameter names, constants, comparisons, and/or/not, arithmetic, `in`, "
              "and abs/min/max/round/len/int/float/str/bool, e.g. \"delta <= 0.5 or n > 100\"")


def _pow(a, b):   # 9**9**9 would hang the driver: refuse absurd exponents
    if isinstance(b, (int, float)) and abs(b) > 10_000:
        raise ValueError(f"exponent {b} is too large")
    return a ** b


class _PowToCall(ast.NodeTransformer):
    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.copy_location(ast.Call(ast.Name("_pow", ast.Load()), [node.left, node.right],
                                              []), node)
        return node


class _Expr:
    """A compiled where-expression; names outside the space are refused before anything runs."""

    def __init__(self, text, names, key, file):
        self.text, self.key, self.file = text, key, file
        try:
            with warnings.catch_warnings():   # e.g. "n is 1": no SyntaxWarning on the console
                warnings.simplefilter("ignore")
                tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise _err(f"where expression {text!r} is not valid Python syntax "
                       f"({getattr(e, 'msg', e)})", key, file, _WHERE_FIX) from None
        used = set()
        for node in ast.walk(tree):
            if not isinstance(node, _NODES):
                raise _err(f"{type(node).__name__} is not allowed in a where expression "
                           f"({text!r})", key, file, _WHERE_FIX)
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS \
                        or node.keywords:
                    raise _err(f"only calls to {', '.join(_FUNCS)} (no keywords) are allowed in a "
                               f"where expression ({text!r})", key, file, _WHERE_FIX)
            elif isinstance(node, ast.Constant) and not (
                    node.value is None or isinstance(node.value, (bool, int, float, str))):
                raise _err(f"constant {node.value!r} is not allowed in a where expression",
                           key, file, _WHERE_FIX)
            elif isinstance(node, ast.Name) and node.id not in _FUNCS:
                if node.id not in names:
                    raise _unknown("parameter", node.id, list(names), key, file,
                                   f"the space's parameters are: {', '.join(names)}")
                used.add(node.id)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.code = compile(ast.fix_missing_locations(_PowToCall().visit(tree)),
                                    "<where>", "eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            raise _err(f"where expression {text!r} cannot be compiled ({e})", key, file,
                       _WHERE_FIX) from None
        # a point of a concatenation may lack a name: it reads as None there
        self.globals = {"__builtins__": {}, **_FUNCS, "_pow": _pow, **dict.fromkeys(used)}

    def __call__(self, point):
        try:
            return bool(eval(self.code, self.globals, point))  # noqa: S307 - AST checked above
        except Exception as e:
            raise _err(f"where expression {self.text!r} failed on point {point}: "
                       f"{type(e).__name__}: {e}", self.key, self.file,
                       "make the expression valid for every point (e.g. compare numbers with "
                       "numbers)") from None


class _Filter(Space):
    kind = "where"

    def __init__(self, inner, pred, key="where", file=None):
        self.inner, self.names, self._idx = inner, inner.names, None
        if isinstance(pred, str):
            self.test = _Expr(pred, inner.names, key, file)
            self.label = repr(pred)
        elif callable(pred):
            self.test = lambda p: bool(pred(p))
            self.label = getattr(pred, "__name__", "<callable>")
        else:
            raise _err(f"where takes a string expression or a callable, got {pred!r}", key, file,
                       _WHERE_FIX)

    @property
    def indices(self):
        """Inner indices that match: one streaming pass on first use, then cached."""
        if self._idx is None:
            test, idx = self.test, array("q")
            for j, p in enumerate(self.inner):
                if test(p):
                    idx.append(j)
            self._idx = idx
        return self._idx

    size = property(lambda self: len(self.indices))
    _bound = property(lambda self: self.inner._bound)

    def _pending(self):
        return self._idx is None or self.inner._pending()

    def _get(self, i):
        return self.inner._get(self.indices[i])

    def __iter__(self):
        return filter(self.test, self.inner)

    def _expr(self):
        inner = self.inner._expr()
        if isinstance(self.inner, (_Product, _Concat)):
            inner = f"({inner})"
        return f"{inner}.where({self.label})"


# --- sample: seeded random points, each computable alone ----------------------------------------
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
            raise _err(f"choice needs a non-empty list of values, got {vals!r}", key, file,
                       "write choice(['a', 'b']) / {choice = ['a', 'b']}")
        return _Dist(kind, [[_value(v, key, file) for v in vals]])
    ok = len(args) == 2 and all(_is_num(a) for a in args)
    lo, hi = (args if ok else (0, 0))
    if kind == "randint":
        ok = ok and _is_int(lo) and _is_int(hi) and lo <= hi
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
        raise _err(f"{kind} needs {need}, got {list(args)!r}", key, file,
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


def _dist_of(v, key, file):
    """A _Dist, or ("const", value) for a plain value."""
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


class _Sample(Space):
    kind = "sample"

    def __init__(self, n, seed, dists, key="sample", file=None):
        self.n = _count(n, "sample n", f"{key}.n", file)
        if not _is_int(seed):
            raise _err(f"seed must be an integer, got {seed!r}", f"{key}.seed", file,
                       "write seed = 1")
        if not dists:
            raise _err("sample has no parameters: empty space", key, file,
                       "add e.g. x = {uniform = [0, 1]}")
        self.seed, self.dists, self._items = int(seed), {}, []
        for name, v in dists.items():
            _check_name(name, f"{key}.{name}", file)
            d = self.dists[name] = _dist_of(v, f"{key}.{name}", file)
            if isinstance(d, _Dist):   # the i-th value depends on (seed, name, i) only
                base = hashlib.blake2b(f"{self.seed}\0{name}\0".encode(), digest_size=16)
                self._items.append((name, d, base))
            else:
                self._items.append((name, d[1], None))
        self.names = tuple(self.dists)

    size = property(lambda self: self.n)

    def _get(self, i):
        point, tail = {}, b"%d" % i
        for name, d, base in self._items:
            if base is None:
                point[name] = d
            else:
                h = base.copy()
                h.update(tail)
                point[name] = d.draw(h.digest())
        return point

    def _expr(self):
        args = [f"{n}={d!r}" if isinstance(d, _Dist) else f"{n}={d[1]!r}"
                for n, d in self.dists.items()]
        return f"sample({self.n}, seed={self.seed}, {', '.join(args)})"


# --- public constructors ------------------------------------------------------------------------
def grid(*dicts, **axes) -> Space:
    """All combinations, last axis fastest: grid(n=[1, 2], lr={"logspace": [-4, -1, 4]})."""
    return _Grid(_axes_of("grid", dicts, axes, "grid", None))


def zip(*dicts, **axes) -> Space:   # noqa: A001 - the algebra's name for it
    """Axes walked together: zip(a=[1, 2], b=["x", "y"]) has 2 points."""
    return _Zip(_axes_of("zip", dicts, axes, "zip", None), "zip", None)


def reps(n, space=None) -> Space:
    """n replicates, with rep = 0..n-1 and seed = derive_seed(other params, rep)."""
    return _Reps(n) if space is None else space.reps(n)


def sample(n, seed=0, **dists) -> Space:
    """n random points; the i-th is computed alone from (seed, i, name)."""
    return _Sample(n, seed, dists)


def where(space, pred) -> Space:
    if not isinstance(space, Space):
        raise _err(f"where needs a space first, got {space!r}", "where", None,
                   "write where(grid(...), 'n > 1') or grid(...).where('n > 1')")
    return _Filter(space, pred)


def _from_dict(d, file, key):
    """[space] table -> (grid * zip * sample * union).where(...) * reps(n)."""
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


if __name__ == "__main__":   # quick benchmark, not a test
    import time
    g = grid(a=range(100), b=range(100), c=range(100))
    t = time.perf_counter()
    n = sum(1 for _ in g)
    print(f"iterate {n} grid points: {time.perf_counter() - t:.2f} s")
    big = grid(a=range(1000), b=range(1000), c=range(1000)) * reps(3)
    t = time.perf_counter()
    print(len(big), big[-1], f"{(time.perf_counter() - t) * 1e6:.0f} us")
    t = time.perf_counter()
    w = g.where("a + b + c < 30")
    print(repr(w), f"{time.perf_counter() - t:.2f} s")
