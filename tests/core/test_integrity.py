"""A damaged store is detected, never half-read; Parquet parts stay few and readers never see a
half-swapped set (issue 9, items 4 and 5)."""
import collections
import json
import os
import random
import shutil
import sqlite3
import threading
import time

import duckdb
import pytest

from pushbutton import Experiment, grid
from pushbutton.store import partset
from pushbutton.store import views as T
from pushbutton.core.errors import StoreError
from pushbutton.store.database import Store

from .conftest import pb, write

N = 600


def _spec(project, n=N, fn="tasks:counted", workers=2, extra=""):
    return write(project / "experiment.toml", f"""
name = "sq"
function = "{fn}"
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = {workers}
{extra}
""")


def _raw_rows(folder):
    """(rows, distinct task ids) over every Parquet file in the folder, listed or not."""
    files = [str(p) for p in folder.glob("*.parquet")]
    if not files:
        return 0, 0
    return duckdb.connect().execute("SELECT count(*), count(DISTINCT pb_task_id) FROM "
                                    "read_parquet(?, union_by_name=true)", [files]).fetchone()


def _env(project):
    return {"PB_COUNT_DIR": str(project)}


# -- item 4: damaged state database ---------------------------------------------------------
def test_damaged_state_database_is_reported_never_half_read(project):
    _spec(project)
    pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project))
    db_path = project / ".pushbutton" / "state.sqlite"
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    good = db_path.read_bytes()
    detected, first = 0, None
    for off in range(4096, len(good), 1024):  # 16 random bytes at every KiB past the header
        data = bytearray(good)
        data[off:off + 16] = random.Random(off).randbytes(16)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(str(db_path) + suffix):
                os.unlink(str(db_path) + suffix)
        db_path.write_bytes(bytes(data))
        store = None
        try:
            store = Store(project, create=False)
            df = T.results(store, 1, "sq")
        except StoreError as e:
            assert "state.sqlite" in str(e) and "fix:" in str(e), str(e)
            detected += 1
            first = first or off
            continue
        finally:
            if store is not None:
                store.close()
        # what is shown is whole: every task, every done one with its metric
        assert len(df) == N and (df["pb_status"] == "done").sum() == N, (off, len(df))
        assert df["sq"].notna().all(), off
    assert detected, "no corruption was detected at all"
    # the CLI: non-zero exit, a message naming the file, no traceback, no partial table
    data = bytearray(good)
    data[first:first + 16] = random.Random(first).randbytes(16)
    db_path.write_bytes(bytes(data))
    for cmd in (("results",), ("results", "--format", "csv"), ("status",)):
        r = pb(*cmd, cwd=project, check=False)
        assert r.returncode != 0 and "state.sqlite" in r.stderr, (cmd, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "pb_task_id" not in r.stdout, (cmd, r.stderr)
    r = pb("doctor", cwd=project, check=False)
    assert r.returncode == 1 and "state.sqlite" in r.stdout, (r.stdout, r.stderr)


# -- item 4: unreadable Parquet parts -------------------------------------------------------
def test_truncated_part_is_named_and_repaired(project):
    _spec(project, extra="bundle_size = 100")
    # the bundle folders are kept (a run retires them): repair re-ingests from their outcomes
    pb("run", "experiment.toml", "--quiet", cwd=project,
       env=dict(_env(project), PB_KEEP_BUNDLES="1"))
    folder = project / ".pushbutton" / "results" / "sq"
    import pyarrow.parquet as pq
    parts = sorted(folder.glob("e*.parquet"))
    bundle = {p: p.name.rsplit("-", 1)[0] for p in parts}
    kept = parts[0]  # the outcomes of one are still on disk, of the other not
    lost = next(p for p in parts if bundle[p] != bundle[kept])
    n_kept, n_lost = (pq.read_metadata(p).num_rows for p in (kept, lost))
    for p in (kept, lost):
        os.truncate(p, p.stat().st_size // 2)
    shutil.rmtree(project / ".pushbutton" / "bundles" / bundle[lost])
    for cmd in (("results",), ("sql", "SELECT count(*) FROM results"), ("report",)):
        r = pb(*cmd, cwd=project, check=False)
        assert r.returncode != 0 and kept.name in r.stderr and lost.name in r.stderr, \
            (cmd, r.stderr)
        assert "Traceback" not in r.stderr and "pb repair" in r.stderr, r.stderr
    with pytest.raises(StoreError, match=kept.name):
        Experiment("sq", function="tasks:counted", space=grid(i=range(N))).results()
    r = pb("doctor", cwd=project, check=False)
    assert r.returncode == 1 and kept.name in r.stdout and lost.name in r.stdout, r.stdout
    assert f"{n_kept + n_lost} done task(s) have no result row" in r.stdout, r.stdout
    r = pb("repair", cwd=project)
    assert "2 damaged file(s) moved aside" in r.stdout, r.stdout
    assert f"{n_kept} result row(s) re-ingested" in r.stdout and \
        f"{n_lost} task(s) marked pending" in r.stdout, r.stdout
    assert len(list((project / ".pushbutton" / "quarantine").rglob("*.parquet"))) == 2
    again = pb("repair", cwd=project).stdout  # safe to repeat: nothing left to do
    assert "0 damaged file(s)" in again and "0 result row(s)" in again and \
        "0 task(s) marked pending" in again, again
    before = collections.Counter(open(project / "executions.log").read().split())
    r = pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project))
    assert f"{N} done, 0 failed" in r.stdout, r.stdout
    after = collections.Counter(open(project / "executions.log").read().split())
    assert sum(after.values()) - sum(before.values()) == n_lost  # only the lost: recomputed
    assert pb("doctor", cwd=project).returncode == 0
    assert _raw_rows(folder) == (N, N)  # on the raw files: every row once
    out = pb("sql", "SELECT count(*) AS n, sum(sq) AS s FROM results", "--format", "csv",
             cwd=project).stdout.splitlines()
    assert [float(v) for v in out[1].split(",")] == [N, sum(i * i for i in range(N))]
    df = json.loads("[" + ",".join(pb("results", "--format", "json", cwd=project)
                                   .stdout.splitlines()) + "]")
    assert len(df) == N and all(r["sq"] == r["i"] ** 2 for r in df)


