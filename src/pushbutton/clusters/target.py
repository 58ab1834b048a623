"""The target a cluster registers (`pb run --on NAME`) in the user's targets file."""
from __future__ import annotations

import sys
from pathlib import Path

from pushbutton.clusters.cluster import Cluster, ClusterError
from pushbutton.core.files import atomic_write


def _target_for(cl: Cluster, fields: dict, description: str):
    from pushbutton.execution.targets import Target
    base = {"scheduler": "slurm", "python": sys.executable,
            # reaches sbatch/squeue/scancel too, never the caller's SLURM_CONF
            "env": {"SLURM_CONF": str(cl.conf)}}
    return Target(name=cl.name, description=description, **{**base, **fields})


def _user_targets() -> dict:
    from pushbutton.execution import targets as T
    p = T.user_file()
    return T.parse(T._read(p), str(p)) if p.exists() else {}


def _ours(cl: Cluster, t) -> bool:
    return t is not None and (t.env.get("SLURM_CONF") == str(cl.conf) or
                              t.description.startswith(f"pb cluster {cl.name} "))


def register(cl: Cluster, fields: dict, description: str) -> Path:
    from pushbutton.execution import targets as T
    old = _user_targets().get(cl.name)
    if old is not None and not _ours(cl, old):
        raise ClusterError(f"a target '{cl.name}' already exists in {T.user_file()} and is not "
                           "this cluster's", "choose another cluster name, or remove that target")
    forget_limits(cl)
    return T.add(_target_for(cl, fields, description), replace=True)


def remove(cl: Cluster) -> bool:
    from pushbutton.execution import targets as T
    existing = _user_targets()
    if not _ours(cl, existing.get(cl.name)):
        return False
    del existing[cl.name]
    text = "# pushbutton targets (see `pb targets --help`)\n\n" + \
        "\n".join(t.to_toml() for t in existing.values())
    atomic_write(T.user_file(), text)
    return True


def forget_limits(cl: Cluster) -> None:
    """Drop the cached site limits of the cluster's target (its CPU count sizes bundles): a
    resize changes them, and a stale count would plan for nodes that are gone."""
    from pushbutton.execution.slurm.runs import limits_cache
    limits_cache(cl.name).unlink(missing_ok=True)


def registered(cl: Cluster) -> bool:
    return _ours(cl, _user_targets().get(cl.name))
