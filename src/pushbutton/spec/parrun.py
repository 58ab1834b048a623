"""`pb parrun SCRIPT.py`: sweep an unchanged Python script whose leading `for` loops name the grid.

ClusterJob's `cj parrun` idea: in

    import numpy as np                       # preamble: runs in every task
    LRS = [0.1, 0.01]
    for lr in LRS:                           # the grid: lr x seed, in loop order
        for seed in range(5):
            result = {"loss": train(lr, seed)}   # the body: runs once per grid point

the chain of top-level `for` loops (each the only statement of the previous one's body) is the
parameter space, and the innermost body is the task. The script is parsed with `ast` (never run
here, never modified); a runner script is generated under `.pushbutton/parrun/` (parrun_runner.py)
that holds the preamble, binds the loop variables from `$PB_PARAMS`, runs the body once and
reports metrics.
The experiment is an ordinary command experiment, so resume, status, results, logs and report
work as for `pb run`.

Rules (each broken one is a SpecError naming the script, the line and the fix):
* iterables: a literal list/tuple of constants, `range(...)` of literal ints (or of names bound
  to literal ints in the preamble), or the name of a preamble constant bound to a literal list;
* loop targets: simple names, or a flat tuple of names over a list of tuples (`for a, b in
  [(1, "x"), (2, "y")]` walks a and b together);
* no `else:` on the grid loops, no statements after the loop nest at top level (they would run
  once per task, or never: move them to an analysis script reading `pb results`).
* `continue` in the body ends the point's run; `break` ends only that point (a warning says so).
Metrics: a module-level dict `result` (or else `metrics`) after the body; else the last value of
each metric passed to `pushbutton.log`; else a JSON object printed as the last stdout line;
else none (the task is still done or failed, with its output kept).
"""
from __future__ import annotations

import ast
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError
from pushbutton.spec.parrun_runner import runner_source, write_runner

FIX = "use a literal list or range(); or write an experiment.toml"
_MUTATORS = (ast.Store, ast.Del)


@dataclass
class Loop:
    names: tuple          # loop variable names (one, or several for a tuple target)
    values: object        # list of values (tuples for a tuple target) or a range
    line: int
    source: str           # the iterable as written


@dataclass
class Script:
    path: Path
    text: str
    loops: list
    preamble: list        # source lines before the first loop
    future_end: int       # number of preamble lines that must stay first (__future__ imports)
    body: str             # the innermost body, ready to sit at module level
    body_lines: tuple     # (first, last) line of the body in the script
    warnings: list = field(default_factory=list)

    @property
    def names(self) -> list:
        return [n for lp in self.loops for n in lp.names]

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.text.encode("utf-8"), digest_size=6).hexdigest()


def _err(path, line, msg, fix=FIX):
    return SpecError(msg, file=f"{path}:{line}" if line else str(path), fix=fix)


def _literal(node):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _constants(stmts) -> dict:
    """Module-level names bound to a literal in the preamble and not touched since."""
    consts: dict = {}
    for st in stmts:
        if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            ok, val = _literal(st.value)
            if ok and all(isinstance(t, ast.Name) for t in targets):
                for t in targets:
                    consts[t.id] = val
                continue
        touched = set()
        for n in ast.walk(st):
            if isinstance(n, ast.Name) and isinstance(n.ctx, _MUTATORS):
                touched.add(n.id)
            elif isinstance(n, (ast.Attribute, ast.Subscript)) and isinstance(n.value, ast.Name):
                touched.add(n.value.id)        # X.append(...), X[0] = ..., del X[0]
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                touched.add(n.name)
            elif isinstance(n, ast.alias):
                touched.add((n.asname or n.name).split(".")[0])
            elif isinstance(n, (ast.Global, ast.Nonlocal)):
                touched.update(n.names)
        for name in touched:
            consts.pop(name, None)
    return consts


def _check_value(v, path, line, what):
    if v is None or isinstance(v, (bool, int, str)):
        return
    if isinstance(v, float):
        if v == v and v not in (float("inf"), float("-inf")):
            return
        raise _err(path, line, f"{what}: {v!r} cannot be a parameter value",
                   "use finite numbers (NaN and inf cannot be stored)")
    if isinstance(v, (list, tuple)):
        for x in v:
            _check_value(x, path, line, what)
        return
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        for x in v.values():
            _check_value(x, path, line, what)
        return
    raise _err(path, line, f"{what}: value {v!r} of type {type(v).__name__} cannot be a "
               "parameter value", "use numbers, strings, booleans, None, or lists/dicts of those")


