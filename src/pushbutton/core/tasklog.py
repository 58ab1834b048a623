"""What a running task can call: `pushbutton.log(step=..., **metrics)` and `pushbutton.current_task()`.

The worker announces the task through environment variables (so commands in any language and
Python functions run in-process see the same contract):
  PB_TASK_ID    the task's id
  PB_SERIES     file to which per-step metrics are appended as JSON lines
  PB_TASK_DIR   a per-task folder for checkpoints and artifacts (created on first use): one per
                experiment and task, kept over retries, a fresh one after a --rerun
  PB_ATTEMPT    1 for the first attempt, 2 for the first retry, ...; numbers run on over
                `pb retry` and --rerun (each attempt of a task has its own number)
Outside a task, log() is a no-op, so the same code runs interactively.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

_handles: dict[str, object] = {}


def log(step: int | float | None = None, **metrics) -> None:
    """Record per-step metrics (learning curves) for the running task. Metric names keep their
    names in `exp.series()`; names starting with pb_ are pushbutton's own columns."""
    bad = [k for k in metrics if k.startswith("pb_")]
    if bad:
        raise ValueError(f"pushbutton.log: metric name {bad[0]!r} is reserved (pb_ names are "
                         "pushbutton's columns, e.g. pb_step); rename it")
    path = os.environ.get("PB_SERIES")
    if not path:
        return
    # NaN/inf are kept (a diverging loss is data); the driver's JSON reader accepts them.
    line = json.dumps({"task": os.environ.get("PB_TASK_ID"), "step": step, "t": time.time(),
                       "m": metrics}, default=_jsonable) + "\n"
    f = _handles.get(path)
    if f is None:
        for old in _handles.values():
            old.close()
        _handles.clear()
        f = _handles[path] = open(path, "a", encoding="utf-8")
    f.write(line)
    f.flush()


def _jsonable(x):
    try:  # numpy scalars and 0-d arrays
        return x.item()
    except AttributeError:
        raise TypeError(f"metric value {x!r} of type {type(x).__name__} is not JSON-serialisable")


class TaskContext:
    def __init__(self):
        self.id = os.environ.get("PB_TASK_ID")
        self.attempt = int(os.environ.get("PB_ATTEMPT", "1"))
        self._dir = os.environ.get("PB_TASK_DIR")

    @property
    def dir(self) -> Path:
        """Per-task folder (checkpoints, artifacts); a temp folder outside a task."""
        if not self._dir:
            import tempfile
            self._dir = tempfile.mkdtemp(prefix="pb-task-")
        p = Path(self._dir)
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def active(self) -> bool:
        return self.id is not None


def current_task() -> TaskContext:
    return TaskContext()
