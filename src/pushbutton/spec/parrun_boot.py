"""What runs next to a `pb parrun` Python script (stdlib only, like worker.py: it runs where
pushbutton may not be installed). Two uses:

* the runner: parrun_runner.py writes this file's text followed by `_PB_SPEC = {...}` and
  `_pb_task_main(_PB_SPEC)`: the task runs the script's text as pb read it, each grid loop
  iterating over the one element of its iterable (evaluated here, as the script would) that
  matches $PB_PARAMS, then reports the metrics;
* the probe (the evaluated path of reading the grid): `python parrun_boot.py --probe SPEC.json`
  runs the script's top and its loop headers and writes every loop's values to SPEC.json's
  "out" file (its bodies never run).

The script runs in a fresh `__main__` module of its own (see _pb_setup), so pickling and
`if __name__ == "__main__":` behave as under `python SCRIPT.py`; its loops call `_pb_pick` (a
task) or `_pb_probe` (the probe), the only names of ours it sees.
"""
import json as _pb_json
import math as _pb_math
import os as _pb_os
import re as _pb_re
import sys as _pb_sys

_PB_NO = object()          # "has no JSON form"
_PB_LIMIT = 1_000_000      # values one loop may take
_PB_REPR_MAX = 200
_PB_ADDRESS = _pb_re.compile(r" at 0x[0-9a-fA-F]+")


class _PbGridError(Exception):
    """A loop gives other values in the task than when pb parrun read the grid."""


_PbGridError.__name__ = _PbGridError.__qualname__ = "ParrunGridError"  # what tracebacks show


def _pb_plain(x):
    """x's JSON form (numpy scalars and arrays as numbers and lists, tuples as lists), or
    _PB_NO when it has none (objects, NaN, inf, non-string keys)."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if _pb_math.isfinite(x) else _PB_NO
    if type(x).__module__ == "numpy" and hasattr(x, "tolist"):
        return _pb_plain(x.tolist())
    if isinstance(x, (list, tuple)):
        out = [_pb_plain(v) for v in x]
        return _PB_NO if any(v is _PB_NO for v in out) else out
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        out = {k: _pb_plain(v) for k, v in x.items()}
        return _PB_NO if any(v is _PB_NO for v in out.values()) else out
    return _PB_NO


def _pb_repr(x):
    try:
        text = repr(x)
    except Exception as e:  # a broken __repr__
        text = "<%s: repr failed: %s>" % (type(x).__name__, e)
    text = _PB_ADDRESS.sub("", text)
    return text if len(text) <= _PB_REPR_MAX else text[:_PB_REPR_MAX - 1] + "\u2026"


def _pb_key(x, mode, i):
    """How a parameter names element i of a loop (its value x): see spec/loopnest.py."""
    if mode == "value":
        return _pb_plain(x)
    if mode == "repr":
        return _pb_repr(x)
    return "#%d %s" % (i, _pb_repr(x))


def _pb_unpack(target, value, line):
    """The values a loop target (a name, or a nested list of names) takes from one element."""
    if isinstance(target, str):
        return [value]
    try:
        parts = list(value)
    except TypeError:
        raise _PbGridError("the loop on line %d unpacks %d names, but an element is %s"
                           % (line, len(target), _pb_repr(value))) from None
    if len(parts) != len(target):
        raise _PbGridError("the loop on line %d unpacks %d names, but an element holds %d "
                           "values: %s" % (line, len(target), len(parts), _pb_repr(value)))
    out = []
    for t, v in zip(target, parts):
        out.extend(_pb_unpack(t, v, line))
    return out


def _pb_values(it, line, source):
    """The elements of a loop's iterable, as a list (at most _PB_LIMIT)."""
    if isinstance(it, (set, frozenset)):
        raise _PbGridError("the loop on line %d iterates over a set (`%s`): its order is not "
                           "fixed; iterate over sorted(...) instead" % (line, source))
    if isinstance(it, (list, tuple, range)):
        vals = it
    else:
        vals = []
        for v in it:
            vals.append(v)
            if len(vals) > _PB_LIMIT:
                break
    if len(vals) > _PB_LIMIT:
        raise _PbGridError("the loop on line %d (`%s`) has more than %d values" %
                           (line, source, _PB_LIMIT))
    return vals


