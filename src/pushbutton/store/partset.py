"""Which Parquet files make up a results (or series) folder, and how they are merged.

A folder's `MANIFEST.json` (written atomically: temp file, then rename) lists its current parts.
Readers read only what it lists, so they see either the set before a compaction or the one after,
never a mix. Ingest writes a part, lists it, then commits SQLite; compaction writes the merged
file, swaps the manifest, and deletes the merged parts GRACE_S later (the full compaction at the
end of a run at once; a reader whose files vanished reads the new list, see integrity.guarded).
A file that is not listed is a leftover of an interrupted ingest or compaction: invisible to
readers, removed by the next compaction.

Parts are named `<bundle>-<offset>.parquet` by the outcome bytes they came from. Only committed
parts (SQLite's ingested offset of the bundle lies past the part's offset) are ever merged: an
uncommitted part is re-written under the same name by the re-ingest after a crash, so a row can
never sit both in a merged file and in a re-written part.

Merging is tiered: when LEVEL0 committed small parts have piled up, they become one level-1 file;
FANOUT files of level L become one of level L+1. A run of any length keeps
O(LEVEL0 + FANOUT * log(rows)) files, and each row is rewritten about log(rows) times.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from pushbutton.core import names as N
from pushbutton.core.errors import StoreError
from pushbutton.core.files import atomic_write, replacing

MANIFEST = "MANIFEST.json"
LEVEL0 = 32         # committed small parts before they are merged
FANOUT = 8          # merged files of one level before they are merged again
EVERY_S = 2.0       # incremental compaction runs at most this often per folder
MERGE_MEMORY = "64MB"  # what a merge may hold before DuckDB spills to disk
GRACE_S = 10.0      # merged-away files stay this long for readers still reading them

_PART = re.compile(r"^(?P<bundle>.+)-(?P<offset>\d{12})\.parquet$")
_MERGED = re.compile(r"^compact-(?:L(?P<level>\d+)-)?\d+\.parquet$")
_TEMP_PART = re.compile(r"^\..+\.parquet(\.\d+)?\.tmp$")  # a part being written (core.files)


def manifest_path(folder) -> Path:
    return Path(folder) / MANIFEST


def listed(folder) -> list[str] | None:
    """File names the manifest lists (None: no manifest yet, an older store or no part yet)."""
    p = manifest_path(folder)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StoreError(f"{p}: cannot be read ({e})") from None
    try:
        names = json.loads(text)["parts"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError("'parts' is not a list of names")
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{p} is damaged ({e}); the results cannot be read safely\n"
                         f"  fix: `pb repair` rebuilds it from the files in its folder") from None
    return names


def on_disk(folder) -> list[str]:
    f = Path(folder)
    return sorted(p.name for p in f.glob("*.parquet")) if f.is_dir() else []


def current(folder) -> list[str]:
    """The names readers use: the manifest's, or (no manifest) every part in the folder."""
    names = listed(folder)
    return on_disk(folder) if names is None else names


def _retired(folder) -> list:
    """[name, time] of merged-away files not yet deleted (a reader may still be reading them)."""
    try:
        r = json.loads(manifest_path(folder).read_text()).get("retired", [])
        return [x for x in r if isinstance(x, list) and len(x) == 2]
    except (OSError, ValueError, AttributeError):
        return []


def write_manifest(folder, names, retired=None) -> None:
    folder = Path(folder)
    atomic_write(folder / MANIFEST, json.dumps({
        "parts": sorted(set(names)), "t": time.time(),
        "retired": _retired(folder) if retired is None else retired}))


def publish(folder, added) -> None:
    """List freshly written parts (called after writing them, before the SQLite commit)."""
    added = [Path(a).name for a in added]
    if not added:
        return
    names = current(folder)
    new = set(names) | set(added)
    if new != set(names) or listed(folder) is None:
        write_manifest(folder, new)


def level(name: str) -> int:
    m = _MERGED.match(name)
    if not m:
        return 0
    return int(m.group("level") or 1)


def parse_part(name: str):
    """(bundle, offset) of an ingest part; None for merged or repair files."""
    m = _PART.match(name)
    return (m.group("bundle"), int(m.group("offset"))) if m else None


def committed_filter(db, column: str = "ingested"):
    """A function names -> the names whose outcomes SQLite has committed (see module doc)."""
    def committed(names):
        pairs = {n: parse_part(n) for n in names}
        bids = sorted({p[0] for p in pairs.values() if p})
        offsets = {}
        for i in range(0, len(bids), 900):
            chunk = bids[i:i + 900]
            offsets.update(db.execute(f"SELECT id, {column} FROM bundles WHERE id IN "
                                      f"({','.join('?' * len(chunk))})", chunk).fetchall())
        out = set()
        for n, p in pairs.items():
            if p is None or p[0] not in offsets or (offsets[p[0]] or 0) > p[1]:
                out.add(n)
        return out
    return committed


def group_meta(paths) -> dict:
    """Which columns are parameters and which are metrics, over the given results files."""
    import pyarrow.parquet as pq
    params, metrics = [], []
    for p in paths:
        raw = (pq.read_schema(p).metadata or {}).get(b"pushbutton")
        if raw:
            m = json.loads(raw)
            params += [c for c in m["params"] if c not in params]
            metrics += [c for c in m["metrics"] if c not in metrics]
    return {"params": params, "metrics": metrics}


