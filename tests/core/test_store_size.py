"""Issue 14, goal 5: after a run the bundle folders are gone, their logs kept compacted and
readable per task; a kill -9 while they are retired loses nothing; `pb clean` compacts."""
import collections
import csv
import io
import sqlite3
import subprocess
import sys
import zipfile

import duckdb
import pytest

from .conftest import pb, write

N = 40
KILL = """
import os, signal, sys
from pushbutton.store import bundlelogs, partset
point = sys.argv[1]

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "before-rename":  # the zip is written, not yet renamed into place
    real_replace = os.replace
    def replace(a, b):
        if str(b).endswith(".zip"):
            die()
        return real_replace(a, b)
    bundlelogs.os.replace = replace
elif point == "after-rename":  # the zip is there, the folder not yet deleted
    bundlelogs.shutil.rmtree = die
elif point == "mid-delete":  # the folder half deleted
    def half(folder, ignore_errors=False):
        for name in ("outcomes.jsonl", "stdout.log"):
            os.unlink(os.path.join(folder, name))
        die()
    bundlelogs.shutil.rmtree = half
elif point == "compaction":  # the end-of-run merge written, the manifest not yet swapped
    partset.swap = die
from pushbutton.experiment import load
load("experiment.toml").run()
"""


def _spec(project, fn="store_tasks:chatty", n=N, size=10):
    return write(project / "experiment.toml", f"""
name = "logs"
function = "{fn}"
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = 2
bundle_size = {size}
""")


def _env(project):
    return {"PB_COUNT_DIR": str(project)}


def _ids(project) -> dict:
    out = pb("results", "--all", "--format", "csv", cwd=project).stdout
    return {int(r["i"]): r["pb_task_id"] for r in csv.DictReader(io.StringIO(out))}


def _bundles(project) -> list[str]:
    con = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        return [b for (b,) in con.execute("SELECT id FROM bundles ORDER BY id")]
    finally:
        con.close()


def _raw_rows(project):
    files = [str(p) for p in (project / ".pushbutton" / "results" / "logs").glob("*.parquet")]
    return duckdb.connect().execute("SELECT count(*), count(DISTINCT pb_task_id) FROM "
                                    "read_parquet(?, union_by_name=true)", [files]).fetchone()


def _check_logs(project, ids):
    r = pb("logs", ids[3], cwd=project).stdout
    assert "out 3" in r and "err 3" in r and "out 4" not in r, r
    r = pb("logs", ids[7], cwd=project).stdout
    assert "seven is refused" in r and "out 7" in r and "err 7" in r, r
    assert "ValueError" in r, r
    r = pb("show", ids[3], cwd=project).stdout
    assert "sq=9" in r and "done" in r, r


def test_bundle_folders_are_retired_and_logs_stay_per_task(project):
    _spec(project)
    r = pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project), check=False)
    assert f"{N - 1} done, 1 failed" in r.stdout, (r.stdout, r.stderr)
    sd = project / ".pushbutton"
    assert list((sd / "bundles").iterdir()) == []  # no folder left after the run
    bids = _bundles(project)
    zips = sorted(p.stem for p in (sd / "logs" / "bundles").glob("*.zip"))
    assert zips == bids and len(bids) == N // 10
    names = zipfile.ZipFile(sd / "logs" / "bundles" / f"{bids[0]}.zip").namelist()
    assert "outcomes.jsonl" not in names and {"index.json", "bundle.json"} <= set(names)
    assert not (sd / "state.sqlite-wal").exists() or \
        (sd / "state.sqlite-wal").stat().st_size == 0  # checkpointed (TRUNCATE)
    ids = _ids(project)
    _check_logs(project, ids)
    r = pb("results", "--format", "csv", cwd=project).stdout
    assert len(r.strip().splitlines()) == N + 1  # a header and every task
    # pb clean --bundles removes the kept logs; pb logs then says there is no output
    r = pb("clean", "--bundles", cwd=project)
    assert f"removed {len(bids)} bundle folders and logs" in r.stdout, r.stdout
    assert list((sd / "logs" / "bundles").glob("*.zip")) == []
    assert "out 3" not in pb("logs", ids[3], cwd=project).stdout


def test_keep_bundles_keeps_the_folders(project):
    _spec(project, fn="store_tasks:quiet", n=10)
    pb("run", "experiment.toml", "--quiet", cwd=project, env={"PB_KEEP_BUNDLES": "1"})
    assert len(list((project / ".pushbutton" / "bundles").iterdir())) == 1


@pytest.mark.parametrize("point", ["before-rename", "after-rename", "mid-delete",
                                   "compaction"])
def test_kill_9_while_retiring_loses_nothing(project, point):
    _spec(project, size=2 if point == "compaction" else 10)  # 20 parts: the end merges them
    child = subprocess.run([sys.executable, "-c", KILL, point], cwd=project,
                           env=dict(__import__("os").environ, **_env(project)),
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, (child.returncode, child.stderr)
    sd = project / ".pushbutton"
    bids = _bundles(project)
    for b in bids:  # at every moment a bundle's logs are in its folder or its zip
        folder, z = sd / "bundles" / b, sd / "logs" / "bundles" / f"{b}.zip"
        assert (folder / "stdout.log").exists() or z.exists(), (point, b)
    before = collections.Counter(open(project / "executions.log").read().split())
    assert sum(before.values()) == N
    r = pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project), check=False)
    assert f"{N - 1} done, 1 failed" in r.stdout, (r.stdout, r.stderr)
    after = collections.Counter(open(project / "executions.log").read().split())
    assert after == before  # nothing ran twice
    assert _bundles(project) == bids  # nothing was submitted again
    assert list((sd / "bundles").iterdir()) == []
    assert sorted(p.stem for p in (sd / "logs" / "bundles").glob("*.zip")) == bids
    assert list((sd / "logs" / "bundles").glob(".*")) == []
    if point == "compaction":  # the rerun's end merged the parts
        assert len(list((sd / "results" / "logs").glob("*.parquet"))) == 1  # no temporary file left
    assert _raw_rows(project) == (N - 1, N - 1)  # on the raw files: every done row once
    rows = pb("sql", "SELECT count(*) AS n FROM results WHERE pb_status='done'", "--format",
              "csv",
              cwd=project).stdout.splitlines()
    assert rows[1] == str(N - 1)
    assert pb("doctor", cwd=project).returncode == 0
    _check_logs(project, _ids(project))


def test_pb_clean_compacts_the_database_with_progress(project):
    _spec(project, fn="store_tasks:quiet", n=3000)
    pb("run", "experiment.toml", "--quiet", cwd=project)
    _spec(project, fn="store_tasks:quiet", n=3000)
    db = project / ".pushbutton" / "state.sqlite"
    size = db.stat().st_size
    r = pb("clean", "logs", "--yes", cwd=project)
    assert "deleted experiment logs" in r.stdout
    for step in ("removing bundle folders and logs", "deleting 3,000 task rows",
                 "compacting the state database"):
        assert step in r.stderr, r.stderr  # each step is said, also without a terminal
    assert db.stat().st_size < size / 4, (db.stat().st_size, size)  # VACUUMed, not just freed
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    assert con.execute("PRAGMA freelist_count").fetchone() == (0,)
    assert list((project / ".pushbutton" / "logs" / "bundles").glob("*")) == []
    assert not (project / ".pushbutton" / "results" / "logs").exists()
