"""Experiment specs: a TOML file (or a dict) validated with pydantic into clear, located errors.

    name = "phase-transition"
    description = "Where does OMP stop recovering sparse vectors?"
    function = "task:recover"          # module:function, called with the parameters as keywords
    # command = ["python", "sim.py", "--n", "{n}"]   # or an argv list; never through a shell
    [space]   ... (see pushbutton.spec.space)
    [resources]  timeout = "10m"  retries = 1  cpus = 1  memory = "2GB"
    [run]        workers = 4  bundle_size = 0 (auto)  target = "local"
    [units]      delta = "n/N"
    [[figures]]  kind = "heatmap"  x = "delta"  y = "rho"  value = "success"
"""
from __future__ import annotations

import difflib
import os
import re
import string
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import (BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError,
                      field_validator)

from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.I)
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$", re.I)


# failure kinds a task can end with (worker, backends, harvest): what retry_on may name
FAILURE_KINDS = ("exception", "exit", "signal", "timeout", "memory", "lost", "metric",
                 "preempted")


# what is retried unless [resources] retry_on says otherwise: failures of the infrastructure
DEFAULT_RETRY_ON = ("signal", "lost", "preempted")


def _bad(message: str, fix: str) -> ValueError:
    """A validator's error with its fix (split again by _from_validation)."""
    return ValueError(f"{message}{_FIX_SEP}{fix}")


_FIX_SEP = " \x1f fix: "