def _pb_transform(text, filename, loops, wrap):
    """The script's syntax tree with each grid loop's iterable replaced by wrap(k, iterable)
    (the loops found by their header's line and column); line numbers stay the script's."""
    import ast
    tree = ast.parse(text, filename)
    where = {(lp["line"], lp["col"]): k for k, lp in enumerate(loops)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and (node.lineno, node.col_offset) in where:
            k = where[(node.lineno, node.col_offset)]
            node.iter = ast.copy_location(wrap(k, node.iter), node.iter)
            found.add(k)
    if len(found) != len(loops):
        raise _PbGridError("the script's text does not match the grid pb parrun read; run "
                           "pb parrun again")
    return ast.fix_missing_locations(tree)


def _pb_call(name, *args):
    import ast
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def _pb_lambda(node):
    import ast
    import copy
    return ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[],
                                         kw_defaults=[], kwarg=None, defaults=[]),
                      body=copy.deepcopy(node))


def _pb_setup(script, text, **names):
    """The namespace the script runs in: a fresh `__main__` module (so that the script's own
    names, even `range` or `len`, never reach this file's functions, and pickle finds its
    classes), with __file__, sys.argv and sys.path[0] as under `python SCRIPT.py`, and
    `names` (the _pb_ hooks its rewritten loops call). Tracebacks show the text that runs."""
    import builtins
    import linecache
    import types
    mod = types.ModuleType("__main__")
    mod.__file__ = script
    mod.__builtins__ = builtins
    mod.__dict__.update(names)
    _PB_KEEP.append(_pb_sys.modules.get("__main__"))  # this file's module stays alive
    _pb_sys.modules["__main__"] = mod
    _pb_sys.argv[:] = [script]  # as `python SCRIPT.py`, without arguments
    _pb_sys.path[0] = _pb_os.path.dirname(script)
    linecache.cache[script] = (len(text), None, text.splitlines(True), script)
    return mod.__dict__


_PB_KEEP = []


# --- the task -------------------------------------------------------------------------------
_PB_SPEC = {}   # the runner sets it (below this file's text): script, text, loops
_pb_point = {}


def _pb_pick(k, it):
    """Loop k iterates over the one element of `it` that is this task's point."""
    lp = _PB_SPEC["loops"][k]
    names, modes, line = lp["names"], lp["modes"], lp["line"]
    want = [_pb_point.get(n) for n in names]
    if (isinstance(it, range) and len(names) == 1 and modes[0] == "value"
            and type(want[0]) is int):
        if want[0] in it:
            return [want[0]]
    else:
        vals = _pb_values(it, line, lp["source"])
        fast = None
        if type(vals).__module__ == "numpy" and hasattr(vals, "tolist") and \
                len(names) == 1 and modes[0] == "value":
            fast = vals.tolist()
        for i in range(len(vals)):
            if fast is not None:
                if fast[i] == want[0]:
                    return [vals[i]]
                continue
            el = vals[i]
            leaves = _pb_unpack(lp["target"], el, line)
            if all(_pb_key(v, m, i) == w for v, m, w in zip(leaves, modes, want)):
                return [el]
    shown = ", ".join("%s = %s" % (n, _pb_json.dumps(w, ensure_ascii=False))
                      for n, w in zip(names, want))
    raise _PbGridError(
        "the loop on line %d (`%s`) gives other values in this task than when pb parrun read "
        "the grid: none of its elements has %s. Make the loop's values the same each time the "
        "script runs (e.g. seed the random generator before it), then run pb parrun again"
        % (line, lp["source"], shown))


def _pb_hook_for(runner):
    def hook(t, v, tb):
        # the traceback without this runner's frames: the script's lines only
        import traceback
        te = traceback.TracebackException(t, v, tb)

        def fix(te, seen):
            while te is not None and id(te) not in seen:
                seen.add(id(te))
                te.stack = traceback.StackSummary.from_list(
                    [fr for fr in te.stack if _pb_os.path.abspath(fr.filename) != runner])
                fix(te.__cause__, seen)
                te = te.__context__
        fix(te, set())
        _pb_sys.stderr.write("".join(te.format()))
    return hook


