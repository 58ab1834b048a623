"""`pb parrun script.R` and `pb parrun script.m`: R and MATLAB-language scripts swept by their
leading `for` loops, with the rules of the Python form (parrun.py).

    x <- c(0.1, 0.5, 0.9)                    % x = [0.1 0.5 0.9];
    for (i in 1:length(x)) {                 % for i = 1:numel(x)
      for (j in seq(0, 1, by = 0.5)) {       %   for j = linspace(0, 1, 3)
        ...                                  %     ...
      }                                      %   end
    }                                        % end

The preamble is everything before the first top-level `for`; the grid is that loop and each
loop that is the only statement of the previous one's body; the innermost body runs once per
point, in the task's own folder (parrun_lang_runner.py). The loops' values are read without
running anything when every iterable is a literal form (parrun_lang_static.py); otherwise the
preamble and the loop headers run once in the language's interpreter, in a temporary folder
with a time limit (PB_PARRUN_EVAL_TIMEOUT, 60 s), with the body replaced by a line that
records each point — so `1:length(x)`, `seq(...)`, `linspace(...)`, names computed above and
inner loops that depend on outer ones (a non-rectangular grid: its points as they come) all
work, and an error or a hang there is reported with the script's line.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError
from pushbutton.spec import parrun_lex as L
from pushbutton.spec import parrun_lang_static as S
from pushbutton.spec.parrun_lang_runner import write_runner

SUFFIXES = {".r": "r", ".m": "m"}
LANG_NAMES = {"r": "R", "m": "Octave/MATLAB"}
EVAL_TIMEOUT = 60.0


@dataclass
class Loop:
    names: tuple          # one loop variable
    values: list          # the values it walks (distinct, in order)
    line: int
    source: str           # the iterable as written
    wrap: str | None = None   # "cell": an Octave cell array (each value arrives as a 1x1 cell)


@dataclass
class Script:
    path: Path
    text: str
    lang: str
    nest: L.Nest
    loops: list
    points: list | None = None     # a non-rectangular grid's points, in loop order
    seconds: float | None = None   # how long the interpreter took to find the grid
    interpreter: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def names(self) -> list:
        return [lp.names[0] for lp in self.loops]

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.text.encode("utf-8"), digest_size=6).hexdigest()

    def describe(self) -> str:
        parts = []
        for lp in self.loops:
            n = len(lp.values)
            parts.append(f"{lp.names[0]} ({n} value{'s' if n != 1 else ''}, line {lp.line}: "
                         f"{lp.source})")
        text = " x ".join(parts)
        if self.points is not None:
            text = (f"{len(self.points):,} points, not a full grid (an inner loop depends on "
                    f"an outer one): " + " / ".join(parts))
        how = ("read without running the script" if self.seconds is None else
               f"found by running the preamble and loop headers with {self.interpreter} in "
               f"{self.seconds:.2f} s")
        return f"{text}\n  ({how})"


def _err(path, line, msg, fix):
    return SpecError(msg, file=f"{path}:{line}" if line else str(path), fix=fix)


def is_lang(path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def interpreter(lang: str):
    """(argv prefix, its name) of the interpreter here, or None."""
    if lang == "r":
        exe = os.environ.get("PB_RSCRIPT") or shutil.which("Rscript")
        return ([exe], "Rscript") if exe else None
    octave = os.environ.get("PB_OCTAVE") or shutil.which("octave-cli") or shutil.which("octave")
    matlab = os.environ.get("PB_MATLAB") or shutil.which("matlab")
    if matlab and (os.environ.get("PB_PARRUN_M") == "matlab" or not octave):
        return [matlab, "-batch"], "matlab"
    return ([octave, "-q", "--no-history"], "octave-cli") if octave else None


def _missing(lang) -> str:
    return ("install R (Debian: apt-get install r-base-core), or set PB_RSCRIPT to Rscript"
            if lang == "r" else "install GNU Octave (Debian: apt-get install octave), or set "
            "PB_OCTAVE to octave-cli (MATLAB: `matlab` on PATH)")


# -- the values: literal forms, else the interpreter -------------------------------------------
def _static(nest, lang):
    """[(values, wrap)] per loop, or None when some iterable is not a literal form."""
    if lang == "r":
        consts = S.r_constants(nest.stmts)
    else:
        consts = S.m_constants(nest.stmts, nest.inner)
    out = []
    for k, h in enumerate(nest.headers):
        seen = {x.var for x in nest.headers[:k + 1]}   # outer loop variables shadow constants
        cs = {n: v for n, v in consts.items() if n not in seen}
        if lang == "r":
            vals = S.r_values(h.toks, cs)
            got = None if vals is None else (vals, None)
        else:
            got = S.m_values(h.toks, cs)
        if got is None:
            return None
        out.append(got)
    return out


_R_EVAL = r"""
.pb_out <- Sys.getenv("PB_EVAL_OUT"); .pb_errf <- Sys.getenv("PB_EVAL_ERR")
.pb_prog <- Sys.getenv("PB_EVAL_PROG")
.pb_enc <- function(v) {
  if (is.factor(v)) v <- as.character(v)
  if (is.list(v) || !is.atomic(v) || length(v) != 1)
    return(paste0("x:", class(v)[1], ":", length(v)))
  if (is.na(v) && !is.nan(v)) return("na")
  if (is.logical(v)) return(if (v) "b:1" else "b:0")
  if (is.integer(v)) return(paste0("i:", v))
  if (is.double(v)) return(paste0("n:", sprintf("%.17g", v)))
  if (is.character(v))
    return(paste0("s:", paste(as.character(charToRaw(enc2utf8(v))), collapse = "")))
  paste0("x:", class(v)[1], ":1")
}
.pb_emit <- function(...) cat(paste(vapply(list(...), .pb_enc, ""), collapse = "\t"), "\n",
                              sep = "", file = .pb_out, append = TRUE)
