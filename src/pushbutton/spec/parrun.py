"""`pb parrun SCRIPT.py`: sweep an unchanged Python script whose last loop nest names the grid.

ClusterJob's `cj parrun` idea: in

    import numpy as np                       # preamble: runs in every task
    LRS = np.logspace(-3, -1, 3)
    for lr in LRS:                           # the grid: lr x seed, in loop order
        for seed in range(5):
            result = {"loss": train(lr, seed)}   # the body: runs once per grid point

the loops are the parameter space and the innermost body is the task. This module reads a
Python script into a language-neutral `LoopNest` (spec/loopnest.py, which also states the
runner contract); parrun_runner.py writes the Python runner. The script is never modified.

* The nest: the script's last statement is a `for` (possibly inside `with ...:` blocks and
  `if __name__ == "__main__":`); each loop whose body ends with a `for` continues the grid with
  it, and the statements before that inner loop run in every task, before the inner body. A loop
  followed by other statements in its parent's body is not part of the grid: it runs inside
  the task.
* The values: read statically where the iterables are literal enough (parrun_static.py: no
  code runs), else evaluated by running the script's top and its loop headers in a subprocess
  (parrun_probe.py). A loop whose iterable uses the outer loops' variables (or what the
  statements before it set) is dependent: the space is the concatenation of each outer point
  with its own inner values.
* Refused (a SpecError naming the script, the line and the fix): no loop at the end of the
  script, a statement after the loop nest, `else:` on a grid loop, a loop variable that is not
  a name (or a tuple of names), a variable two loops share, a loop over a set, a grid without
  points, a top that raises / exits / runs past the timeout / never reaches the loops.
"""
from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError
from pushbutton.spec import parrun_static as ST
from pushbutton.spec.loopnest import Axis, LoopNest, default_name, empty_inner, space_of
from pushbutton.spec.loopnest import describe as _describe, how_line as _how_line

FIX = "write the sweep as for-loops at the end of the script; or write an experiment.toml"
GRID_TIMEOUT = 60.0


def _err(path, line, msg, fix=FIX):
    return SpecError(msg, file=f"{path}:{line}" if line else str(path), fix=fix)


def _read(path: Path):
    """(source text, syntax tree) of SCRIPT.py."""
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
    return src, tree


def _is_main_guard(st) -> bool:
    t = st.test if isinstance(st, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and
            t.left.id == "__name__" and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq) and
            isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == "__main__"
            and not st.orelse)


def _locate(tree, path):
    """(statements that run before the nest, in order; the outermost grid `for`)."""
    stmts, pre = tree.body, []
    while stmts:
        last = stmts[-1]
        if isinstance(last, ast.For):
            return pre + stmts[:-1], last
        if isinstance(last, ast.With) or _is_main_guard(last):
            pre += stmts[:-1]
            if isinstance(last, ast.With) and any(i.optional_vars for i in last.items):
                # its `as` names are bound before the loops
                pre.append(ast.Assign(targets=[i.optional_vars for i in last.items
                                               if i.optional_vars is not None],
                                      value=ast.Constant(None), lineno=last.lineno))
            stmts = last.body
            continue
        break
    loops = [st for st in stmts if isinstance(st, ast.For)]
    if loops:
        after = stmts[stmts.index(loops[-1]) + 1]
        raise _err(path, after.lineno, "a statement after the loop nest: it would run once "
                   "per grid point (or never) instead of once after the sweep",
                   "move it to a separate script that reads `pb results`; leave the loops last")
    last = stmts[-1] if stmts else None
    if isinstance(last, (ast.If, ast.Try, ast.While, ast.AsyncWith)) and \
            any(isinstance(n, ast.For) for n in ast.walk(last)):
        kind = {ast.If: "an `if` block", ast.Try: "a `try` block", ast.While: "a `while` loop",
                ast.AsyncWith: "an `async with` block"}[type(last)]
        raise _err(path, last.lineno, f"the loops are inside {kind}: pb parrun sweeps the loops "
                   "the script ends with, at the top level or inside `with` or "
                   "`if __name__ == \"__main__\":`", "move the loop nest out of the block, to "
                   "the end of the script; or write an experiment.toml")
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and any(isinstance(x, ast.For) for x in ast.walk(n))), None)
    if fn is not None:
        raise _err(path, fn.lineno, f"the loops are inside the function `{fn.name}`: pb parrun "
                   "sweeps the loops the script itself runs at its end",
                   "move the loop nest out of the function, to the end of the script (inside "
                   "`if __name__ == \"__main__\":` is fine); or write an experiment.toml")
    raise _err(path, None, "no `for` loop at the end of the script: nothing names the grid",
               "end the script with its sweep, e.g. `for x in [...]:` (at the top level, or "
               "inside `with` or `if __name__ == \"__main__\":`); or write an experiment.toml")


