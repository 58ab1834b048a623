"""The one place a backend is made: `--on NAME` -> a Backend, with all its options given to its
constructor (nothing is set on a backend afterwards)."""
from __future__ import annotations

import os
import shlex

from pushbutton.execution import targets
from pushbutton.execution.backends.base import Backend
from pushbutton.store.database import Store


def backend_for(on: str | None, store: Store, *, workers: int | None = None,
                sbatch: list[str] | str | None = None, resources=None,
                remote_base: str | None = None) -> Backend:
    """The backend for `--on`: 'local' (the default), or a named target of any scheduler.

    workers: the local or Dask pool size asked for (`-j`), ahead of the target's and the
    spec's own; sbatch: extra sbatch options (after the target's); resources: what a task
    needs (a RunPolicy or the spec's resources: cpus, gpus, and the spec's workers);
    remote_base: the cluster-side folder an earlier submission resolved (a harvest reuses it).
    """
    cpus = max(1, int(getattr(resources, "cpus", 1) or 1))
    spec_workers = getattr(resources, "workers", None)
    if on in (None, "", "local"):  # no target files are read for the built-in default
        return _local(workers or spec_workers, store, cpus)
    t = targets.get(on, store.root)
    if t.scheduler == "local":
        return _local(workers or t.workers or spec_workers, store, cpus)
    if t.scheduler == "slurm":
        from pushbutton.execution.slurm.backend import SlurmBackend
        from pushbutton.execution.slurm.runs import limits_cache, project_key
        opts = shlex.split(sbatch) if isinstance(sbatch, str) else list(sbatch or [])
        return SlurmBackend(t, store.dir, sbatch=opts, project_key=project_key(store),
                            gpus=int(getattr(resources, "gpus", 0) or 0),
                            remote_base=remote_base, limits_cache=limits_cache(t.name))
    from pushbutton.execution.backends.dask import DaskBackend
    return DaskBackend(address=t.address, workers=workers or t.workers, env=t.env)


def _local(workers: int | None, store: Store, cpus: int) -> Backend:
    from pushbutton.execution.backends.local import LocalBackend
    n = workers or max(1, (os.cpu_count() or 1) // cpus)
    return LocalBackend(workers=n, log_dir=store.dir / "logs", cpus=cpus)
