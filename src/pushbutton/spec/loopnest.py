"""The loop nest of a `pb parrun` script, whatever its language: the grid and how a task runs.

A reader for one language (parrun.py for Python; one per language, registered in
parrun.LANGUAGES by file suffix) turns SCRIPT into a `LoopNest`:

* `axes`: the grid's loops, outermost first. An `Axis` has
  - `names`: its loop variables; several when one loop binds them together (`for i, x in
    enumerate(X)`, `for a, b in zip(A, B)`): a zipped axis, one parameter column per name;
  - `line`, `source`: where the loop is and its iterable as written;
  - `columns`: one sequence per name (a `range` may stand for a lazy integer axis), all of one
    length, for a loop whose values do not depend on the loops around it; or
  - `by_path`: for a dependent loop (`for j in range(i)`), {tuple of the outer loops' element
    indices (0-based, one per outer axis): columns}; the space is then not a rectangle but the
    concatenation, over the outer points, of each point times its inner values (an empty inner
    loop gives that outer point no task);
  - `modes`: per name, how a parameter value names the loop's element: "value" (the element's
    JSON form), "repr" (its repr, memory addresses removed: an object that has no JSON form) or
    "index" (`"#<i> <repr>"`, where reprs collide).
* `preamble`: (first, last) script lines before the outermost loop (run by every task); `body`:
  (first, last) lines of the innermost loop's body; `prefixes`: per axis after the first, the
  (first, last) lines of the statements of the enclosing loop's body before it (run per task,
  before the inner body), or None.
* `how` ("static": read without running anything; "evaluated": the script's top and loop
  headers were run in a subprocess), `seconds` (what reading the grid cost), `warnings`.

The per-point runner contract (what a language's `write_runner` produces; worker.py runs it as
a command task, its argv from the language's `argv(runner)`):
* it runs in the task's own folder (`$PB_TASK_DIR`, the current directory): worker.py makes it
  fresh for each attempt, with the script's folder's files copied in (small files) or linked
  (folders, big files), so files a task writes never collide with another's;
* `$PB_PARAMS` holds the point: a JSON object, loop variable -> value as `modes` says;
* it runs the script as written, except that each grid loop iterates over the one element of
  its iterable (evaluated in the task, as the script would) whose value, repr or index matches
  the point: statements before an inner loop run per task, `break`/`continue` end the point;
  an element not found is an error saying the loop's values changed since the grid was read;
* metrics: a JSON object written to `$PB_RESULT`, or printed as the last stdout line; a
  non-zero exit status fails the task, its stderr kept.
The runner file is written under `.pushbutton/parrun/`; `--on TARGET` ships it with the code
(execution/slurm/submit.py: command arguments naming files there travel to `<base>/parrun/`).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.core.errors import SpecError

MODES = ("value", "repr", "index")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
REPR_MAX = 200


def stable_repr(text: str) -> str:
    """A value's repr as a parameter: memory addresses removed (they change from run to run),
    at most REPR_MAX characters."""
    text = _ADDRESS.sub("", text)
    return text if len(text) <= REPR_MAX else text[:REPR_MAX - 1] + "…"


@dataclass
class Axis:
    names: tuple
    line: int
    source: str
    columns: tuple | None = None      # independent loop: one sequence per name
    by_path: dict | None = None       # dependent loop: {outer element indices: columns}
    modes: tuple = ()

    def __post_init__(self):
        if not self.modes:
            self.modes = ("value",) * len(self.names)

    @property
    def dependent(self) -> bool:
        return self.by_path is not None

    def columns_at(self, path: tuple) -> tuple:
        if self.by_path is None:
            return self.columns
        return self.by_path.get(tuple(path)) or tuple([] for _ in self.names)

    def sizes(self) -> list:
        if self.by_path is None:
            return [len(self.columns[0])]
        return [len(c[0]) for c in self.by_path.values()]


@dataclass
class LoopNest:
    path: Path
    language: str
    text: str
    axes: list
    preamble: tuple
    body: tuple
    prefixes: list = field(default_factory=list)
    how: str = "static"
    seconds: float = 0.0
    warnings: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # the language reader's own notes

    @property
    def names(self) -> list:
        return [n for ax in self.axes for n in ax.names]

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.text.encode("utf-8"), digest_size=6).hexdigest()


def _factor(names, cols):
    from pushbutton.spec.space import grid, zip as zip_
    if len(names) == 1:
        return grid({names[0]: cols[0]})
    return zip_({n: c for n, c in zip(names, cols)})


_EMPTY = object()


def space_of(nest: LoopNest):
    """The parameter space of the nest, in loop order (the last loop varies fastest)."""
    from pushbutton.spec.space import _Concat
    axes = nest.axes
    for ax in axes:
        if not ax.dependent and len(ax.columns[0]) == 0:
            raise SpecError(f"the loop over `{ax.source}` is empty: the grid has no point",
                            file=f"{nest.path}:{ax.line}", fix="give the loop at least one "
                            "value (see them with `pb parrun SCRIPT --dry-run`)")

    def build(k, path):
        if k == len(axes):
            return None
        ax = axes[k]
        cols = ax.columns_at(path)
        n = len(cols[0])
        if n == 0:
            return _EMPTY
        if not any(a.dependent for a in axes[k + 1:]):
            rest = build(k + 1, path)
            if rest is _EMPTY:
                return _EMPTY
            f = _factor(ax.names, cols)
            return f if rest is None else f * rest
        parts = []
        for i in range(n):
            rest = build(k + 1, path + (i,))
            if rest is _EMPTY:
                continue
            f = _factor(ax.names, [c[i:i + 1] for c in cols])
            parts.append(f if rest is None else f * rest)
        if not parts:
            return _EMPTY
        return parts[0] if len(parts) == 1 else _Concat(parts)
    space = build(0, ())
    if space is _EMPTY or space is None:
        ax = axes[-1]
        raise SpecError("the loops give no grid point at all: every inner loop is empty",
                        file=f"{nest.path}:{ax.line}", fix="check the loops' values with "
                        "`pb parrun SCRIPT --dry-run`")
    return space


def empty_inner(nest: LoopNest) -> list:
    """Warnings for outer points whose dependent inner loop is empty (they get no task)."""
    out = []
    for ax in nest.axes:
        if ax.dependent:
            empty = sum(1 for c in ax.by_path.values() if not len(c[0]))
            if empty:
                out.append(f"{nest.path.name}:{ax.line}: the loop over `{ax.source}` is empty "
                           f"for {empty} of the outer points: they get no task (and the "
                           "statements before it do not run for them)")
    return out


def describe(nest: LoopNest) -> str:
    parts = []
    for ax in nest.axes:
        sizes = ax.sizes()
        if ax.dependent:
            lo, hi = (min(sizes), max(sizes)) if sizes else (0, 0)
            count = f"{lo}-{hi} values, depending on the outer loops" if lo != hi else \
                f"{lo} value{'s' * (lo != 1)} at each outer point"
        else:
            count = f"{sizes[0]} value{'s' * (sizes[0] != 1)}"
        shown = [n if m == "value" else f"{n} by {m}" for n, m in zip(ax.names, ax.modes)]
        parts.append(f"{', '.join(shown)} ({count}, line {ax.line}: {ax.source})")
    return " x ".join(parts)


def how_line(nest: LoopNest) -> str:
    """What reading the grid cost, for the dry run."""
    t = nest.seconds
    took = f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"
    if nest.how == "static":
        return f"grid read statically (no code run) in {took}"
    first, last = nest.preamble
    top = (f"lines {first}-{last} and " if last > first else f"line {first} and "
           if last == first else "")
    return f"grid evaluated by running the script's {top}loop headers in a subprocess: {took}"


def check_plain(v) -> bool:
    """Whether v is a value a parameter can hold (JSON, finite numbers, string keys)."""
    if v is None or isinstance(v, (bool, int, str)):
        return True
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (list, tuple)):
        return all(check_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and check_plain(x) for k, x in v.items())
    return False


def default_name(path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "-", Path(path).stem).strip("-.") or "script"
    return f"parrun-{stem}"[:100]


__all__ = ["Axis", "LoopNest", "space_of", "describe", "how_line", "stable_repr",
           "default_name", "empty_inner", "MODES", "check_plain"]
