"""Named places to run: a TOML file of targets, validated with clear located errors.

Files, later ones overriding earlier ones by name: the built-ins (`local`, `local-slurm`), the
user's `~/.config/pushbutton/targets.toml` (or `$XDG_CONFIG_HOME/pushbutton/targets.toml`), the
project's `pushbutton-targets.toml`, and the file named by `$PUSHBUTTON_TARGETS` if set.

    [targets.hpc]
    host = "login.hpc.example.edu"      # or an alias from ~/.ssh/config
    scheduler = "slurm"
    workdir = "~/pushbutton"            # remote work folder (code snapshot, bundles)
    python = "python3"
    setup = ["module load python/3.11", "source ~/venv/bin/activate"]
    sbatch = "--partition=short --account=abc"   # default sbatch options (string or list)
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pushbutton.core import pathnames
from pushbutton.core.files import atomic_write, config_dir
from pushbutton.core.errors import SpecError

PROJECT_FILE = "pushbutton-targets.toml"
MIN_PYTHON = (3, 8)


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    scheduler: Literal["local", "slurm", "dask"] = "slurm"
    host: Optional[str] = None            # None: this machine (no SSH)
    ssh_config: Optional[str] = None      # an ssh config file (-F)
    ssh_options: list[str] = []           # extra ssh arguments, e.g. ["-p", "2222"]
    connect_timeout: int = 10
    workdir: Optional[str] = None         # remote work folder; default ~/.pushbutton-remote
    python: str = "python3"
    setup: list[str] = []                 # shell lines run before python / sbatch on the target
    sbatch: list[str] = []                # default sbatch options
    env: dict[str, str] = {}
    max_array_size: Optional[int] = None  # override the site limits read from scontrol
    max_jobs: Optional[int] = None        # at most this many array elements queued at once
    poll_interval: float = 2.0            # seconds between squeue polls (with backoff)
    auto_harvest: Optional[bool] = None   # a background `pb harvest --wait` after submitting
                                          # (default: on for this host, off over SSH)
    plan: Literal["balanced", "contiguous"] = "balanced"  # SLURM: how tasks are dealt to
                                          # bundles (execution/slurm/balance.py)
    workers: Optional[int] = None         # local scheduler only
    address: Optional[str] = None         # dask scheduler only
    description: str = ""
    file: Optional[str] = None            # where it was defined (set by the loader)

    @field_validator("sbatch", "ssh_options", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            try:
                return shlex.split(v)
            except ValueError as e:
                raise ValueError(f"cannot split {v!r} into options: {e}") from None
        return v

    @field_validator("setup", mode="before")
    @classmethod
    def _lines(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("python")
    @classmethod
    def _py(cls, v):
        if not v.strip():
            raise ValueError("give the python command on the target, e.g. 'python3'")
        return v

    @field_validator("poll_interval")
    @classmethod
    def _pos(cls, v):
        if v <= 0:
            raise ValueError("must be > 0 seconds")
        return v

    @property
    def remote(self) -> bool:
        return bool(self.host)

    @property
    def remote_workdir(self) -> str:
        return self.workdir or "~/.pushbutton-remote"

    def python_argv(self) -> list[str]:
        return shlex.split(self.python)

    def to_toml(self) -> str:
        """This target as a [targets.NAME] table (only the keys that differ from defaults)."""
        out = [f"[targets.{_toml_key(self.name)}]"]
        defaults = Target()
        for k, v in self.model_dump().items():
            if k in ("name", "file") or v == getattr(defaults, k):
                continue
            out.append(f"{k} = {_toml_value(v)}")
        return "\n".join(out) + "\n"


BUILTIN = {
    "local": Target(name="local", scheduler="local", description="worker processes on this "
                    "machine"),
    "local-slurm": Target(name="local-slurm", scheduler="slurm", python=sys.executable,
                          description="sbatch on this host (no SSH)"),
}


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def user_file() -> Path:
    return config_dir() / "targets.toml"


def project_file(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.getcwd()) / PROJECT_FILE


def files(root: str | os.PathLike | None = None) -> list[Path]:
    """The target files in the order they are read (later ones win)."""
    out = [user_file(), project_file(root)]
    extra = os.environ.get("PUSHBUTTON_TARGETS")
    if extra:
        out += [Path(p) for p in extra.split(os.pathsep) if p]
    return out


def _read(path: Path) -> dict:
    from pushbutton.spec.model import read_toml
    return read_toml(path)


def parse(data: dict, file: str | None = None) -> dict[str, Target]:
    """A targets file's content -> {name: Target}; errors name the file, key and fix."""
    if not isinstance(data, dict):
        raise SpecError("a targets file is a TOML table", file=file)
    unknown = [k for k in data if k != "targets"]
    if unknown:
        raise SpecError(f"unknown top-level key '{unknown[0]}'", file=file, key=unknown[0],
                        fix=f"put each target in a table [targets.NAME], e.g. "
                            f"[targets.{unknown[0]}]")
    tables = data.get("targets", {})
    if not isinstance(tables, dict):
        raise SpecError("'targets' must be a table of tables", file=file, key="targets",
                        fix="write [targets.NAME] sections")
    out = {}
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise SpecError("a target is a table of keys", file=file, key=f"targets.{name}",
                            fix=f"write [targets.{name}] followed by host = ..., workdir = ...")
        out[name] = validate(name, body, file)
    return out


