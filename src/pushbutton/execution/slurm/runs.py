"""A SLURM run's stored description (`.pushbutton/slurm-runs/EID.json`) and its background
harvester: what `pb run --on TARGET` leaves behind for the harvest rounds that follow."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from pushbutton.core.files import cache_dir, write_json
from pushbutton.store.database import Store
from pushbutton.store.liveness import harvester_down, pushbutton_alive


def project_key(store: Store) -> str:
    """This project's folder name on a cluster: readable, and unique per host and path."""
    h = hashlib.blake2b(f"{socket.gethostname()}:{store.root}".encode(), digest_size=5)
    return f"{safe_name(store.root.name)[:40] or 'project'}-{h.hexdigest()}"


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def limits_cache(target_name: str) -> Path:
    """Where a target's site limits (scontrol, sinfo) are cached for an hour."""
    return cache_dir() / f"limits-{safe_name(target_name)}.json"


def meta_path(store: Store, eid: int) -> Path:
    return store.dir / "slurm-runs" / f"{eid}.json"


def load_meta(store: Store, eid: int) -> dict | None:
    p = meta_path(store, eid)
    return json.loads(p.read_text()) if p.exists() else None


def save_meta(store: Store, eid: int, meta: dict) -> None:
    p = meta_path(store, eid)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, meta)


def out_on_slurm(store: Store, eid: int) -> int:
    """Bundles of the experiment that are out on SLURM (submitted, or being submitted)."""
    return store.db.execute("SELECT count(*) FROM bundles WHERE exp=? AND backend='slurm' AND "
                            "state IN ('created','submitted')", (eid,)).fetchone()[0]


def auto_harvest(target) -> bool:
    return target.auto_harvest if target.auto_harvest is not None else not target.host


def harvester_alive(store: Store, eid: int) -> bool:
    """The background harvester started for the experiment's SLURM run is running."""
    meta = load_meta(store, eid) or {}
    pid = meta.get("harvester")
    return bool(pid) and pushbutton_alive(pid)


def spawn_harvester(store: Store, name: str) -> int:
    """A detached `pb harvest NAME --wait` that ingests results as bundles finish, and exits
    when every task is over (`pb cancel` stops it; `pb harvest` does the same by hand)."""
    log = open(store.dir / "logs" / f"harvest-{name}.log", "ab")
    env = dict(os.environ, PB_HARVESTER="1")
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "harvest", name, "--wait"],
                         cwd=str(store.root), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, env=env)
    log.close()
    return p.pid


def restart_harvester(store: Store, eid: int, name: str) -> int | None:
    """Start the background harvester again when it died while bundles are out (for
    `pb watch` and `pb harvest`; `pb status` only reports it). Returns its pid."""
    if os.environ.get("PB_HARVESTER") or not harvester_down(store, eid):
        return None
    meta = load_meta(store, eid)
    pid = spawn_harvester(store, name)
    meta["harvester"] = pid
    save_meta(store, eid, meta)
    store.event(eid, meta.get("run"), "harvester-restarted", {"pid": pid})
    return pid
