"""The lazy parameter-space algebra: grid, zip, + (concatenation), * (product), reps, sample, where.

A Space is a sequence of points (dicts). Nothing is materialised: every kind knows its size and
computes its i-th point from i in O(number of axes), so a 10^9-point space still answers len() and
s[i] at once. Order is that of nested for-loops written left to right: the last axis (or factor)
varies fastest. Only `where` needs one streaming pass to learn which inner indices match.
"""
from __future__ import annotations

import builtins
import hashlib
import itertools
import math
import operator
import sys
from array import array
from bisect import bisect_right

from pushbutton.core.ids import derive_seed
from pushbutton.spec.checks import check_name, err, is_int, positive_count, unknown
from pushbutton.spec.space_form import (_Dist, _axes_of, _dist_of, choice, loguniform, normal,
                                        randint, uniform)
from pushbutton.spec.where import _WHERE_FIX, _Expr

__all__ = ["Space", "grid", "zip", "reps", "sample", "where",
           "uniform", "loguniform", "randint", "normal", "choice"]

_zip = builtins.zip          # this module's `zip` is the space constructor
_SPACE_KEYS = ("grid", "zip", "sample", "union", "reps", "where")  # of a [space] table
_BIG = 10**6                 # above this many values, iterate by index, not via itertools pools


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
            raise err(f"space has {n} points, too many for len()", self._origin[1],
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
            raise err(f"space has {bound} points{extra}, more than {limit}", key, file, fix)
        if self._pending() and (confirm or bound <= limit):
            # within the limit however many match: not counted here (registration streams the
            # filter once); only whether any point matches at all
            if next(iter(self), None) is None:
                raise err("empty space: the where filter matches no point", key, file,
                          "loosen the where expression")
            return bound
        n = self.size
        if n == 0:
            raise err("empty space: the where filter matches no point", key, file,
                      "loosen the where expression")
        if n > limit and not confirm:
            raise err(f"space has {n} points, more than {limit}", key, file, fix)
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
            raise err(f"zipped axes have different lengths: {got}", key, file,
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


class _Reps(Space):
    """Replicates {"rep": r, "seed": ...}; in a product the seed is derived from the full point."""
    kind = "reps"
    names = ("rep", "seed")

    def __init__(self, n, key="reps", file=None):
        self.n = positive_count(n, "reps", key, file)

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
                    raise err(f"parameter {n!r} appears in two factors of a product "
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
            raise err(f"where takes a string expression or a callable, got {pred!r}", key, file,
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
class _Sample(Space):
    kind = "sample"

    def __init__(self, n, seed, dists, key="sample", file=None):
        self.n = positive_count(n, "sample n", f"{key}.n", file)
        if not is_int(seed):
            raise err(f"seed must be an integer, got {seed!r}", f"{key}.seed", file,
                      "write seed = 1")
        if not dists:
            raise err("sample has no parameters: empty space", key, file,
                      "add e.g. x = {uniform = [0, 1]}")
        self.seed, self.dists, self._items = int(seed), {}, []
        for name, v in dists.items():
            check_name(name, f"{key}.{name}", file)
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
        raise err(f"where needs a space first, got {space!r}", "where", None,
                  "write where(grid(...), 'n > 1') or grid(...).where('n > 1')")
    return _Filter(space, pred)


# --- the written form ([space] table) ----------------------------------------------------------
def _from_dict(table, file, key):
    """[space] table -> (grid * zip * sample * union).where(...) * reps(n)."""
    if not isinstance(table, dict):
        raise err(f"must be a table, got {type(table).__name__} {table!r}", key, file,
                  "write a table with grid / zip / sample / union / reps / where keys")
    for k in table:
        if k not in _SPACE_KEYS:
            raise unknown("key", k, _SPACE_KEYS, f"{key}.{k}", file)
    factors = []
    for name, make in (("grid", lambda a, k: _Grid(a)), ("zip", lambda a, k: _Zip(a, k, file))):
        if name in table:
            if not isinstance(table[name], dict):
                raise err(f"{name} must be a table of axes, got {table[name]!r}", f"{key}.{name}",
                          file, f"write {name} = {{n = [1, 2], x = ['a', 'b']}}")
            factors.append(make(_axes_of(name, (table[name],), {}, f"{key}.{name}", file),
                                f"{key}.{name}"))
    if "sample" in table:
        sample_table, k = table["sample"], f"{key}.sample"
        if not isinstance(sample_table, dict):
            raise err(f"sample must be a table, got {sample_table!r}", k, file,
                      "write sample = {n = 100, seed = 1, x = {uniform = [0, 1]}}")
        if "n" not in sample_table:
            raise err("sample needs n, the number of points", f"{k}.n", file, "add n = 100")
        dists = {p: v for p, v in sample_table.items() if p not in ("n", "seed")}
        factors.append(_Sample(sample_table["n"], sample_table.get("seed", 0), dists, k, file))
    if "union" in table:
        parts, k = table["union"], f"{key}.union"
        if not isinstance(parts, list) or not parts:
            raise err(f"union must be a non-empty list of tables, got {parts!r}", k, file,
                      "write [[space.union]] sections, each a space of its own")
        factors.append(_Concat([_from_dict(x, file, f"{k}[{i}]") for i, x in enumerate(parts)]))
    space = None
    if factors:
        space = factors[0] if len(factors) == 1 else _Product(factors, key, file)
    elif "reps" not in table:
        raise err("empty space: no grid, zip, sample or union", key, file,
                  "add e.g. grid = {n = [1, 2, 3]}")
    if "where" in table:
        if space is None:
            raise err("where needs something to filter", f"{key}.where", file,
                      "add a grid, zip, sample or union")
        if not isinstance(table["where"], str) or not table["where"].strip():
            raise err(f"where must be a non-empty string expression, got {table['where']!r}",
                      f"{key}.where", file, _WHERE_FIX)
        space = _Filter(space, table["where"], f"{key}.where", file)
    if "reps" in table:
        replicates = _Reps(table["reps"], f"{key}.reps", file)
        space = replicates if space is None else _Product([space, replicates], key, file)
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
