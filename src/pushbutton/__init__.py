"""pushbutton: push-button computational experiments.

Heavy modules (pandas, pyarrow, duckdb, matplotlib) load only when used, so the CLI starts fast.
"""
from __future__ import annotations

from .tasklog import current_task, log

__version__ = "0.1.0"

_LAZY = {
    "Experiment": "pushbutton.experiment",
    "load": "pushbutton.experiment",
    "grid": "pushbutton.space",
    "zip": "pushbutton.space",
    "reps": "pushbutton.space",
    "sample": "pushbutton.space",
    "where": "pushbutton.space",
    "Space": "pushbutton.space",
    "uniform": "pushbutton.space",
    "loguniform": "pushbutton.space",
    "randint": "pushbutton.space",
    "normal": "pushbutton.space",
    "choice": "pushbutton.space",
    "SpecError": "pushbutton.errors",
    "PushbuttonError": "pushbutton.errors",
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