def validate(name: str, body: dict, file: str | None = None) -> Target:
    # before anything is written: a name that a file could not be read back with is refused
    pathnames.check(name, "target name", max_len=64, file=file, key=f"targets.{name}")
    base = BUILTIN.get(name)
    merged = dict(base.model_dump(exclude={"file"}) if base else {}, **body, name=name)
    try:
        t = Target.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        key = f"targets.{name}.{loc}" if loc else f"targets.{name}"
        msg = err["msg"].removeprefix("Value error, ")
        fix = None
        if err["type"] == "extra_forbidden":
            known = [k for k in Target.model_fields if k not in ("name", "file")]
            near = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            msg = f"unknown key '{err['loc'][-1]}'"
            fix = (f"did you mean '{near[0]}'? " if near else "") + "known keys: " + \
                ", ".join(known)
        elif err["type"] == "literal_error":
            fix = ('plan is "balanced" (the default) or "contiguous"' if loc == "plan" else
                   "scheduler is one of: slurm, local, dask")
        elif err["type"] in ("list_type", "string_type"):
            fix = "give a string or a list of strings"
        raise SpecError(msg, file=file, key=key, fix=fix) from None
    t.file = file
    return t


def load_all(root: str | os.PathLike | None = None) -> dict[str, Target]:
    targets = dict(BUILTIN)
    for path in files(root):
        if path.exists():
            targets.update(parse(_read(path), str(path)))
    return targets


def get(name: str, root: str | os.PathLike | None = None) -> Target:
    """The target called `name`; an unknown name is an error listing the known ones."""
    targets = load_all(root)
    if name in targets:
        return targets[name]
    near = difflib.get_close_matches(name, list(targets), n=1)
    raise SpecError(f"no target named '{name}'", key="target",
                    fix=(f"did you mean '{near[0]}'? " if near else "") +
                    f"known targets: {', '.join(sorted(targets))}; add one with "
                    f"`pb targets add {name} --host HOST` or in {PROJECT_FILE}")


