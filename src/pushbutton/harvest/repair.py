"""`pb repair`: fix what can be fixed in a store (`pb doctor`, store/integrity.py, finds it).

Lost result rows are re-ingested from the bundles' outcome files with the Ingestor; what cannot
be rebuilt is marked pending for the next `pb run`.
"""
from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from pushbutton.core.errors import PushbuttonError, StoreError
from pushbutton.core.files import complete_lines
from pushbutton.harvest.ingest import Ingestor, RunPolicy
from pushbutton.store import partset
from pushbutton.store import parts as results
from pushbutton.store.database import DIRNAME, Store
from pushbutton.store.integrity import (DB_FIX, INDEX_ONLY, folder_problems, integrity_check,
                                        lost_rows, rel_path)
from pushbutton.store.lock import ExperimentLock


def _quarantine(sd: Path, folder: Path, name: str) -> Path:
    dest = sd / "quarantine" / folder.parent.name / folder.name
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    if target.exists():
        target = dest / f"{time.time_ns()}-{name}"
    shutil.move(str(folder / name), str(target))
    return target


def _salvage(store, eid: int, name: str, folder: Path, bid: str, tids: list[str]) -> int:
    """Rebuild the result rows of `tids` from bundle `bid`'s outcomes.jsonl; returns how many."""
    row = store.db.execute("SELECT dir, run FROM bundles WHERE id=?", (bid,)).fetchone()
    d = Path(row[0]) if row and row[0] else store.dir / "bundles" / bid
    if not ((d / "bundle.json").exists() and (d / "outcomes.jsonl").exists()):
        return 0
    try:
        params = results.columns_meta(folder)["params"]
    except Exception:
        params = []
    run = (row[1] if row else None) or 0
    ing = Ingestor(store, eid, name, run, RunPolicy(param_names=tuple(params)))
    b = ing.load(bid, d, run=run)
    want = set(tids)
    b.tasks = {t: v for t, v in b.tasks.items() if t in want}
    rows = ing.result_rows(b, complete_lines(d / "outcomes.jsonl", 0))
    if not rows:
        return 0
    path = folder / f"repair-{bid}-{time.time_ns()}.parquet"
    results.write_part(path, rows, params)
    partset.publish(folder, [path])
    return len(rows)


def repair(root, experiment: str | None = None) -> dict:
    """Fix what can be fixed, safe to repeat: rebuild SQLite's indexes when only they are
    damaged; move unreadable parts into .pushbutton/quarantine/ and drop them from the
    manifest (rebuilt from the folder if it is damaged); remove files the manifest does not
    list; re-ingest the result rows of done tasks whose row is lost from the bundle's
    outcomes.jsonl when it is still on disk; mark the rest pending, so that the next `pb run`
    recomputes them. Refuses while a driver holds an experiment's lock."""
    sd = Path(root) / DIRNAME
    path = sd / "state.sqlite"
    out = {"reindexed": False, "quarantined": [], "manifests_rebuilt": 0, "leftovers_removed": 0,
           "restored": 0, "pending": 0, "experiments": []}
    try:
        res = integrity_check(path)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{rel_path(sd, path)} is damaged: SQLite cannot read it ({e})\n"
                         f"  fix: {DB_FIX}") from None
    if res != ["ok"]:
        if not all(INDEX_ONLY.search(m) for m in res):
            raise StoreError(f"{rel_path(sd, path)} is damaged beyond its indexes ("
                             f"{'; '.join(res[:3])}); pb repair cannot rebuild it\n"
                             f"  fix: {DB_FIX}")
        db = sqlite3.connect(path, timeout=60)
        try:
            db.execute("REINDEX")
            db.commit()
            res = [r[0] for r in db.execute("PRAGMA integrity_check(50)")]
        finally:
            db.close()
        if res != ["ok"]:
            raise StoreError(f"{rel_path(sd, path)}: rebuilding the indexes did not help ("
                             f"{'; '.join(res[:3])})\n  fix: {DB_FIX}")
        out["reindexed"] = True
    store = Store(root, create=False)
    exps = [e for e in store.experiments() if experiment in (None, e["name"])]
    if experiment and not exps:
        raise PushbuttonError(f"no experiment '{experiment}' in this project")
    try:
        for e in exps:
            eid, name = e["id"], e["name"]
            lock = ExperimentLock(store, eid, name).acquire()  # BusyError while a driver runs
            try:
                _repair_one(store, sd, eid, name, out)
                with store.tx():  # the kept counts (store/counts.py) as the repaired table says
                    store.recount(eid)
            finally:
                lock.release()
            out["experiments"].append(name)
    finally:
        store.close()
    return out


def _repair_one(store, sd: Path, eid: int, name: str, out: dict) -> None:
    for sub in ("results", "series"):
        folder = sd / sub / name
        if not folder.is_dir():
            continue
        pr = folder_problems(folder)
        if pr["manifest"]:  # rebuilt from what is there (readers dedupe by task, bundle)
            partset.write_manifest(folder, partset.on_disk(folder))
            out["manifests_rebuilt"] += 1
            pr = folder_problems(folder)
        for n, _ in pr["unreadable"]:
            if (folder / n).exists():
                out["quarantined"].append(rel_path(sd, _quarantine(sd, folder, n)))
        if pr["unreadable"]:
            bad = {n for n, _ in pr["unreadable"]}
            partset.write_manifest(folder, [n for n in partset.current(folder) if n not in bad])
        out["leftovers_removed"] += partset.sweep(folder, grace=False)
        if sub != "results":
            continue
        lost = lost_rows(store, eid, folder, partset.current(folder))
        gone = []
        for bid, tids in lost.items():
            n = _salvage(store, eid, name, folder, bid, tids) if bid else 0
            out["restored"] += n
            if n < len(tids):
                gone.append((bid, tids))
        if gone:  # what could not be re-ingested is recomputed by the next run
            still = lost_rows(store, eid, folder, partset.current(folder))
            ids = [t for v in still.values() for t in v]
            with store.tx(), store.counted(eid):
                for i in range(0, len(ids), 900):
                    chunk = ids[i:i + 900]
                    out["pending"] += store.db.execute(
                        f"UPDATE tasks SET state='pending' WHERE exp=? AND state='done' AND id "
                        f"IN ({','.join('?' * len(chunk))})", (eid, *chunk)).rowcount
            store.event(eid, None, "repair-pending", {"tasks": len(ids)})
    if out["restored"]:
        store.event(eid, None, "repair-restored", {"rows": out["restored"]})