def test_repair_refuses_while_a_driver_runs(project):
    from pushbutton.store.lock import ExperimentLock
    _spec(project, n=10)
    pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project))
    store = Store(project)
    lock = ExperimentLock(store, 1, "sq").acquire()
    try:
        r = pb("repair", cwd=project, check=False)
        assert r.returncode != 0 and "already being run" in r.stderr, r.stderr
    finally:
        lock.release()


# -- item 4: valid JSON that is not an outcome ----------------------------------------------
@pytest.mark.parametrize("kill", [False, True])
def test_non_object_outcome_lines_are_damaged_lines_not_crashes(project, kill):
    n = 40
    write(project / "experiment.toml", f"""
name = "sq"
function = "integrity_tasks:poison"
[space]
grid = {{ i = {{ range = [0, {n}] }}, kill = [{'true' if kill else 'false'}] }}
[run]
workers = 1
bundle_size = {n}
""")
    r = pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project), check=False)
    if kill:
        assert r.returncode != 0  # the task killed its driver, mid-bundle
        outcomes = next((project / ".pushbutton" / "bundles").glob("*/outcomes.jsonl"))
        assert b"[1,2]\nnull\n" in outcomes.read_bytes()
        for _ in range(2):  # every resume reads past the lines
            r = pb("run", "experiment.toml", "--quiet", cwd=project, env=_env(project))
    assert r.returncode == 0 and f"{n} done, 0 failed" in r.stdout, (r.stdout, r.stderr)
    store = Store(project)
    assert store.db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0] == n
    assert store.db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 0
    kinds = collections.Counter(k for (k,) in store.db.execute("SELECT kind FROM events"))
    assert kinds["damaged-line"] >= 3, kinds
    assert _raw_rows(project / ".pushbutton" / "results" / "sq") == (n, n)
    runs = collections.Counter(open(project / "executions.log").read().split())
    assert len(runs) == n and sum(runs.values()) <= n + 1, runs  # task 5 again after a kill


