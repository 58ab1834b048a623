"""sbatch options: per-task resources as flags, the options pushbutton owns, the partition
asked for, and `scontrol show config` read as a dict."""
from __future__ import annotations

import math

from pushbutton.core.errors import SpecError
from pushbutton.execution.backends.base import BundleRef


def parse_config(text: str) -> dict[str, str]:
    """`scontrol show config` -> {key: value}."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def first_int(v, default):
    try:
        return int(str(v).split()[0])
    except (ValueError, IndexError, TypeError):
        return default


def time_limit(seconds: float) -> str:
    """sbatch --time value (whole minutes, rounded up) for a duration in seconds."""
    m = max(1, math.ceil(seconds / 60))
    return f"{m // 1440}-{(m % 1440) // 60:02d}:{m % 60:02d}:00" if m >= 1440 else \
        f"{m // 60:02d}:{m % 60:02d}:00"


def resource_flags(ref: BundleRef, n_tasks: int | None = None, gpus: int = 0) -> list[str]:
    """Per-task resources of the experiment as sbatch flags for one bundle of n_tasks."""
    flags = []
    if ref.cpus and ref.cpus > 1:
        flags.append(f"--cpus-per-task={ref.cpus}")
    if ref.memory_mb:
        flags.append(f"--mem={int(ref.memory_mb)}M")
    if gpus:
        flags.append(f"--gres=gpu:{gpus}")
    if ref.timeout:
        n = n_tasks or ref.n_tasks
        flags.append(f"--time={time_limit(n * ref.timeout * 1.1 + 120)}")
    return flags


_OWNED = ("--array", "-a", "--wrap", "--parsable", "--output", "-o", "--open-mode")


def refuse_owned(opts: list[str], target: str) -> None:
    """Options pushbutton sets itself cannot be passed through: say so instead of breaking."""
    for o in opts:
        name = o.split("=", 1)[0]
        if name in _OWNED or (name[:2] in ("-a", "-o") and not name.startswith("--")):
            raise SpecError(f"sbatch option {o!r} is set by pushbutton itself (each bundle is "
                            "one array element with its own logs)", key="sbatch",
                            fix=f"leave it out of --sbatch and of target '{target}'")


def partition_of(opts: list[str]) -> str | None:
    part = None
    for i, o in enumerate(opts):
        if o.startswith("--partition="):
            part = o.split("=", 1)[1]
        elif o in ("-p", "--partition") and i + 1 < len(opts):
            part = opts[i + 1]
        elif o.startswith("-p") and len(o) > 2:
            part = o[2:]
    return part.split(",")[0] if part else None
