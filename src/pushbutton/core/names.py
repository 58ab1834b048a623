"""Column names pushbutton adds next to the user's parameters and metrics.

Every bookkeeping column carries the reserved prefix `pb_`, in every view (the DataFrame of
`exp.results()`, `pb results`, the `pb sql` views, the report, CSV exports, `exp.series()`), so a
user's parameter or metric keeps exactly its name: `n`, `error`, `host`, `status`, `seed`,
`task_id`, `duration_s` are all fine. A parameter whose name starts with `pb_` is refused in the
spec; a metric whose name starts with `pb_` fails its task (kind "metric").
"""
from __future__ import annotations

from pushbutton.core.errors import PushbuttonError

PREFIX = "pb_"

TASK_ID = "pb_task_id"
STATUS = "pb_status"
ERROR_KIND = "pb_error_kind"
ERROR = "pb_error"
ATTEMPTS = "pb_attempts"
DURATION = "pb_duration_s"
HOST = "pb_host"
# the node the task ran on as its scheduler names it: the SLURM node name (SLURMD_NODENAME),
# the Dask worker's address, else the host name (pb_host)
NODE = "pb_node"
RUN_ID = "pb_run_id"
FINISHED_AT = "pb_finished_at"
BUNDLE = "pb_bundle"
# per-step series (the `step=` of pushbutton.log is pushbutton's keyword: bookkeeping)
STEP = "pb_step"
TIME = "pb_time"
# analysis outputs
N = "pb_n"

# what follows the parameters and metrics in `exp.results()`
TAIL = [STATUS, ERROR_KIND, ERROR, ATTEMPTS, DURATION, HOST, NODE, RUN_ID, FINISHED_AT]

# bookkeeping columns with a value of their own in nearly every row: a Parquet dictionary of
# them is built and then dropped, or kept and bigger than the values (a 50,000-row part:
# written in 11 ms instead of 17, 578 KB instead of 847)
UNIQUE = (TASK_ID, DURATION, FINISHED_AT)


def dictionary_columns(names) -> list[str]:
    """The columns a Parquet writer dictionary-encodes (pyarrow's use_dictionary): all but
    UNIQUE."""
    return [c for c in names if c not in UNIQUE]


def reserved(name) -> bool:
    """True for a name pushbutton keeps for its own columns."""
    return isinstance(name, str) and name.startswith(PREFIX)


class NameClash(PushbuttonError, ValueError):
    """An output column would take the name of a user's column."""


def no_clash(columns, out_cols: dict, what: str) -> None:
    """out_cols: {output column: what it holds}. An output column must not take the name of a
    user's column (a parameter or metric among `columns`): it would read as the user's value."""
    users = {c for c in columns if isinstance(c, str) and not reserved(c)}
    for col, desc in out_cols.items():
        if col in users:
            raise NameClash(f"{what}: the output column {col!r} ({desc}) would have the name of "
                            f"your column {col!r}; leave that metric out (metrics=[...]) or "
                            "rename one of the two")