.pb_fail <- function(e, line) {
  lines <- line
  for (cl in sys.calls()) { sr <- attr(cl, "srcref"); if (!is.null(sr)) lines <- c(lines, sr[1]) }
  cat(lines[length(lines)], "\n", conditionMessage(e), sep = "", file = .pb_errf)
  quit(save = "no", status = 3)
}
.pb_exprs <- tryCatch(parse(file = @FILE@, keep.source = TRUE), error = function(e) {
  cat("0\n", conditionMessage(e), sep = "", file = .pb_errf); quit(save = "no", status = 3) })
setTimeLimit(elapsed = @LIMIT@)
for (.pb_k in seq_along(.pb_exprs)) {
  .pb_line <- attr(.pb_exprs, "srcref")[[.pb_k]][1]
  cat(.pb_line, "\n", sep = "", file = .pb_prog)
  withCallingHandlers(source(exprs = .pb_exprs[.pb_k], local = globalenv(), echo = FALSE),
                      error = function(e) .pb_fail(e, .pb_line))
}
"""


def _r_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _m_emit(names) -> str:
    v = ", ".join(names)
    return (f"pb__v = {{{v}}}; pb__o = ''; for pb__k = 1:numel(pb__v), pb__x = pb__v{{pb__k}}; "
            "pb__w = ''; if iscell(pb__x) && numel(pb__x) == 1, pb__x = pb__x{1}; pb__w = 'c'; "
            "end, if ischar(pb__x) && size(pb__x, 1) <= 1, pb__t = ['s:' sprintf('%02x', "
            "double(pb__x))]; elseif (isnumeric(pb__x) || islogical(pb__x)) && "
            "isscalar(pb__x) && isreal(pb__x), if islogical(pb__x), pb__t = sprintf('b:%d', "
            "pb__x); else, pb__t = sprintf('n:%.17g', double(pb__x)); end, else, pb__t = "
            "sprintf('x:%s:%s', class(pb__x), mat2str(size(pb__x))); end, pb__o = [pb__o pb__w "
            "pb__t char(9)]; end, pb__f = fopen(getenv('PB_EVAL_OUT'), 'a'); fprintf(pb__f, "
            "'%s\\n', pb__o); fclose(pb__f); ")


def _m_mark(line) -> str:
    return (f"pb__f = fopen(getenv('PB_EVAL_PROG'), 'w'); fprintf(pb__f, '%d\\n', {line}); "
            "fclose(pb__f); ")


def _eval_text(s: Script) -> str:
    """The script with the innermost body replaced by a line recording each point (line
    numbers unchanged); Octave also records which top-level statement runs (for a hang)."""
    text, (a, b) = s.text, s.nest.body
    pad = "\n" * text.count("\n", a, b)
    names = [h.var for h in s.nest.headers]
    if s.lang == "r":
        emit = " .pb_emit(" + ", ".join(f"`{n}`" for n in names) + ") "
        if not s.nest.body_block:
            emit = "{" + emit + "}"
        return text[:a] + emit + pad + text[b:]
    text = text[:a] + " " + _m_emit(names) + pad + text[b:]
    marks = [(off, line) for off, line, tok, _ in s.nest.stmts
             if not (tok.kind == "kw" and tok.text == "function")]
    marks.append((s.nest.start, s.nest.line))
    for off, line in sorted(marks, reverse=True):
        text = text[:off] + _m_mark(line) + text[off:]
    return text


def _link(src: Path, dst: Path) -> None:
    for p in sorted(src.iterdir()):
        if not p.name.startswith(".") and p.name != "__pycache__":
            try:
                (dst / p.name).symlink_to(p)
            except OSError:
                pass


def _decode(field_, lang):
    wrap = None
    if field_.startswith("c") and not field_.startswith("c:"):
        wrap, field_ = "cell", field_[1:]
    kind, _, rest = field_.partition(":")
    if kind == "na":
        return None, wrap
    if kind == "b":
        return rest == "1", wrap
    if kind == "i":
        return int(rest), wrap
    if kind == "n":
        v = float(rest)
        if lang == "m" and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            return int(v), wrap
        return v, wrap
    if kind == "s":
        return bytes.fromhex(rest).decode("utf-8", "replace"), wrap
    return ("x", rest), wrap


def _evaluate(s: Script, timeout: float):
    """Run the preamble and the loop headers; [(point values)] and wrap per loop."""
    found = interpreter(s.lang)
    if found is None:
        line = next((h.line for h in s.nest.headers), None)
        raise _err(s.path, line, f"the loop values are not literal, so {LANG_NAMES[s.lang]} "
                   "must run the script's top to find them, and it is not installed here",
                   _missing(s.lang))
    argv, name = found
    tmp = Path(tempfile.mkdtemp(prefix="pb-parrun-grid-"))
    try:
        _link(s.path.parent, tmp)
        target = tmp / s.path.name
        if target.is_symlink():
            target.unlink()
        target.write_text(_eval_text(s), encoding="utf-8")
        out, err, prog = tmp / ".pb_points", tmp / ".pb_error", tmp / ".pb_at"
        env = dict(os.environ, PB_EVAL_OUT=str(out), PB_EVAL_ERR=str(err),
                   PB_EVAL_PROG=str(prog))
        if s.lang == "r":
            drv = tmp / ".pb_grid.R"
            drv.write_text(_R_EVAL.replace("@FILE@", _r_str(str(target)))
                           .replace("@LIMIT@", repr(float(timeout))), encoding="utf-8")
            cmd = argv + [str(drv)]
        elif name == "matlab":
            cmd = argv + [target.stem]
        else:
            cmd = argv + [str(target)]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            se = p.communicate(timeout=timeout + (10 if s.lang == "r" else 0))[1]
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            se = b"reached elapsed time limit"
        seconds = time.monotonic() - t0
        se_text = se.decode("utf-8", "replace")
        if p.returncode != 0 or (err.exists() and err.stat().st_size):
            _failed(s, name, timeout, p.returncode, err, prog, se_text, target)
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    points, wraps = [], None
    for ln in lines:
        fields = ln.rstrip("\n").split("\t")
        if s.lang == "m" and fields and fields[-1] == "":
            fields.pop()
        dec = [_decode(f, s.lang) for f in fields]
        if len(dec) != len(s.nest.headers):
            raise _err(s.path, s.nest.line, f"{name} reported a point with {len(dec)} values "
                       f"for {len(s.nest.headers)} loops", "report this as a bug")
        w = [d[1] for d in dec]
        if wraps is None:
            wraps = w
        for k, (v, wk) in enumerate(dec):
            h = s.nest.headers[k]
            if isinstance(v, tuple):
                raise _err(s.path, h.line, f"the loop over `{h.expr}` gives `{h.var}` a value "
                           f"that is not one number, string or logical ({v[1]}): a grid value "
                           "must be one", "loop over an index, e.g. "
                           + ("`for (k in seq_along(x))`" if s.lang == "r" else
                              "`for k = 1:numel(x)` (a loop over a matrix walks its columns)"))
            if isinstance(v, float) and not math.isfinite(v):
                raise _err(s.path, h.line, f"the loop over `{h.expr}` gives `{h.var}` the value "
                           f"{v}: NaN and Inf cannot be parameter values", "use finite numbers")
            if wk != wraps[k]:
                raise _err(s.path, h.line, f"the loop over `{h.expr}` mixes cell and plain "
                           "values", "loop over one kind of array")
        points.append(tuple(d[0] for d in dec))
    return points, wraps or [None] * len(s.nest.headers), seconds, name


def _failed(s, name, timeout, rc, err, prog, stderr, target):
    at = None
    try:
        at = int(prog.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    msg = ""
    if err.exists() and err.stat().st_size:
        first, _, msg = err.read_text(encoding="utf-8", errors="replace").partition("\n")
        try:
            at = int(first) or at
        except ValueError:
            pass
        msg = msg.replace(str(target), str(s.path)).strip()
    elif s.lang == "m":
        errs = [ln[len("error: "):] for ln in stderr.splitlines() if ln.startswith("error: ")
                and "ignoring const execution_exception" not in ln
                and not ln.startswith("error: called from")]
        msg = errs[0] if errs else ""
        hits = re.findall(rf"^\s*{re.escape(target.stem)} at line (\d+)", stderr, re.M)
        hits += re.findall(r"parse error near line (\d+) of file", stderr)
        if hits:
            at = int(hits[-1])
        # the line is the script's; a column is not (the lines carry progress marks)
        msg = re.sub(r"near line (\d+), column \d+", r"near line \1",
                     msg.replace(str(target), str(s.path)))
    if "reached elapsed time limit" in (msg + stderr):
        raise _err(s.path, at, f"running the script's top with {name} to find the grid did not "
                   f"finish within {timeout:g} s" + (" (it was at this line)" if at else ""),
                   "make the preamble finish quickly (an endless loop? waiting for input?), or "
                   "allow more time with PB_PARRUN_EVAL_TIMEOUT=SECONDS")
    if not msg:
        msg = (stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
    raise _err(s.path, at, f"the script's top (preamble and loop headers) failed when run with "
               f"{name} to find the grid: {msg}",
               "fix that line so that the script runs as it is (the top runs in a temporary "
               "folder that shows the script's files); or give the loops literal values")


def _grid(s: Script, per_loop) -> None:
    for h, (vals, wrap) in zip(s.nest.headers, per_loop):
        if not vals:
            raise _err(s.path, h.line, f"the loop over `{h.expr}` has no values",
                       "give at least one value")
        _distinct(s, h, vals)
        s.loops.append(Loop((h.var,), list(vals), h.line, h.expr, wrap))


def _key(v):
    return (type(v).__name__, v)


def _distinct(s, h, vals):
    seen = set()
    for v in vals:
        if _key(v) in seen:
            raise _err(s.path, h.line, f"the loop over `{h.expr}` walks the value {v!r} twice: "
                       "each point of the grid is one task", "give distinct values")
        seen.add(_key(v))


def _from_points(s: Script, points, wraps) -> None:
    if not points:
        raise _err(s.path, s.nest.line, "the loops give no grid points (an iterable is empty)",
                   "give every loop at least one value")
    axes = []
    for k in range(len(s.nest.headers)):
        order, seen = [], set()
        for p in points:
            if _key(p[k]) not in seen:
                seen.add(_key(p[k]))
                order.append(p[k])
        axes.append(order)
    import itertools
    full = math.prod(len(a) for a in axes) == len(points) and all(
        tuple(map(_key, p)) == tuple(map(_key, q))
        for p, q in zip(points, itertools.product(*axes)))
    for h, vals, w in zip(s.nest.headers, axes, wraps):
        s.loops.append(Loop((h.var,), vals, h.line, h.expr, w))
    if not full:
        seen = set()
        for p in points:
            kp = tuple(map(_key, p))
            if kp in seen:
                raise _err(s.path, s.nest.line, f"the loops give the point "
                           f"{dict(zip(s.names, p))} twice: each point is one task",
                           "give distinct values")
            seen.add(kp)
        s.points = points


def _warn_shared_files(s: Script) -> None:
    """A file the body names that exists in the script's folder is linked into every task
    folder: writing it writes the original."""
    for t in s.nest.body_toks:
        if t.kind == "str" and len(t.text) > 2:
            name = t.text[1:-1]
            if re.fullmatch(r"[\w.\-]+", name) and (s.path.parent / name).is_file() and \
                    name != s.path.name:
                s.warnings.append(
                    f"{s.path}:{t.line}: `{name}` exists in the script's folder and the loop "
                    "body names it: every task folder links to that file, so a task that "
                    f"writes it writes the original; move {name} away before the run")


def parse(path, timeout: float | None = None) -> Script:
    path = Path(path)
    lang = SUFFIXES.get(path.suffix.lower())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read it: {e}") from None
    nest = (L.r_nest if lang == "r" else L.m_nest)(text, path)
    s = Script(path=path.resolve(), text=text, lang=lang, nest=nest, loops=[])
    seen = {}
    for h in nest.headers:
        if h.var in seen:
            raise _err(path, h.line, f"loop variable `{h.var}` is already the variable of the "
                       f"loop on line {seen[h.var]}", "give each loop its own variable")
        seen[h.var] = h.line
    per_loop = _static(nest, lang)
    if per_loop is not None:
        _grid(s, per_loop)
    else:
        if timeout is None:
            timeout = float(os.environ.get("PB_PARRUN_EVAL_TIMEOUT") or EVAL_TIMEOUT)
        points, wraps, s.seconds, s.interpreter = _evaluate(s, timeout)
        _from_points(s, points, wraps)
    _warn_shared_files(s)
    return s


def space_of(s: Script):
    from pushbutton.spec.space import grid, zip as zip_
    if s.points is not None:
        return zip_({n: [p[k] for p in s.points] for k, n in enumerate(s.names)})
    space = None
    for lp in s.loops:
        f = grid({lp.names[0]: lp.values})
        space = f if space is None else space * f
    return space


def experiment_args(script, *, project, name=None, timeout=None, retries=None, workers=None,
                    target="local", write=True, default_name=None):
    """As parrun.experiment_args, for an R or MATLAB-language script."""
    s = parse(script)
    # parrun-<stem>.R / .m: the name of the file, so sweep.py, sweep.R and sweep.m side by
    # side are three experiments
    name = name or (default_name(script) + Path(script).suffix)[:100]
    pathnames.check(name, "experiment name", key="--name")
    if (target or "local") == "local" and interpreter(s.lang) is None:
        msg = (f"{LANG_NAMES[s.lang]} is not installed here, and the tasks run "
               f"{'Rscript' if s.lang == 'r' else 'octave-cli (or matlab)'}")
        if write:
            raise SpecError(f"{s.path}: {msg}", fix=_missing(s.lang))
        s.warnings.append(msg)
    runner = write_runner(s, Path(project), name, write=write)

    def esc(a):
        return str(a).replace("{", "{{").replace("}", "}}")
    args = dict(name=name, command=[esc(sys.executable), esc(runner)], space=space_of(s),
                description=f"pb parrun {s.path.name}: {' x '.join(s.names)}",
                timeout=timeout, retries=retries, workers=workers, root=s.path.parent,
                project=project, target=target or "local")
    return args, s, runner