# -- item 5: few parts during a run, readers during compaction -------------------------------
def _aggressive(monkeypatch, grace):
    monkeypatch.setattr(partset, "LEVEL0", 6)
    monkeypatch.setattr(partset, "FANOUT", 3)
    monkeypatch.setattr(partset, "EVERY_S", 0.0)
    monkeypatch.setattr(partset, "GRACE_S", grace)  # merged-away files kept for readers


def test_many_bundles_keep_a_bounded_number_of_parts(project, monkeypatch):
    _aggressive(monkeypatch, grace=0.0)  # (with a grace, + what is written in GRACE_S)
    n = 400
    exp = Experiment("many", function="tasks:slow", space=grid(i=range(n), t=[0.004]),
                     workers=2, bundle_size=1)
    folder = project / ".pushbutton" / "results" / "many"
    most, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            if folder.is_dir():
                most[0] = max(most[0], len(list(folder.glob("*.parquet"))))
            time.sleep(0.005)
    th = threading.Thread(target=watch)
    th.start()
    try:
        exp.run()
    finally:
        stop.set()
        th.join()
    # 6 small parts + 2 per level (3 levels for 400 rows) + what ingest adds per second
    assert 0 < most[0] <= 24, most[0]
    assert _raw_rows(folder) == (n, n)
    assert sorted(partset.listed(folder)) == sorted(p.name for p in folder.glob("*.parquet"))
    df = exp.results()
    assert len(df) == n and (df["i"] == df["i"].astype(int)).all() and df["pb_task_id"].is_unique


def test_readers_never_see_a_half_swapped_set(project, monkeypatch):
    _aggressive(monkeypatch, grace=1.0)
    n = 200
    exp = Experiment("race", function="tasks:slow", space=grid(i=range(n), t=[0.003]),
                     workers=2, bundle_size=1)
    exp.register()
    errors, reads, stop = [], [0], threading.Event()

    def reader():
        store = Store(project)  # a reader of its own, like another `pb results`
        last = 0
        try:
            while not stop.is_set():
                df = T.results(store, 1, "race")
                done = df[df["pb_status"] == "done"]
                if len(done):  # every done task with its metrics
                    assert done["pid"].notna().all() and done["i"].notna().all()
                n_sql = int(T.sql(store, "SELECT count(*) AS n FROM results",
                                  experiment="race")["n"][0])
                assert n_sql >= len(done) and n_sql >= last, (n_sql, len(done), last)
                last = n_sql
                reads[0] += 1
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            errors.append(repr(e))
        finally:
            store.close()
    ths = [threading.Thread(target=reader) for _ in range(2)]
    for th in ths:
        th.start()
    try:
        for rerun in (False, True):
            exp.run(rerun=rerun)
            for _ in range(3):  # and full compactions racing the readers
                from pushbutton.store import parts as R
                R.compact(project / ".pushbutton" / "results" / "race", min_parts=1)
    finally:
        stop.set()
        for th in ths:
            th.join()
    assert not errors, errors[:3]
    assert reads[0] > 10
    assert len(exp.results()) == n and int(exp.sql("SELECT count(*) AS n FROM results")["n"][0]) \
        == n