def _pb_task_main(spec):
    runner = _pb_os.path.abspath(_pb_sys.argv[0])
    _pb_sys.excepthook = _pb_hook_for(runner)
    script = _pb_os.path.join(_pb_os.getcwd(), spec["script"])  # its copy in the task folder
    _pb_point.update(_pb_json.loads(_pb_os.environ.get("PB_PARAMS") or "{}"))
    series = _pb_os.environ.get("PB_SERIES") or ""
    series0 = _pb_os.path.getsize(series) if series and _pb_os.path.exists(series) else 0
    ns = _pb_setup(script, spec["text"], _pb_pick=_pb_pick)
    tree = _pb_transform(spec["text"], script, spec["loops"],
                         lambda k, it: _pb_call("_pb_pick", _pb_const(k), it))
    code = compile(tree, script, "exec", dont_inherit=True)
    exec(code, ns)
    _pb_finish(ns, series0)


def _pb_const(v):
    import ast
    return ast.Constant(value=v)


def _pb_finish(ns, series_from):
    """Metrics: a module-level dict `result` (or `metrics`), else the last value of each metric
    given to pushbutton.log; none: a JSON object printed last still counts (worker.py)."""
    res = next((ns[k] for k in ("result", "metrics") if isinstance(ns.get(k), dict)), None)
    if res is None:
        res = _pb_logged(series_from)
    if res is None:
        return

    def plain(x):
        for conv in ("item", "tolist"):
            if hasattr(x, conv):
                return getattr(x, conv)()
        raise TypeError("metric value %r of type %s is not JSON-serialisable"
                        % (x, type(x).__name__))
    text = _pb_json.dumps(res, default=plain)
    path = _pb_os.environ.get("PB_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)


def _pb_logged(start):
    path, tid = _pb_os.environ.get("PB_SERIES"), _pb_os.environ.get("PB_TASK_ID")
    if not path or not _pb_os.path.exists(path):
        return None
    last = {}
    with open(path, "rb") as f:
        f.seek(start)
        for line in f:
            try:
                rec = _pb_json.loads(line)
            except ValueError:
                continue
            if rec.get("task") == tid and isinstance(rec.get("m"), dict):
                last.update(rec["m"])
    return last or None


# --- the probe ------------------------------------------------------------------------------
class _PbProbe:
    """Records each grid loop's elements while the script's top runs; descends into the outer
    loops (running the statements before an inner loop) only for a dependent inner loop."""

    def __init__(self, loops):
        self.loops = loops
        self.raw = [None] * len(loops)        # independent: list; dependent: {path: list}
        self.path = [0] * len(loops)
        self.reached = False
        for k, lp in enumerate(loops):
            if lp["dependent"]:
                self.raw[k] = {}

    def deeper_dependent(self, k):
        return any(lp["dependent"] for lp in self.loops[k + 1:])

    def __call__(self, k, fn, independents=None):
        lp = self.loops[k]
        if k == 0:
            self.reached = True
            self.raw[0] = _pb_values(fn(), lp["line"], lp["source"])
            for m, f in (independents or {}).items():
                self.raw[m] = _pb_values(f(), self.loops[m]["line"], self.loops[m]["source"])
            vals = self.raw[0]
        elif lp["dependent"]:
            vals = _pb_values(fn(), lp["line"], lp["source"])
            self.raw[k][tuple(self.path[:k])] = vals
        else:
            vals = self.raw[k]
        if not self.deeper_dependent(k):
            return iter(())
        return self._walk(k, vals)

    def _walk(self, k, vals):
        for i in range(len(vals)):
            self.path[k] = i
            yield vals[i]

    def result(self):
        """Each loop's columns (or columns per outer path) and the modes of its names."""
        out = []
        for k, lp in enumerate(self.loops):
            raw = self.raw[k]
            if isinstance(raw, range) and isinstance(lp["target"], str):
                out.append({"modes": ["value"], "range": [raw.start, raw.stop, raw.step]})
                continue
            lists = raw if lp["dependent"] else {(): raw}
            leaves = {p: [_pb_unpack(lp["target"], el, lp["line"]) for el in vals]
                      for p, vals in lists.items()}
            modes = []
            for j in range(len(lp["names"])):
                if all(_pb_plain(row[j]) is not _PB_NO for rows in leaves.values()
                       for row in rows):
                    modes.append("value")
                elif all(len({_pb_repr(row[j]) for row in rows}) == len(rows)
                         for rows in leaves.values()):
                    modes.append("repr")
                else:
                    modes.append("index")
            cols = {",".join(map(str, p)): [[_pb_key(row[j], modes[j], i)
                                             for i, row in enumerate(rows)]
                                            for j in range(len(modes))]
                    for p, rows in leaves.items()}
            if lp["dependent"]:
                out.append({"modes": modes, "by_path": cols})
            else:
                out.append({"modes": modes, "columns": cols[""]})
        return out


def _pb_where(tb_or_frames, script):
    """[(line, text)] of the script's frames, outermost first."""
    return [(fr.lineno, (fr.line or "").strip()) for fr in tb_or_frames
            if fr.filename == script]


def _pb_probe_main(spec_path):
    import faulthandler
    import time
    import traceback
    with open(spec_path, encoding="utf-8") as f:
        spec = _pb_json.load(f)
    script = _pb_os.path.join(_pb_os.getcwd(), spec["script"])
    stack = open(spec["stack"], "w")
    faulthandler.dump_traceback_later(spec["timeout"], exit=True, file=stack)
    probe = _PbProbe(spec["loops"])
    ns = _pb_setup(script, spec["text"], _pb_probe=probe)
    first = spec["loops"][0]

    def wrap(k, it):
        if k == 0:
            import ast
            ind = ast.Dict(keys=[_pb_const(m) for m, lp in enumerate(spec["loops"])
                                 if m and not lp["dependent"]],
                           values=[_pb_lambda(spec["nodes"][m]) for m, lp in
                                   enumerate(spec["loops"]) if m and not lp["dependent"]])
            return _pb_call("_pb_probe", _pb_const(0), _pb_lambda(it), ind)
        return _pb_call("_pb_probe", _pb_const(k), _pb_lambda(it))
    rec = {"ok": False}
    t0 = time.time()
    try:
        import ast
        # the iterables of the loops, parsed once so that loop 0 can evaluate them up front
        tree0 = ast.parse(spec["text"], script)
        at = {(lp["line"], lp["col"]): m for m, lp in enumerate(spec["loops"])}
        spec["nodes"] = {}
        for node in ast.walk(tree0):
            if isinstance(node, ast.For) and (node.lineno, node.col_offset) in at:
                spec["nodes"][at[(node.lineno, node.col_offset)]] = node.iter
        tree = _pb_transform(spec["text"], script, spec["loops"], wrap)
        code = compile(tree, script, "exec", dont_inherit=True)
        exec(code, ns)
        if not probe.reached:
            rec["error"] = {"type": "unreached", "line": first["line"]}
        else:
            rec = {"ok": True, "loops": probe.result()}
    except BaseException as e:  # SystemExit and KeyboardInterrupt included: all are answers
        frames = _pb_where(traceback.extract_tb(e.__traceback__), script)
        rec["error"] = {"type": type(e).__name__, "message": str(e), "frames": frames,
                        "grid": isinstance(e, _PbGridError), "reached": probe.reached}
    rec["seconds"] = time.time() - t0
    faulthandler.cancel_dump_traceback_later()
    stack.close()
    with open(spec["out"], "w", encoding="utf-8") as f:
        _pb_json.dump(rec, f)
    _pb_os._exit(0)  # no atexit handler or lingering thread of the script delays the answer


if __name__ == "__main__" and _pb_sys.argv[1:2] == ["--probe"]:
    _pb_probe_main(_pb_sys.argv[2])
