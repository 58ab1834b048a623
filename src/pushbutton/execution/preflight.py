"""Preflight: before any task is registered, check that what the tasks would run exists.

For a Python function, a subprocess imports it as a worker would (the worker's sys.path, the
spec's folder as working directory, PB_WORKER set) and reports its signature; the parameter
names of the space are checked against it here. For a command, the program is looked up. A bad
function or program is one SpecError (file, key, fix) instead of 20,000 failed tasks.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pushbutton.core.errors import SpecError

DEFAULT_TIMEOUT = 60.0  # seconds for the import; a slower import is a warning, not an error

# Run with `python -c`: stdlib only. argv: target, root, sys_path (JSON), worker.py's folder.
_PROBE = r'''
import importlib, importlib.util, inspect, json, os, sys, traceback
target, root, extra, wdir = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
sys.path[0] = wdir  # as for `python worker.py`; then what the worker adds
for p in [root] + extra:
    if p not in sys.path:
        sys.path.insert(0, p)
os.chdir(root)
out = {}
try:
    mod_name, _, attr = target.partition(":")
    if mod_name.endswith(".py"):
        path = os.path.join(root, mod_name)
        if not os.path.isfile(path):
            raise FileNotFoundError("no file %s" % path)
        spec = importlib.util.spec_from_file_location(
            os.path.splitext(os.path.basename(path))[0], path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(mod_name)
    out["stage"] = "attr"
    fn = mod
    for part in attr.split("."):
        out["names"] = [n for n in dir(fn) if not n.startswith("_")]
        fn = getattr(fn, part)
    out["file"] = getattr(mod, "__file__", None)
    if not callable(fn):
        out.update(ok=False, error="%s is a %s, not a function" % (attr, type(fn).__name__))
    else:
        try:
            sig = inspect.signature(fn)
            out["params"] = [[p.name, p.kind.name, p.default is not p.empty]
                             for p in sig.parameters.values()]
        except (TypeError, ValueError):
            out["params"] = None
        out["ok"] = True
except BaseException as e:
    out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
    frames = [[f.filename, f.lineno, (f.line or "").strip()]
              for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<")]
    if isinstance(e, SyntaxError) and e.filename:
        frames.append([e.filename, e.lineno, (e.text or "").strip()])
    out["frames"] = frames
    out["missing_module"] = getattr(e, "name", None) if isinstance(e, ImportError) else None
sys.stdout.flush()
os.write(1, ("\n@@pb-preflight@@" + json.dumps(out) + "\n").encode())
os._exit(0)
'''


def start(exp):
    """Start the import check of a function now (its subprocess); `check(exp, started=...)`
    collects it, so what the caller does meanwhile (`pb run` imports its machinery) overlaps the
    probe's interpreter start and import. None for a command."""
    return _spawn(exp) if exp.spec.function else None


def check(exp, remote: bool = False, timeout: float | None = None, say=None,
          started=None) -> list[str]:
    """Raise SpecError if `exp` cannot run at all; returns warnings (also passed to `say`).
    `remote`: tasks run on another machine, whose environment may differ from this one's, so
    what cannot be checked here is a warning. `started`: what start(exp) returned."""
    warnings: list[str] = []
    if exp.spec.function:
        _check_function(exp, remote, timeout, warnings, started)
    else:
        _check_command(exp, remote, warnings)
    for w in warnings:
        if say:
            say(w)
    return warnings


