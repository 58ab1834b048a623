"""The logs of bundles that are over, kept compacted once their folders are gone.

A bundle folder (`bundles/<id>/`: bundle.json, outcomes.jsonl, the two logs, series.jsonl,
done.json, a SLURM job's files) is needed while its bundle runs and is ingested. Once its
outcomes are committed, what it holds is in the store (task states and failures in SQLite,
result rows and series in Parquet) except the task output, so the folder is replaced by one
zip file `logs/bundles/<id>.zip`:

* `bundle.json`: the bundle's description without its task list (where tasks ran, task_root);
* `index.json`: `{"chunk": C, "sizes": [stdout, stderr], "tasks": {id: [o0, o1, e0, e1]}}`,
  the log slices of the tasks whose end line names output (failed attempts' slices are in
  SQLite already; a task with no output needs no entry);
* `stdout/<k>`, `stderr/<k>`: the logs in chunks of C bytes, each compressed on its own, so
  one task's slice is read without inflating the whole log;
* `files/<name>`: any other small file of the folder (done.json, a SLURM job's exit.json).

Retiring is crash-safe: the state database's WAL is synced first (the outcomes are durably
committed), the zip is written under a temporary name, synced and renamed, and only then is the
folder deleted. A kill at any point leaves the folder (retired again later: an existing zip is
never rewritten from a half-deleted folder), the zip, or both; nothing is ingested twice, since
a bundle that is over is never ingested again.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

CHUNK = 4 << 20
SMALL = 16 << 20  # other files above this size are not kept
_SKIP = {"outcomes.jsonl", "starts.jsonl", "series.jsonl", "bundle.json", "stdout.log",
         "stderr.log"}
_END_LOG = re.compile(rb'\{"id": ?"([0-9a-f]+)", ?"ev": ?"end"[^\n]*?"log": ?'
                      rb'\[(\d+), ?(\d+), ?(\d+), ?(\d+)\]')


def archive_path(store_dir: Path, bid: str) -> Path:
    return Path(store_dir) / "logs" / "bundles" / f"{bid}.zip"


def folder_of(store_dir: Path, bid: str) -> Path:
    return Path(store_dir) / "bundles" / bid


def keep_folders() -> bool:
    """PB_KEEP_BUNDLES=1 keeps bundle folders after their bundles are over (to look at what a
    worker wrote)."""
    return os.environ.get("PB_KEEP_BUNDLES", "") not in ("", "0")


def sync_state(store_dir: Path) -> None:
    """Make every committed transaction durable (WAL + synchronous=NORMAL syncs only at
    checkpoints): fsync the write-ahead log and the database file."""
    for name in ("state.sqlite-wal", "state.sqlite"):
        try:
            fd = os.open(Path(store_dir) / name, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _index(folder: Path) -> dict:
    sizes = []
    for name in ("stdout.log", "stderr.log"):
        try:
            sizes.append((folder / name).stat().st_size)
        except OSError:
            sizes.append(0)
    tasks = {}
    if any(sizes):  # with no output at all, no task has a slice to keep
        try:
            data = (folder / "outcomes.jsonl").read_bytes()
        except OSError:
            data = b""
        for m in _END_LOG.finditer(data):
            o0, o1, e0, e1 = (int(x) for x in m.groups()[1:])
            if o1 > o0 or e1 > e0:
                tasks[m.group(1).decode()] = [o0, o1, e0, e1]
    return {"chunk": CHUNK, "sizes": sizes, "tasks": tasks}


_TASKS = ', "tasks": ['


def head(text: str) -> dict | None:
    """The fields of a bundle.json before its task list, parsed without the list; None where
    the text is laid out otherwise. Both writers (the driver, the SLURM submission) put the
    tasks last: parsing a bundle's 50,000 tasks to drop them was 1.5 s of a 10^6 run's
    driver. A cut anywhere but at the top-level key leaves brackets open: not JSON, None."""
    i = text.find(_TASKS)
    if i < 0 or not text.rstrip().endswith("]}"):
        return None
    try:
        spec = json.loads(text[:i] + "}")
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


def _header(folder: Path) -> dict:
    try:
        text = (folder / "bundle.json").read_text()
    except OSError:
        return {}
    spec = head(text)
    if spec is not None:
        return spec
    try:
        spec = json.loads(text)
    except ValueError:
        return {}
    if isinstance(spec, dict):
        spec.pop("tasks", None)
        return spec
    return {}


def write_archive(folder: Path, dest: Path, sync_dir: bool = True) -> None:
    """The zip of a bundle folder (see the module doc), written atomically and synced (its
    folder's entry too unless `sync_dir` is False: the caller syncs it once for many)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")  # one writer per bundle: its experiment's lock
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
            z.writestr("bundle.json", json.dumps(_header(folder)))
            z.writestr("index.json", json.dumps(_index(folder)))
            for stream in ("stdout", "stderr"):
                try:
                    f = open(folder / f"{stream}.log", "rb")
                except OSError:
                    continue
                with f:
                    k = 0
                    while True:
                        block = f.read(CHUNK)
                        if not block:
                            break
                        z.writestr(f"{stream}/{k}", block)
                        k += 1
            for p in sorted(folder.iterdir()):
                if p.name in _SKIP or not p.is_file() or p.name.startswith("."):
                    continue
                if p.stat().st_size <= SMALL:
                    z.write(p, f"files/{p.name}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        _fsync_dir(dest.parent)


def retire(store_dir: Path, bids) -> int:
    """Replace the folders of these bundles (over, their outcomes committed) by their zips;
    returns how many folders went. Folders outside the store's bundles/ are left alone."""
    store_dir = Path(store_dir)
    todo = [b for b in bids if folder_of(store_dir, b).is_dir()]
    if not todo or keep_folders():
        return 0
    sync_state(store_dir)
    made = []
    for bid in todo:
        folder, dest = folder_of(store_dir, bid), archive_path(store_dir, bid)
        if not dest.exists():  # never rebuilt from a folder a killed retire half deleted
            write_archive(folder, dest, sync_dir=False)
            made.append(dest.parent)
    for d in dict.fromkeys(made):  # every new zip's name is durable before a folder goes
        _fsync_dir(d)
    for bid in todo:
        shutil.rmtree(folder_of(store_dir, bid), ignore_errors=True)
    return len(todo)


# -- readers -------------------------------------------------------------------------------
def _open(store_dir: Path, bid: str):
    p = archive_path(store_dir, bid)
    try:
        return zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile):
        return None


def header(store_dir: Path, bid: str) -> dict | None:
    """bundle.json of a bundle (its task list left out once retired); None when neither its
    folder nor its zip is there."""
    p = folder_of(store_dir, bid) / "bundle.json"
    if p.exists():
        return _header(p.parent)
    z = _open(store_dir, bid)
    if z is None:
        return None
    with z:
        try:
            return json.loads(z.read("bundle.json"))
        except (KeyError, ValueError):
            return None


def end_log(store_dir: Path, bid: str, tid: str):
    """A done task's log slice as its end line gave it, from a retired bundle's index; None
    when the bundle is not retired, [0, 0, 0, 0] when the task wrote nothing."""
    z = _open(store_dir, bid)
    if z is None:
        return None
    with z:
        try:
            idx = json.loads(z.read("index.json"))
        except (KeyError, ValueError):
            return None
    return idx.get("tasks", {}).get(tid) or [0, 0, 0, 0]


def read_slice(store_dir: Path, bid: str, stream: str, a: int, b: int) -> str | None:
    """Bytes [a, b) of a bundle's stdout or stderr: from its folder while it is there, else
    from its zip; None when neither has it."""
    p = folder_of(store_dir, bid) / f"{stream}.log"
    if p.exists():
        with open(p, "rb") as f:
            f.seek(a)
            return f.read(max(0, b - a)).decode("utf-8", "replace")
    z = _open(store_dir, bid)
    if z is None:
        return None
    with z:
        try:
            chunk = json.loads(z.read("index.json")).get("chunk", CHUNK)
        except (KeyError, ValueError):
            return None
        out = bytearray()
        for k in range(a // chunk, (max(a, b - 1)) // chunk + 1) if b > a else ():
            try:
                block = z.read(f"{stream}/{k}")
            except KeyError:
                break
            lo, hi = max(a - k * chunk, 0), min(b - k * chunk, len(block))
            out += block[lo:hi]
        return bytes(out).decode("utf-8", "replace")


def remove(store_dir: Path, bid: str) -> None:
    """A bundle's folder and zip (`pb clean`)."""
    shutil.rmtree(folder_of(store_dir, bid), ignore_errors=True)
    try:
        os.unlink(archive_path(store_dir, bid))
    except FileNotFoundError:
        pass