def _values(node, consts, path, src):
    """The values an iterable walks, when they are known without running anything."""
    line = node.lineno
    what = f"the loop iterates over `{src}`"
    if isinstance(node, (ast.List, ast.Tuple)):
        ok, vals = _literal(node)
        if not ok:
            raise _err(path, line, f"{what}, a list whose elements are not all constants")
        vals = list(vals)
    elif isinstance(node, ast.Set):
        raise _err(path, line, f"{what}, a set: its order is not fixed", FIX)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
          and node.func.id == "range" and not node.keywords and 1 <= len(node.args) <= 3):
        args = []
        for a in node.args:
            ok, v = _literal(a)
            if not ok and isinstance(a, ast.Name) and a.id in consts:
                ok, v = True, consts[a.id]
            if not ok or not isinstance(v, int) or isinstance(v, bool):
                raise _err(path, line, f"{what}: range() needs literal integers")
            args.append(v)
        if args[-1] == 0 and len(args) == 3:
            raise _err(path, line, f"{what}: range() step must not be zero")
        vals = range(*args)
    elif isinstance(node, ast.Name) and node.id in consts:
        vals = consts[node.id]
        if not isinstance(vals, (list, tuple)):
            raise _err(path, line, f"{what}, which is bound to {vals!r}, not a list")
        vals = list(vals)
    else:
        kind = ("a function call" if isinstance(node, ast.Call) else
                "a variable not bound to a literal list before the loop"
                if isinstance(node, ast.Name) else "an expression")
        raise _err(path, line, f"{what}, {kind}: the grid must be known without running "
                   "the script")
    if len(vals) == 0:
        raise _err(path, line, f"{what}, which is empty", "give at least one value")
    if not isinstance(vals, range):
        _check_value(vals, path, line, what)
    return vals


def _loop(node, consts, path, src) -> Loop:
    line = node.lineno
    code = ast.get_source_segment(src, node.iter) or "?"
    if node.orelse:
        raise _err(path, node.orelse[0].lineno, "a grid loop has an `else:` clause, which has "
                   "no meaning once each point runs as its own task", "remove the else: block")
    t = node.target
    if isinstance(t, ast.Name):
        names = (t.id,)
    elif isinstance(t, (ast.Tuple, ast.List)) and t.elts and all(isinstance(e, ast.Name)
                                                                  for e in t.elts):
        names = tuple(e.id for e in t.elts)
    else:
        raise _err(path, line, f"the loop variable `{ast.get_source_segment(src, t)}` is not "
                   "a simple name (or a flat tuple of names)", "write `for x in [...]:`")
    vals = _values(node.iter, consts, path, code)
    if len(names) > 1:
        for v in vals:
            if not isinstance(v, (list, tuple)) or len(v) != len(names):
                raise _err(path, line, f"the loop unpacks {len(names)} names but `{code}` "
                           f"holds {v!r}", f"give tuples of {len(names)} values")
    return Loop(names, vals, line, code)


def _escapes(body) -> list:
    """break/continue statements that belong to the grid loop itself."""
    out = []

    def walk(n):
        if isinstance(n, (ast.Break, ast.Continue)):
            out.append(n)
        if isinstance(n, (ast.For, ast.AsyncFor, ast.While)):
            for x in n.orelse:
                walk(x)
            return
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        for c in ast.iter_child_nodes(n):
            walk(c)
    for st in body:
        walk(st)
    return out


def _body_text(node, lines, src) -> str:
    body = node.body
    first, last = body[0].lineno, body[-1].end_lineno
    if first == node.lineno:                       # `for x in [1, 2]: f(x)`
        return "\n".join(ast.get_source_segment(src, s) for s in body) + "\n", False
    chunk = lines[first - 1:last]
    indent = chunk[0][:len(chunk[0]) - len(chunk[0].lstrip())]
    multiline_str = any(isinstance(n, (ast.Constant, ast.JoinedStr)) and
                        n.end_lineno > n.lineno and
                        (not isinstance(n, ast.Constant) or isinstance(n.value, (str, bytes)))
                        for st in body for n in ast.walk(st))
    out = []
    for ln in chunk:
        if ln.startswith(indent):
            out.append(ln[len(indent):])
        elif not ln.strip() or ln.lstrip().startswith("#"):
            out.append(ln.lstrip())
        else:
            multiline_str = True                   # a continuation line left of the body
    if multiline_str:    # dedenting would change a string's text: keep it as written
        return "".join(chunk), True
    return "".join(out), False


def _read(path: Path):
    """(source text, syntax tree, source lines each ending in a newline) of SCRIPT.py."""
    if path.suffix != ".py":
        raise SpecError(f"{path}: pb parrun takes a Python script (SCRIPT.py)",
                        fix="for an experiment.toml use `pb run`")
    try:
        src = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read it: {e}") from None
    try:
        tree = ast.parse(src, filename=str(path))
    except SyntaxError as e:
        raise _err(path, e.lineno, f"syntax error: {e.msg}", "fix the script so that "
                   "`python SCRIPT.py` runs") from None
    lines = src.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return src, tree, lines


