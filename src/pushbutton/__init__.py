"""pushbutton: push-button computational experiments.

Heavy modules (pandas, pyarrow, duckdb, matplotlib) load only when used, so the CLI starts fast.
"""
from __future__ import annotations

from pushbutton.core.tasklog import current_task, log

from pushbutton.core import __version__  # noqa: F401

_LAZY = {
    "Experiment": "pushbutton.experiment",
    "load": "pushbutton.experiment",
    "grid": "pushbutton.spec.space",
    "zip": "pushbutton.spec.space",
    "reps": "pushbutton.spec.space",
    "sample": "pushbutton.spec.space",
    "where": "pushbutton.spec.space",
    "Space": "pushbutton.spec.space",
    "uniform": "pushbutton.spec.space",
    "loguniform": "pushbutton.spec.space",
    "randint": "pushbutton.spec.space",
    "normal": "pushbutton.spec.space",
    "choice": "pushbutton.spec.space",
    "SpecError": "pushbutton.core.errors",
    "PushbuttonError": "pushbutton.core.errors",
}

__all__ = ["log", "current_task", *_LAZY]


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'pushbutton' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