def add(target: Target, file: str | os.PathLike | None = None, replace: bool = False) -> Path:
    """Write a target to a file (the user's by default). An existing name needs replace=True."""
    path = Path(file) if file else user_file()
    existing = parse(_read(path), str(path)) if path.exists() else {}
    if target.name in existing and not replace:
        raise SpecError(f"target '{target.name}' already exists", file=str(path),
                        key=f"targets.{target.name}", fix="pass --replace to overwrite it")
    validate(target.name, target.model_dump(exclude={"name", "file"}), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if target.name in existing:
        existing[target.name] = target
        text = "# pushbutton targets (see `pb targets --help`)\n\n" + \
            "\n".join(t.to_toml() for t in existing.values())
    else:
        text = path.read_text() if path.exists() else "# pushbutton targets (see `pb targets " \
            "--help`)\n"
        text = text.rstrip("\n") + "\n\n" + target.to_toml()
    atomic_write(path, text)
    return path


# --------------------------------------------------------------------------------------------
@dataclass
class Problem:
    what: str
    fix: str

    def __str__(self):
        return f"{self.what}\n  fix: {self.fix}"


_PROBE = r"""
echo "pb-probe-start"
PY=__PY__
if out=$($PY -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>&1); then
  echo "python=$out"
else
  echo "python-missing=$(echo "$out" | tail -1)"
fi
for c in sbatch squeue scancel scontrol; do
  if command -v $c >/dev/null 2>&1; then echo "cmd-$c=ok"; else echo "cmd-$c=missing"; fi
done
W=__WORKDIR__
if mkdir -p "$W" 2>/dev/null && t="$W/.pb-write-test-$$" && : > "$t" 2>/dev/null && rm -f "$t"
then echo "workdir=ok"; else echo "workdir=bad"; fi
if command -v rsync >/dev/null 2>&1; then echo "rsync=ok"; else echo "rsync=missing"; fi
if command -v scontrol >/dev/null 2>&1; then
  if scontrol ping >/dev/null 2>&1; then echo "slurmctld=ok"; else echo "slurmctld=down"; fi
fi
"""


def probe_script(t: Target) -> str:
    from pushbutton.execution.remote import _quote_path
    return (_PROBE.replace("__PY__", shlex.quote(t.python))
            .replace("__WORKDIR__", _quote_path(t.remote_workdir)))


def check(name_or_target: str | Target, root: str | os.PathLike | None = None,
          timeout: float = 30) -> list[Problem]:
    """Everything that stops `name` from running sweeps, each with its fix ([] when ready)."""
    from pushbutton.execution.remote import RemoteError, shell_for
    t = name_or_target if isinstance(name_or_target, Target) else get(name_or_target, root)
    problems: list[Problem] = []
    if t.scheduler == "local":
        return problems
    if t.scheduler == "dask":
        if not t.address:
            problems.append(Problem(f"target '{t.name}': no dask scheduler address",
                                    "set address = \"tcp://HOST:8786\""))
        return problems
    where = f"on {t.host}" if t.host else "on this machine"
    sh = shell_for(t)
    try:
        env = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in t.env.items())
        r = sh.run_script(env + probe_script(t), setup=t.setup, timeout=timeout, check=False,
                          retries=1)
    except RemoteError as e:
        return [Problem(f"target '{t.name}': {e.message}",
                        e.fix or f"check `ssh {t.host} true`")]
    finally:
        sh.close()
    if "pb-probe-start" not in r.stdout:
        return [Problem(f"target '{t.name}': the setup lines failed {where} (exit status "
                        f"{r.returncode}): {r.stderr.strip()[-300:]}",
                        "fix the 'setup' lines of the target (they run before every command)")]
    facts = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    return _python_problems(t, facts, where) + _site_problems(t, facts, where)


def _python_problems(t: Target, facts: dict, where: str) -> list[Problem]:
    """The target's Python, as the probe found it after the setup lines."""
    problems: list[Problem] = []
    if "python" in facts:
        try:
            ver = tuple(int(x) for x in facts["python"].split("."))
        except ValueError:
            ver = (0,)
        if ver < MIN_PYTHON:
            problems.append(Problem(
                f"target '{t.name}': {t.python} {where} is Python {facts['python']}; pushbutton "
                f"needs >= {'.'.join(map(str, MIN_PYTHON))}",
                "set python = \"python3.X\" or add a setup line such as 'module load python/3.11'"
            ))
    else:
        problems.append(Problem(
            f"target '{t.name}': no working '{t.python}' {where} after the setup lines "
            f"({facts.get('python-missing', '').strip() or 'not found'})",
            "set python = \"/path/to/python3\" in the target, or add a setup line that puts it "
            "on PATH (e.g. 'module load python' or 'source ~/venv/bin/activate')"))
    return problems


def _site_problems(t: Target, facts: dict, where: str) -> list[Problem]:
    """SLURM's commands and controller, the work folder and rsync, as the probe found them."""
    problems: list[Problem] = []
    if t.scheduler == "slurm":
        missing = [c for c in ("sbatch", "squeue", "scancel") if facts.get(f"cmd-{c}") != "ok"]
        if missing:
            problems.append(Problem(
                f"target '{t.name}': {', '.join(missing)} not found {where} (is this a SLURM "
                f"login node?)",
                "point host at the cluster's login node, or add a setup line such as "
                "'module load slurm'"))
        elif facts.get("slurmctld") == "down":
            problems.append(Problem(f"target '{t.name}': SLURM's controller does not answer "
                                    f"(`scontrol ping`) {where}",
                                    "wait for the cluster to come back, or check SLURM_CONF"))
    if facts.get("workdir") != "ok":
        problems.append(Problem(
            f"target '{t.name}': work folder {t.remote_workdir} is not writable {where}",
            "set workdir = \"PATH\" to a folder you can write (on a filesystem the compute "
            "nodes share)"))
    if t.host and facts.get("rsync") != "ok":
        problems.append(Problem(f"target '{t.name}': rsync is not installed {where}",
                                "ask the admins for rsync, or set up a conda/spack rsync via "
                                "the setup lines"))
    return problems