def test_compaction_merges_only_committed_parts(project):
    """A part written just before a crash (not committed) is re-written by the re-ingest under
    the same name; merging it would leave its rows twice on disk."""
    exp = Experiment("cm", function="tasks:square", space=grid(x=range(20)), workers=1,
                     bundle_size=2)
    exp.run()
    folder = project / ".pushbutton" / "results" / "cm"
    # one part per bundle, all committed but the first (as if the driver died before its
    # commit)
    import pyarrow as pa
    import pyarrow.parquet as pq
    old = partset.current(folder)
    t = pa.concat_tables([pq.read_table(folder / n) for n in old])
    names = []
    for bid in sorted(set(t["pb_bundle"].to_pylist())):
        part = t.filter(pq_eq(t, "pb_bundle", bid))
        name = f"{bid}-{0:012d}.parquet"
        pq.write_table(part, folder / name)
        names.append(name)
    for n in set(old) - set(names):
        (folder / n).unlink()
    partset.write_manifest(folder, names)
    db = exp.store.db
    db.execute("UPDATE bundles SET ingested=0 WHERE id=?", (names[0].rsplit("-", 1)[0],))
    merged = partset.compact(folder, committed=partset.committed_filter(db), full=True,
                             min_parts=2)
    assert merged == len(names) - 1 and names[0] in partset.listed(folder)
    assert _raw_rows(folder) == (20, 20)


def pq_eq(t, col, value):
    import pyarrow.compute as pc
    return pc.equal(t[col], value)


def test_compaction_keeps_the_rows_of_earlier_runs(project, monkeypatch):
    """Incremental and end-of-run merges keep one row per (task, bundle), as readers do: the
    rows a --rerun replaced stay readable with --run N."""
    _aggressive(monkeypatch, grace=0.0)
    n = 40
    exp = Experiment("rr", function="tasks:slow", space=grid(i=range(n), t=[0.0]), workers=2,
                     bundle_size=1)
    exp.run()
    exp.run(rerun=True)
    folder = project / ".pushbutton" / "results" / "rr"
    assert any(partset.level(x) >= 2 for x in partset.listed(folder))  # merged during runs
    from pushbutton.store import parts as R
    R.compact(folder, min_parts=1)  # the end-of-run merge, whatever the number of files
    names = partset.listed(folder)
    assert len(names) == 1 and names[0].startswith("compact-"), names
    assert _raw_rows(folder) == (2 * n, n)  # every task twice: once per run
    first, second = sorted(r["id"] for r in exp.store.runs(1))
    for run in (first, second):
        df = exp.results(run=run)
        assert len(df) == n and (df["pb_run_id"] == run).all() and df["pid"].notna().all()
    now = exp.results()
    assert len(now) == n and (now["pb_run_id"] == second).all()
    out = pb("results", "--run", first, "--format", "csv", cwd=project).stdout.splitlines()
    assert len(out) == n + 1, out[:3]


def test_a_done_tasks_row_is_the_one_of_its_bundle(project, monkeypatch):
    """After a --rerun, a task whose current row is lost is damaged even though the row of its
    earlier run is still there: that row is not its result."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    monkeypatch.setenv("PB_KEEP_BUNDLES", "1")  # repair re-ingests from the kept outcomes
    n = 20
    exp = Experiment("rb", function="tasks:counted", space=grid(i=range(n)), workers=1,
                     bundle_size=n)
    exp.run()
    exp.run(rerun=True)
    folder = project / ".pushbutton" / "results" / "rb"
    second = max(r["id"] for r in exp.store.runs(1))
    path = next(folder / p for p in partset.current(folder)
                if pq.read_table(folder / p)["pb_run_id"][0].as_py() == second)
    t = pq.read_table(path)
    lost = t["pb_task_id"][3].as_py()
    pq.write_table(t.filter(pc.not_equal(t["pb_task_id"], lost)), path)  # a valid file
    with pytest.raises(StoreError, match=r"1 done task of 'rb' have no result row.*" + lost):
        exp.results()
    r = pb("results", cwd=project, check=False)
    assert r.returncode != 0 and lost in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = pb("doctor", cwd=project, check=False)
    assert r.returncode == 1 and "1 done task(s) have no result row" in r.stdout, r.stdout
    r = pb("repair", cwd=project)
    assert "1 result row(s) re-ingested" in r.stdout, r.stdout  # from the outcomes on disk
    df = exp.results()
    assert len(df) == n and (df["pb_run_id"] == second).all() and df["sq"].notna().all()
    assert (df["sq"] == df["i"] ** 2).all()
    assert len(exp.results(run=min(r["id"] for r in exp.store.runs(1)))) == n