def _grid_loops(node, consts, path, src):
    """(the grid's loops, outermost first; the innermost `for` node, whose body is the task)."""
    loops, seen = [], {}
    while True:
        lp = _loop(node, consts, path, src)
        for n in lp.names:
            if n in seen:
                raise _err(path, lp.line, f"loop variable `{n}` is already the variable of "
                           f"the loop on line {seen[n]}", "give each loop its own variable")
            seen[n] = lp.line
        loops.append(lp)
        if len(node.body) == 1 and isinstance(node.body[0], ast.For):
            node = node.body[0]
            continue
        return loops, node


def _task_body(node, lines, src, path):
    """(the innermost loop's body as module-level text, warnings): wrapped in a one-pass loop
    when it uses break/continue, in `if True:` when it must stay as written."""
    warnings = []
    esc = _escapes(node.body)
    body, as_written = _body_text(node, lines, src)
    if esc:
        if any(isinstance(e, ast.Break) for e in esc):
            ln = next(e.lineno for e in esc if isinstance(e, ast.Break))
            warnings.append(f"{path}:{ln}: `break` ends only the current grid point's task, "
                            "not the sweep: every point still runs")
        if not as_written:
            body = "".join("    " + ln if ln.strip() else ln for ln in body.splitlines(True))
        body = "for _pb_point in (0,):  # so that break/continue end this point\n" + body
    elif as_written:
        body = "if True:  # the body as written (it holds a multi-line string)\n" + body
    return body, warnings


def parse(path) -> Script:
    """Read SCRIPT.py into its preamble, grid loops and body (SpecError when it cannot)."""
    path = Path(path)
    src, tree, lines = _read(path)
    first = next((i for i, st in enumerate(tree.body) if isinstance(st, ast.For)), None)
    if first is None:
        raise _err(path, None, "no top-level `for` loop: nothing names the grid",
                   "write the sweep as `for x in [...]:` at the top level (not inside a "
                   "function or `if __name__ == ...`); or write an experiment.toml")
    pre, rest = tree.body[:first], tree.body[first + 1:]
    if rest:
        raise _err(path, rest[0].lineno, "a statement after the loop nest: it would run once "
                   "per grid point (or never) instead of once after the sweep",
                   "move it to a separate script that reads `pb results`; leave the loops last")
    loops, node = _grid_loops(tree.body[first], _constants(pre), path, src)
    body, warnings = _task_body(node, lines, src, path)
    future_end = 0
    for st in pre:
        if isinstance(st, ast.ImportFrom) and st.module == "__future__":
            future_end = st.end_lineno
    return Script(path=path.resolve(), text=src, loops=loops,
                  preamble=lines[:tree.body[first].lineno - 1], future_end=future_end,
                  body=body, body_lines=(node.body[0].lineno, node.body[-1].end_lineno),
                  warnings=warnings)


def default_name(path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "-", Path(path).stem).strip("-.") or "script"
    return f"parrun-{stem}"[:100]


def space_of(s: Script):
    from pushbutton.spec.space import grid, zip as zip_
    space = None
    for lp in s.loops:
        if len(lp.names) == 1:
            f = grid({lp.names[0]: lp.values})
        else:
            f = zip_({n: [v[i] for v in lp.values] for i, n in enumerate(lp.names)})
        space = f if space is None else space * f
    return space


def experiment_args(script, *, project, name=None, timeout=None, retries=None, workers=None,
                    target="local", write=True):
    """(keyword arguments of pushbutton.Experiment, Script, runner path) for SCRIPT.py; writes
    the runner (unless write=False: a dry run). The caller builds the Experiment: the spec
    stage does not import the API."""
    s = parse(script)
    name = name or default_name(script)
    # the name becomes the runner's file name: checked before anything is written
    pathnames.check(name, "experiment name", key="--name")
    runner = write_runner(s, Path(project), name, write=write)

    def esc(a):
        return str(a).replace("{", "{{").replace("}", "}}")
    args = dict(name=name, command=[esc(sys.executable), esc(runner)], space=space_of(s),
                description=f"pb parrun {s.path.name}: {' x '.join(s.names)}",
                timeout=timeout, retries=retries, workers=workers, root=s.path.parent,
                project=project, target=target or "local")
    return args, s, runner


def describe(s: Script) -> str:
    parts = []
    for lp in s.loops:
        n = len(lp.values)
        parts.append(f"{', '.join(lp.names)} ({n} value{'s' if n != 1 else ''}, line {lp.line}:"
                     f" {lp.source})")
    return " x ".join(parts)


__all__ = ["parse", "runner_source", "space_of", "write_runner", "experiment_args", "Script",
           "Loop", "describe", "default_name"]