def _target(t, src, path, line):
    """(the target's structure: a name, or a list of structures; its names, flat)."""
    if isinstance(t, ast.Name):
        return t.id, [t.id]
    if isinstance(t, (ast.Tuple, ast.List)) and t.elts:
        struct, names = [], []
        for e in t.elts:
            if isinstance(e, ast.Starred):
                break
            s, n = _target(e, src, path, line)
            struct.append(s)
            names += n
        else:
            return struct, names
    raise _err(path, line, f"the loop variable `{ast.get_source_segment(src, t)}` is not a "
               "simple name (or a tuple of names)", "write `for x in ...:` or "
               "`for i, x in enumerate(...):`")


def _nest(outer, src, path):
    """[(For node, statements before it in the enclosing loop's body)], the innermost last."""
    loops, node, prefix, seen = [], outer, [], {}
    while True:
        if node.orelse:
            raise _err(path, node.orelse[0].lineno, "a grid loop has an `else:` clause, which "
                       "has no meaning once each point runs as its own task",
                       "remove the else: block")
        struct, names = _target(node.target, src, path, node.lineno)
        for n in names:
            if n in seen:
                raise _err(path, node.lineno, f"loop variable `{n}` is already the variable "
                           f"of the loop on line {seen[n]}", "give each loop its own variable")
            seen[n] = node.lineno
        loops.append((node, prefix, struct, names))
        last = node.body[-1]
        if isinstance(last, ast.For):
            node, prefix = last, node.body[:-1]
            continue
        return loops


def _names_in(nodes) -> set:
    return {n.id for x in nodes for n in ast.walk(x) if isinstance(n, ast.Name)}


def _dependent(loops) -> list:
    """Per loop: whether its iterable uses a name the outer loops bind or their statements
    before it use (then its values may differ from one outer point to the next)."""
    out, outer = [], set()
    for node, prefix, struct, names in loops:
        outer |= _names_in(prefix)
        out.append(bool(_names_in([node.iter]) & outer))
        outer |= set(names)
    return out


def _static(loops, dep, pre, path):
    """Each loop's elements read without running anything: [list/range] or, for a dependent
    loop, [{outer path: list}]; ST.NotStatic when a value needs the script to run."""
    consts, calls = ST.constants(pre)
    changed, n_paths = set(), [0]
    out = [({} if d else None) for d in dep]

    def walk(k, env, path_):
        node, prefix = loops[k][0], loops[k][1]
        changed.update(ST._bound_in(prefix))
        if ST.star_import(prefix):
            raise ST.NotStatic
        visible = {n: v for n, v in env.items() if n not in changed}
        try:
            vals = ST.iterate(node.iter, visible, calls)
        except ST.SetLoop:
            raise ST.SetLoop(k) from None
        if dep[k]:
            out[k][path_] = vals
            n_paths[0] += 1
            if n_paths[0] > ST.LIMIT:
                raise ST.NotStatic
        elif out[k] is None:
            out[k] = vals
        if k + 1 < len(loops) and any(dep[k + 1:]):
            for i, v in enumerate(vals):
                leaves = _unpack(loops[k][2], v)
                if leaves is None:
                    raise ST.NotStatic   # the probe names the mismatch
                walk(k + 1, dict(env, **dict(zip(loops[k][3], leaves))), path_ + (i,))
        elif k + 1 < len(loops):
            walk(k + 1, env, path_)
    walk(0, consts, ())
    return out


def _unpack(struct, v):
    if isinstance(struct, str):
        return [v]
    if not isinstance(v, (list, tuple)) or len(v) != len(struct):
        return None
    out = []
    for s, x in zip(struct, v):
        got = _unpack(s, x)
        if got is None:
            return None
        out += got
    return out


def _columns(vals, struct, names, line, path):
    """One sequence per name from a loop's elements (a range stays lazy)."""
    if isinstance(vals, range):
        return (vals,)
    cols = [[] for _ in names]
    for v in vals:
        leaves = _unpack(struct, v)
        if leaves is None:
            raise _err(path, line, f"the loop unpacks {len(names)} names but an element is "
                       f"{v!r}", f"give elements of {len(names)} values")
        for c, x in zip(cols, leaves):
            c.append(x)
    return tuple(cols)