# -- functions --------------------------------------------------------------------------------
def _spawn(exp):
    """(argv, the probe's Popen, its atexit cleanup), or the OSError that kept it from
    starting."""
    import atexit
    import functools
    from pushbutton.execution import worker
    # a check leaves no file behind (no __pycache__ in the project: `pb run --dry-run` writes
    # nothing); the run's workers write bytecode as usual
    env = dict(os.environ, PB_WORKER="1", PB_PREFLIGHT="1", PYTHONDONTWRITEBYTECODE="1")
    argv = [sys.executable, "-c", _PROBE, exp.spec.function, str(exp.root),
            json.dumps(exp.sys_path), str(Path(worker.__file__).resolve().parent)]
    try:
        p = subprocess.Popen(argv, cwd=str(exp.root), env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    except OSError as e:
        return e
    kill = functools.partial(_kill_group, p)
    atexit.register(kill)  # a probe started but never collected (an error in between)
    return argv, p, kill


def _check_function(exp, remote, timeout, warnings, started=None):
    target, file = exp.spec.function, exp.spec_file
    if timeout is None:
        timeout = float(os.environ.get("PB_PREFLIGHT_TIMEOUT") or DEFAULT_TIMEOUT)
    started = started or _spawn(exp)
    if isinstance(started, OSError):
        warnings.append(f"could not check {target} before the run: {started}")
        return
    argv, p, kill = started
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        warnings.append(f"importing {target} took more than {timeout:g}s, so it was not checked "
                        "before the run (set PB_PREFLIGHT_TIMEOUT to wait longer)")
        return
    finally:
        _kill_group(p)  # whatever the import started in the background goes too
        import atexit
        atexit.unregister(kill)
    r = subprocess.CompletedProcess(argv, p.returncode, out, err)
    text = r.stdout.decode("utf-8", "replace")
    mark = text.rfind("@@pb-preflight@@")
    if mark < 0:  # the import killed the interpreter (os._exit, a crash in native code)
        tail = r.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        _fail(exp, remote, warnings, f"importing {target} stopped the Python interpreter "
              f"(exit status {r.returncode})" + (": " + " / ".join(tail) if tail else ""),
              "run `python -c \"import MODULE\"` in the spec's folder to see why")
        return
    info = json.loads(text[mark + len("@@pb-preflight@@"):].strip().splitlines()[0])
    if not info.get("ok"):
        _import_failed(exp, info, remote, warnings)
        return
    if info.get("params") is not None:
        _check_signature(exp, info["params"])


def _kill_group(p):
    import signal
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _fail(exp, remote, warnings, msg, fix):
    if remote:  # the target's environment is not this one: say it, but let the run go on
        warnings.append(f"{msg} here (the tasks run on the target, where it may work)")
        return
    raise SpecError(msg, file=exp.spec_file, key="function", fix=fix)


def _import_failed(exp, info, remote, warnings):
    target = exp.spec.function
    mod_name, _, attr = target.partition(":")
    err = info.get("error", "")
    if info.get("stage") == "attr":
        near = difflib.get_close_matches(attr.split(".")[-1], info.get("names") or [], n=1)
        _fail(exp, remote, warnings, f"{mod_name} has no function {attr!r}" +
              (f"; did you mean {near[0]!r}?" if near else f" ({err})"),
              f"check the name after ':' in function = \"{target}\"")
        return
    missing = info.get("missing_module")
    # the deepest frame in the user's code (not the interpreter's or an installed package's)
    ours = str(Path(__file__).resolve().parents[1])  # the pushbutton package
    user = [f for f in info.get("frames") or []
            if not _inside(f[0], sys.prefix, sys.base_prefix, sys.exec_prefix, ours)]
    user_line = ""
    if user:
        f = user[-1]
        user_line = f"\n  at {f[0]}, line {f[1]}" + (f": {f[2]}" if f[2] else "")
    top = mod_name.split(".")[0].removesuffix(".py")
    if missing and missing.split(".")[0] == top and not user_line:
        looked = [str(exp.root)] + list(exp.sys_path)
        _fail(exp, remote, warnings, f"cannot import {mod_name!r}: no such module (looked in "
              f"{', '.join(looked)} and the installed packages)",
              f"check the part before ':' in function = \"{target}\"; a module in another "
              "folder needs path = [\"that/folder\"] in the spec")
        return
    if err.startswith("FileNotFoundError") and mod_name.endswith(".py"):
        _fail(exp, remote, warnings, f"cannot import {mod_name!r}: {err.split(': ', 1)[-1]}",
              f"check the file name in function = \"{target}\" (relative to {exp.root})")
        return
    _fail(exp, remote, warnings, f"importing {mod_name} failed: {err}{user_line}",
          "fix that error in your code (or install what it imports), then run again; "
          f"`python -c \"import {top}\"` in {exp.root} shows the full traceback")


def _inside(path, *dirs) -> bool:
    p = os.path.realpath(path)
    return any(d and p.startswith(os.path.realpath(d) + os.sep) for d in dirs)


def name_sets(space, limit: int = 64) -> list[frozenset]:
    """The distinct sets of parameter names the points of `space` carry (a union's parts may
    differ)."""
    from pushbutton.spec import space as S
    if isinstance(space, S._Concat):
        out: list[frozenset] = []
        for p in space.parts:
            for s in name_sets(p, limit):
                if s not in out:
                    out.append(s)
        return out[:limit]
    if isinstance(space, S._Product):
        acc = [frozenset()]
        for f in space.factors:
            acc = list(dict.fromkeys(a | b for a in acc for b in name_sets(f, limit)))[:limit]
        return acc
    if isinstance(space, S._Filter):
        return name_sets(space.inner, limit)
    return [frozenset(space.names)]


def _check_signature(exp, params):
    fn = exp.spec.function.partition(":")[2]
    file = exp.spec_file
    accepted = {n for n, kind, _ in params if kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    posonly = {n for n, kind, _ in params if kind == "POSITIONAL_ONLY"}
    varkw = any(kind == "VAR_KEYWORD" for _, kind, _ in params)
    required = [n for n, kind, has_default in params if not has_default and
                kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY", "POSITIONAL_ONLY")]
    for given in name_sets(exp.space):
        given = set(given)
        if "rep" in given and "rep" not in accepted and not varkw:
            given.discard("rep")  # bookkeeping: dropped for a function that does not take it
        for n in sorted(given):
            if n in posonly:
                raise SpecError(f"{fn}() takes {n!r} as a positional-only parameter; tasks pass "
                                "parameters by name", file=file, key="function",
                                fix=f"remove the '/' from {fn}()'s parameter list")
            if n not in accepted and not varkw:
                near = difflib.get_close_matches(n, sorted(accepted), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise SpecError(f"{fn}() takes no parameter {n!r}{hint}", file=file,
                                key="function",
                                fix=(f"rename {n!r} to {near[0]!r} in [space], or " if near
                                     else "") + f"add `{n}` (or **kwargs) to {fn}()'s "
                                     "parameters")
        for n in required:
            if n in given:
                continue
            if n in ("seed", "rep"):
                raise SpecError(f"{fn}() needs {n!r}, which only reps gives", file=file,
                                key="function",
                                fix="add `reps = N` to [space] or give it a default, e.g. "
                                    f"{n}=0")
            near = difflib.get_close_matches(n, sorted(given), n=1)
            hint = f" (the space has {near[0]!r})" if near else ""
            raise SpecError(f"{fn}() needs {n!r}, which the space does not give{hint}",
                            file=file, key="function",
                            fix=f"add {n!r} to [space], or give it a default in {fn}()")


# -- commands ---------------------------------------------------------------------------------
def _check_command(exp, remote, warnings):
    argv = list(exp.spec.command)
    prog = argv[0]
    if remote or "{" in prog or "}" in prog:
        return  # found on the target, or filled in per task
    if "/" in prog:
        p = Path(prog).expanduser()
        p = p if p.is_absolute() else exp.root / p
        if not p.is_file():
            raise SpecError(f"the program {prog!r} does not exist ({p})", file=exp.spec_file,
                            key="command[0]", fix="give a path relative to the spec's folder, "
                                                  "or a program on PATH")
        if not os.access(p, os.X_OK):
            raise SpecError(f"the program {prog!r} is not executable ({p})",
                            file=exp.spec_file, key="command[0]",
                            fix=f"chmod +x {p}, or run it through its interpreter, e.g. "
                                f"[\"python\", \"{prog}\"]")
    elif shutil.which(prog) is None:
        raise SpecError(f"the program {prog!r} is not on PATH", file=exp.spec_file,
                        key="command[0]", fix="install it, give its full path, or check the "
                                              "spelling")
    # `python script.py ...`: a missing script would fail every task the same way
    if len(argv) > 1 and Path(prog).name.startswith("python") and argv[1].endswith(".py") \
            and "{" not in argv[1]:
        s = Path(argv[1]).expanduser()
        s = s if s.is_absolute() else exp.root / s
        if not s.is_file():
            raise SpecError(f"the script {argv[1]!r} does not exist ({s})", file=exp.spec_file,
                            key="command[1]", fix="give its path relative to the spec's folder")
