"""Backends run bundles; they know nothing about tasks. See base.Backend."""
from __future__ import annotations


def get_backend(name: str, **options):
    """The backend for a target's scheduler name."""
    if name == "local":
        from pushbutton.execution.backends.local import LocalBackend
        return LocalBackend(**options)
    if name == "slurm":
        from pushbutton.execution.slurm.backend import SlurmBackend
        return SlurmBackend(**options)
    if name == "dask":
        from pushbutton.execution.backends.dask import DaskBackend
        return DaskBackend(**options)
    from pushbutton.core.errors import SpecError
    raise SpecError(f"unknown scheduler {name!r}", key="scheduler",
                    fix="use one of: local, slurm, dask")