def _probe_columns(rec):
    if "range" in rec:
        return (range(*rec["range"]),)
    return tuple(rec["columns"])


def _segment(lines, node) -> str:
    """The source text of `node` (ast.get_source_segment without splitting the whole text
    again for each node); column offsets count UTF-8 bytes."""
    first, last = node.lineno - 1, node.end_lineno - 1
    chunk = [ln.encode("utf-8") for ln in lines[first:last + 1]]
    if len(chunk) == 1:
        return chunk[0][node.col_offset:node.end_col_offset].decode("utf-8", "replace")
    chunk[0], chunk[-1] = chunk[0][node.col_offset:], chunk[-1][:node.end_col_offset]
    return b"".join(chunk).decode("utf-8", "replace")


def _axes(loops, dep, pre, path, src, timeout):
    """(Axis list, "static" | "evaluated", seconds)."""
    t0 = time.perf_counter()
    lines = src.splitlines(keepends=True)
    info = [{"line": n.lineno, "col": n.col_offset, "target": s, "names": names,
             "source": _segment(lines, n.iter) or "?", "dependent": d}
            for (n, _, s, names), d in zip(loops, dep)]
    try:
        got = _static(loops, dep, pre, path)
    except ST.SetLoop as e:
        bad = info[e.args[0] if e.args else 0]
        raise _err(path, bad["line"], f"the loop iterates over a set (`{bad['source']}`): "
                   "its order is not fixed", "iterate over a list, or sorted(...)") from None
    except ST.NotStatic:
        got = None
    if got is not None:
        axes = []
        for lp, vals in zip(info, got):
            kw = {}
            if lp["dependent"]:
                kw["by_path"] = {p: _columns(v, lp["target"], lp["names"], lp["line"], path)
                                 for p, v in vals.items()}
            else:
                kw["columns"] = _columns(vals, lp["target"], lp["names"], lp["line"], path)
            axes.append(Axis(tuple(lp["names"]), lp["line"], lp["source"], **kw))
        return axes, info, "static", time.perf_counter() - t0
    from pushbutton.spec import parrun_probe
    recs, seconds = parrun_probe.evaluate(path, src, info, timeout)
    axes = []
    for lp, rec in zip(info, recs):
        kw = {"modes": tuple(rec["modes"])}
        if lp["dependent"]:
            kw["by_path"] = {tuple(int(i) for i in p.split(",")) if p else (): tuple(c)
                             for p, c in rec["by_path"].items()}
        else:
            kw["columns"] = _probe_columns(rec)
        axes.append(Axis(tuple(lp["names"]), lp["line"], lp["source"], **kw))
    return axes, info, "evaluated", seconds


def _escapes(body) -> list:
    """break/continue statements that belong to the loop itself."""
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