def parse_memory_mb(v) -> int | None:
    """'2GB', '512M', 1024 (MB) -> MB (a whole number, at least 1)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _bad(f"cannot read {v!r} as a memory size",
                   "write e.g. memory = \"512MB\" or \"2GB\", or a number of MB")
    if isinstance(v, (int, float)):
        mb = float(v)
    else:
        m = _SIZE.match(v)
        if not m:
            raise _bad(f"cannot read {v!r} as a size", "write e.g. memory = \"512MB\" or \"2GB\"")
        n, unit = float(m.group(1)), m.group(2).lower()
        mb = n * {"": 1, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 ** 2}[unit]
    if not mb >= 1:  # also NaN; 0 or '512k' would have meant no limit at all
        raise _bad(f"memory {v!r} is less than 1 MB (it would have meant no limit)",
                   "give the limit per task, e.g. memory = \"512MB\", or leave memory out for "
                   "no limit")
    return int(round(mb))


def parse_seconds(v) -> float | None:
    """'90s', '10m', '2h', 30 (seconds) -> seconds (positive)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _bad(f"cannot read {v!r} as a duration",
                   "write e.g. timeout = \"30s\", \"10m\", \"2h\" or a number of seconds")
    if isinstance(v, (int, float)):
        sec = float(v)
    else:
        m = _DUR.match(v)
        if not m:
            raise _bad(f"cannot read {v!r} as a duration",
                       "write e.g. timeout = \"30s\", \"10m\" or \"2h\"")
        mult = {None: 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
        sec = float(m.group(1)) * mult[(m.group(2) or "").lower() or None]
    if not sec > 0 or sec == float("inf"):  # '0s' would have meant no timeout at all
        raise _bad(f"a duration must be positive and finite, got {v!r}" +
                   (" (0 would have meant no timeout)" if sec == 0 else ""), "write e.g. timeout = \"30s\" or \"10m\", or leave it out for "
                   "no timeout")
    return sec


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: Optional[Union[float, str]] = None
    # the default retries what is not the task's fault (a signal, a lost node or bundle, a
    # preemption), never a Python exception or an exit status: those fail the same way again
    retries: StrictInt = 1
    retry_on: list[StrictStr] = list(DEFAULT_RETRY_ON)
    cpus: StrictInt = 1
    memory: Optional[Union[int, str]] = None
    gpus: StrictInt = 0

    # 'before': pydantic would otherwise turn `timeout = true` into 1 s and `memory = true` into
    # 1 MB before these run
    @field_validator("timeout", mode="before")
    @classmethod
    def _t(cls, v):
        return parse_seconds(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _m(cls, v):
        return parse_memory_mb(v)

    @field_validator("retries", "gpus")
    @classmethod
    def _nonneg(cls, v):
        if v < 0:
            raise _bad(f"must be >= 0, got {v}", "give a whole number >= 0")
        return v

    @field_validator("cpus")
    @classmethod
    def _pos(cls, v):
        if v < 1:
            raise _bad(f"must be >= 1, got {v}", "give a whole number >= 1")
        return v

    @field_validator("retry_on")
    @classmethod
    def _kinds(cls, v):
        for k in v:
            if k not in FAILURE_KINDS:
                near = difflib.get_close_matches(k, FAILURE_KINDS, n=1)
                raise _bad(f"unknown failure kind {k!r}" +
                           (f"; did you mean {near[0]!r}?" if near else ""),
                           f"use some of: {', '.join(FAILURE_KINDS)}")
        return v


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workers: Optional[StrictInt] = None
    bundle_size: StrictInt = 0
    target: StrictStr = "local"
    max_tasks: StrictInt = 1_000_000   # bigger spaces need --yes
    sbatch: Optional[StrictStr] = None

    @field_validator("workers")
    @classmethod
    def _workers(cls, v):
        if v is not None and v < 1:
            raise _bad(f"must be >= 1, got {v}", "give a number of workers >= 1, or leave it "
                       "out for one per CPU")
        return v

    @field_validator("bundle_size")
    @classmethod
    def _bundle(cls, v):
        if v < 0:
            raise _bad(f"must be >= 0, got {v}", "give the tasks per bundle, or 0 (the default) "
                       "to size bundles automatically")
        return v

    @field_validator("max_tasks")
    @classmethod
    def _max(cls, v):
        if v < 1:
            raise _bad(f"must be >= 1, got {v}", "give a whole number >= 1")
        return v


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    function: Optional[str] = None
    command: Optional[list[str]] = None
    path: list[str] = []          # extra folders on sys.path for the function
    space: dict[str, Any]
    resources: Resources = Resources()
    run: RunOptions = RunOptions()
    metrics: dict[str, Any] = {}
    units: dict[str, str] = {}
    figures: list[dict[str, Any]] = []

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        why = pathnames.problem(v, 100)
        if why:  # the name becomes folder and file names in the store
            raise ValueError(f"{why}; use e.g. 'sweep-1' (at most 100 characters)")
        return v

    @field_validator("function")
    @classmethod
    def _fn(cls, v):
        if v is not None and not re.fullmatch(r"[\w./\-]+(\.py)?:[A-Za-z_][\w.]*", v):
            raise ValueError("write it as 'module:function' (e.g. 'task:run') or "
                             "'file.py:function'")
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _cmd_string(cls, v):
        if isinstance(v, str):  # a shell line: what would a shell have done with it?
            import json
            import shlex
            try:
                argv = shlex.split(v)
            except ValueError:
                argv = v.split()
            raise _bad(f"command is one string ({v!r}); a command is an argv list, one string "
                       "per argument, and nothing goes through a shell (no pipes, "
                       "redirections, globs or $VARIABLES)",
                       f"command = {json.dumps(argv, ensure_ascii=False)}; for shell "
                       "features put them in a script and run it, e.g. "
                       "[\"bash\", \"run.sh\", \"{n}\"]")
        return v

    @field_validator("command")
    @classmethod
    def _cmd(cls, v):
        if v is not None and (not v or not all(isinstance(a, str) and a for a in v)):
            raise ValueError("write the command as a list of non-empty strings, e.g. "
                             "[\"python\", \"sim.py\", \"--n\", \"{n}\"]")
        return v


_FIXES = {
    "missing": "add it",
    "extra_forbidden": None,
    "string_type": "give a string in quotes",
    "int_type": "give a whole number",
    "int_parsing": "give a whole number",
    "list_type": "give a list, e.g. [1, 2]",
    "dict_type": "give a table, e.g. {key = value}",
}


def _fields_at(model, loc) -> list[str]:
    m = model
    for part in loc[:-1]:
        f = getattr(m, "model_fields", {}).get(part)
        if f is None or not isinstance(f.annotation, type) or not issubclass(f.annotation,
                                                                             BaseModel):
            return []
        m = f.annotation
    return list(getattr(m, "model_fields", {}))


def _from_validation(e: ValidationError, file: str | None) -> SpecError:
    # an unknown key first: a typo ('spce') is also why a required key looks missing
    errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
    err = errs[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or None
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(kind)
    if _FIX_SEP in msg:
        msg, fix = msg.split(_FIX_SEP, 1)
    if kind == "extra_forbidden":
        known = _fields_at(SpecModel, err["loc"])
        near = difflib.get_close_matches(loc[-1], known, n=1)
        msg = f"unknown key '{loc[-1]}'"
        fix = (f"did you mean '{near[0]}'? " if near else "") + \
            f"known keys here: {', '.join(known)}"
    elif kind == "missing":
        msg = "this required key is missing"
        fix = {"name": "add name = \"my-sweep\"", "space": "add a [space] table, e.g. "
               "[space] grid = { n = [10, 100] }"}.get(loc[-1], "add it")
    more = len(e.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(msg, file=file, key=key, fix=fix)


def validate(data: dict, file: str | None = None) -> SpecModel:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a table of keys", file=file)
    try:
        spec = SpecModel.model_validate(data)
    except ValidationError as e:
        raise _from_validation(e, file) from None
    if (spec.function is None) == (spec.command is None):
        raise SpecError("say what to run: exactly one of 'function' or 'command'", file=file,
                        key="function" if spec.function is None else "command",
                        fix="function = \"task:run\"  or  command = [\"python\", \"sim.py\", "
                            "\"{n}\"]")
    from pushbutton.spec.figure_keys import check as check_figures
    check_figures(spec.figures, file=file)  # kind, keys and options of every [[figures]]
    return spec


def placeholders(argv: list[str], file: str | None = None) -> set[str]:
    """Parameter names used as {name} in a command; malformed braces are a located error."""
    names = set()
    for i, arg in enumerate(argv):
        try:
            for _, field, _, _ in string.Formatter().parse(arg):
                if field is not None:
                    if field == "" or field.isdigit():
                        raise ValueError("empty or positional placeholder")
                    names.add(re.split(r"[.\[]", field)[0])
        except ValueError as e:
            raise SpecError(f"argument {arg!r}: {e}", file=file, key=f"command[{i}]",
                            fix="write {name} for a parameter and {{ }} for literal braces")
    return names


def read_toml(path: str | os.PathLike) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    p = Path(path)
    if not p.exists():
        raise SpecError("file not found", file=str(path),
                        fix="give the path of an experiment .toml file (see examples/)")
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"not valid TOML: {e}", file=str(path),
                        fix="check quotes, brackets and '=' on that line") from None
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file", file=str(path)) from None
