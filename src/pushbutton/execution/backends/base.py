"""The one backend interface. A backend runs *bundles* (folders following the worker's file
contract, see docs/ARCHITECTURE.md); it never sees individual tasks, so 10^6 tasks cost the
scheduler only as many jobs as there are bundles."""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path

# bundle states as a backend reports them
QUEUED, RUNNING, FINISHED, FAILED = "queued", "running", "finished", "failed"


@dataclass
class BundleRef:
    id: str
    dir: Path                 # local folder holding bundle.json (and, once collected, outputs)
    n_tasks: int
    timeout: float | None = None      # per task, seconds
    memory_mb: int | None = None
    cpus: int = 1
    options: dict = field(default_factory=dict)  # backend-specific (sbatch flags, ...)


@dataclass
class BundleState:
    state: str                 # queued | running | finished | failed
    cause: str | None = None   # why it failed: "killed by signal SIGSEGV", "NODE_FAIL", ...
    kind: str | None = None    # failure kind charged to a task that was mid-run: signal|exit|
                               # timeout|memory|lost|preempted


class Backend(abc.ABC):
    name = "backend"
    remote = False  # True: outputs must be collected (copied back) before ingesting
    # True: runs are submitted and left running (slurm/submit.py); results come in by a
    # harvest (slurm/sync.py), not by a driver that polls until the end
    fire_and_forget = False

    def capacity(self) -> int | None:
        """How many bundles may be in flight at once (None: no limit of its own)."""
        return None

    @abc.abstractmethod
    def submit(self, bundles: list[BundleRef]) -> list[str]:
        """Start the bundles; return one handle (a string stored in the database) each."""

    @abc.abstractmethod
    def poll(self, handles: list[str]) -> dict[str, BundleState]:
        """States of all the given bundles in ONE batched query."""

    @abc.abstractmethod
    def cancel(self, handles: list[str]) -> None:
        """Stop the bundles."""

    def wait(self, timeout: float) -> None:
        """Sleep until a bundle may have ended or `timeout` passes (the driver's poll pace)."""
        time.sleep(timeout)

    def collect(self, bundle: BundleRef) -> Path:
        """Make the bundle's outputs readable locally; returns the folder."""
        return bundle.dir

    def close(self) -> None:
        pass