def _appended_files(node) -> set:
    """File names the loop nest opens to append to (`open("results.csv", "a")`)."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open" \
                and n.args and isinstance(n.args[0], ast.Constant) and \
                isinstance(n.args[0].value, str):
            mode = n.args[1] if len(n.args) > 1 else next(
                (k.value for k in n.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and \
                    ("a" in mode.value or "+" in mode.value):
                out.add(n.args[0].value)
    return out


def _warnings(path, loops, axes, folder=None) -> list:
    out = []
    for name in sorted(_appended_files(loops[0][0])) if folder else []:
        if (folder / name).is_file():
            out.append(f"{path}: {name} already exists next to the script: each task starts "
                       "with a copy of it in its own folder and adds to it; move it away "
                       "unless its rows belong in every task's file")
    inner = loops[-1][0]
    for node, prefix, _, _ in loops:
        own = _escapes(prefix) + (_escapes(inner.body) if node is inner else [])
        brk = next((e for e in own if isinstance(e, ast.Break)), None)
        if brk is not None:
            out.append(f"{path}:{brk.lineno}: `break` ends only the current grid point's task, "
                       "not the sweep: every point still runs")
    for st in inner.body:   # a loop inside the task that makes results: only the last counts
        for n in ast.walk(st):
            if isinstance(n, (ast.For, ast.While)) and any(
                    isinstance(x, ast.Name) and x.id in ("result", "metrics") and
                    isinstance(x.ctx, ast.Store) or isinstance(x, ast.Call) and
                    isinstance(x.func, ast.Name) and x.func.id == "print"
                    for b in n.body for x in ast.walk(b)):
                out.append(f"{path}:{n.lineno}: this loop runs inside each task (statements "
                           "follow it, or it is not the last statement of its loop), and it "
                           "prints or sets `result` on each pass: only the last one counts; to "
                           "make it part of the grid, make it the last statement of the loop "
                           f"on line {inner.lineno}")
                break
    for ax in axes:
        lists = ax.by_path.values() if ax.dependent else [ax.columns]
        for cols in lists:
            if isinstance(cols[0], range):
                continue
            try:   # type and value: 1, 1.0 and True are different parameters
                rows = list(zip(*(list(zip(map(type, c), c)) for c in cols)))
                n = len(set(rows))
            except TypeError:   # lists, dicts
                rows = [json.dumps(r, sort_keys=True, default=str) for r in zip(*cols)]
                n = len(set(rows))
            if n < len(rows):
                out.append(f"{path}:{ax.line}: the loop over `{ax.source}` gives some values "
                           "more than once: equal points are one task")
                break
    return out


def read(path, timeout: float = GRID_TIMEOUT) -> LoopNest:
    """Read SCRIPT.py into its LoopNest (SpecError when it cannot be swept)."""
    path = Path(path).resolve()
    src, tree = _read(path)
    pre, outer = _locate(tree, path)
    loops = _nest(outer, src, path)
    dep = _dependent(loops)
    axes, info, how, seconds = _axes(loops, dep, pre, path, src, timeout)
    inner = loops[-1][0]
    nest = LoopNest(path=path, language="python", text=src, axes=axes,
                    preamble=(1, outer.lineno - 1),
                    body=(inner.body[0].lineno, inner.body[-1].end_lineno),
                    prefixes=[None] + [(p[0].lineno, p[-1].end_lineno) if p else None
                                       for _, p, _, _ in loops[1:]],
                    how=how, seconds=seconds, extra={"loops": info})
    nest.warnings = _warnings(path.name, loops, axes, path.parent) + empty_inner(nest)
    return nest


parse = read


# --- languages: the reader, the runner and its command, by the script's suffix --------------
def _python_language():
    from pushbutton.spec import parrun_runner as R
    return {"read": read, "write_runner": R.write_runner,
            "argv": lambda runner: [sys.executable, str(runner)]}


LANGUAGES = {".py": _python_language}


def describe(s) -> str:
    """The grid in one line: a LoopNest (Python) or an R / MATLAB-language Script."""
    return s.describe() if hasattr(s, "describe") else _describe(s)


def how_line(s) -> str:
    if hasattr(s, "describe"):   # an R / MATLAB-language script says how inside describe()
        return ""
    return _how_line(s)


def language_of(path):
    suffix = Path(path).suffix
    lang = LANGUAGES.get(suffix) or LANGUAGES.get(suffix.lower())
    if lang is None:
        from pushbutton.spec.parrun_lang import SUFFIXES
        known = sorted(set(LANGUAGES) | {s if s != ".r" else ".R" for s in SUFFIXES})
        raise SpecError(f"{path}: pb parrun takes a script it can read: "
                        f"{', '.join(known)}", fix="for an experiment.toml use "
                        "`pb run`")
    return lang()


def experiment_args(script, *, project, name=None, timeout=None, retries=None, workers=None,
                    target="local", write=True, grid_timeout=GRID_TIMEOUT):
    """(keyword arguments of pushbutton.Experiment, LoopNest, runner path) for SCRIPT; writes
    the runner (unless write=False: a dry run). The caller builds the Experiment: the spec
    stage does not import the API. An R or MATLAB-language script: parrun_lang.py (its own
    reader and runner, which makes the task's folder itself)."""
    from pushbutton.spec import parrun_lang
    if parrun_lang.is_lang(script):
        return parrun_lang.experiment_args(
            script, project=project, name=name, timeout=timeout, retries=retries,
            workers=workers, target=target, write=write, default_name=default_name)
    lang = language_of(script)
    nest = lang["read"](script, timeout=grid_timeout)
    name = name or default_name(script)
    # the name becomes the runner's file name: checked before anything is written
    pathnames.check(name, "experiment name", key="--name")
    runner = lang["write_runner"](nest, Path(project), name, write=write)

    def esc(a):
        return str(a).replace("{", "{{").replace("}", "}}")
    args = dict(name=name, command=[esc(a) for a in lang["argv"](runner)],
                space=space_of(nest), task_folder=True,
                description=f"pb parrun {nest.path.name}: {' x '.join(nest.names)}",
                timeout=timeout, retries=retries, workers=workers, root=nest.path.parent,
                project=project, target=target or "local")
    return args, nest, runner


__all__ = ["read", "parse", "space_of", "experiment_args", "describe", "how_line",
           "default_name", "LANGUAGES", "language_of", "LoopNest", "Axis"]