def merge(folder, names, out_level: int, newest_per_task: bool = True) -> str:
    """Write the rows of `names` as one file (not yet listed); returns its name. Results
    (`newest_per_task`) keep the newest row per (task, bundle): a task's current result is the
    row of the bundle its task row names, whatever ran after; series keep every row."""
    folder = Path(folder)
    meta = group_meta([folder / n for n in names]) if newest_per_task else None
    lst = ", ".join("'" + str(folder / n).replace("'", "''") + "'" for n in names)
    query = f"SELECT * FROM read_parquet([{lst}], union_by_name=true)"
    options = "FORMAT parquet, COMPRESSION zstd"
    if newest_per_task:  # results: one row per (task, bundle), as readers see them
        # (parts.latest_sql); rows of earlier runs stay, for `pb results --run N`
        query += (f" QUALIFY row_number() OVER (PARTITION BY {N.TASK_ID}, {N.BUNDLE} "
                  f"ORDER BY {N.FINISHED_AT} DESC) = 1")
    if meta is not None:
        options += ", KV_METADATA {pushbutton: '%s'}" % json.dumps(meta).replace("'", "''")
    out = f"compact-L{out_level}-{time.time_ns()}.parquet"
    spill = folder / ".merge-spill"
    from pushbutton.store import arrowmerge  # rows that cannot repeat: streamed by Arrow
    with replacing(folder / out) as tmp:
        if arrowmerge.merge(folder, names, tmp, meta):
            return out
        import duckdb
        # a bounded merge: DuckDB spills to disk past MERGE_MEMORY instead of holding the
        # window of 10^7 rows (its default is most of the machine's memory)
        con = duckdb.connect(config={"memory_limit": MERGE_MEMORY, "threads": 2,
                                     "temp_directory": str(spill)})
        try:
            con.execute(f"COPY ({query}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' "
                        f"({options})")
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
    return out


def swap(folder, merged_away, new_name, grace: bool = True) -> None:
    """The merged file replaces its inputs in the manifest; the inputs are deleted GRACE_S
    later (a reader that read the old list goes on reading them), or at once without grace."""
    folder = Path(folder)
    now = time.time()
    names = [n for n in current(folder) if n not in set(merged_away)] + [new_name]
    retired = _retired(folder) + [[n, now] for n in merged_away]
    keep = [r for r in retired if grace and now - r[1] < GRACE_S]
    write_manifest(folder, names, keep)
    kept = {r[0] for r in keep}
    for n, _t in retired:
        if n not in kept:
            try:
                os.unlink(folder / n)
            except FileNotFoundError:
                pass


def sweep(folder, grace: bool = True) -> int:
    """Delete files the manifest does not list (leftovers; merged-away files once their grace is
    over, or all of them without grace); only under the experiment lock."""
    names = listed(folder)
    if names is None:
        return 0
    now = time.time()
    young = [r for r in _retired(folder) if grace and now - r[1] < GRACE_S]
    if len(young) != len(_retired(folder)):
        write_manifest(folder, names, young)
    keep = set(names) | {r[0] for r in young}
    n = 0
    for p in Path(folder).iterdir():
        if (p.suffix == ".parquet" and p.name not in keep) or _TEMP_PART.match(p.name):
            try:
                os.unlink(p)
                n += 1
            except FileNotFoundError:
                pass
    return n


def plan(names, committed, full: bool = False, min_parts: int = 16,
         sizes=None) -> list[tuple[list[str], int]]:
    """Groups of names to merge, with the level of the file each becomes."""
    ok = [n for n in names if n in committed]
    if full:
        if len(ok) < 2:
            return []
        small = sum(sizes.get(n, 0) for n in ok) if sizes else 0
        if len(ok) < min_parts and not (len(ok) >= max(2, min_parts // 4) and small > 1 << 20):
            return []
        return [(ok, max(level(n) for n in ok) + 1)]
    by_level: dict[int, list[str]] = {}
    for n in ok:
        by_level.setdefault(level(n), []).append(n)
    out = []
    lvl0 = by_level.get(0, [])
    if len(lvl0) >= LEVEL0:
        out.append((lvl0, 1))
        by_level.setdefault(1, []).append(None)  # the file this merge makes
    for lv in sorted(k for k in by_level if k > 0):
        files = by_level[lv]
        if len(files) >= FANOUT and None not in files:
            out.append((files, lv + 1))
    return out


def compact(folder, committed=None, full: bool = False, newest_per_task: bool = True,
            min_parts: int = 16, by_size: bool = True) -> int:
    """Merge what `plan` says (under the experiment lock); returns the number of parts merged.
    `committed(names) -> set` defaults to every name (no SQLite to ask). `by_size` False: the
    end of a run merges fewer than `min_parts` parts whatever their bytes (a small run's parts
    are uncompressed, store/parquet_plain.py: their size says nothing of a merge's gain)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    names = current(folder)
    if listed(folder) is not None:
        sweep(folder, grace=not full)  # the end of a run leaves only what readers read
    done = set(committed(names)) if committed else set(names)
    sizes = {}
    if full and by_size:
        for n in names:
            try:
                sizes[n] = os.path.getsize(folder / n)
            except OSError:
                sizes[n] = 0
    merged = 0
    for group, lv in plan(names, done, full, min_parts, sizes):
        new = merge(folder, group, lv, newest_per_task)
        swap(folder, group, new, grace=not full)  # the end of a run leaves no leftovers
        merged += len(group)
    return merged
