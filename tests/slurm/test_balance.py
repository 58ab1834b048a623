"""Balanced batch plans on SLURM (execution/slurm/balance.py): a skewed sweep keeps every array
element about equally busy (from the recorded task times, not the wall clock), one array
element killed with SIGKILL loses and duplicates nothing, and a second run deals the tasks
longest-expected first from the first run's times. The unit tests need no cluster."""
import collections
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from .conftest import pb


# -- the plan itself (no cluster) -----------------------------------------------------------
@pytest.fixture
def balance():
    from pushbutton.execution.slurm import balance
    return balance


def _loads(groups, cost):
    return [sum(cost(r) for r in g) for g in groups]


@pytest.mark.parametrize("axis", ["outer", "inner"])
def test_first_run_deal_spreads_a_cost_growing_along_either_axis(balance, axis):
    rows = [(a, b) for a in range(25) for b in range(4)]  # the space's order: a outer
    cost = (lambda r: 1 + 4 * r[0] / 24) if axis == "outer" else (lambda r: 1 + 4 * r[1] / 3)
    for k in (2, 3, 5):
        per = -(-len(rows) // k)
        got = _loads(balance.deal(rows, per), cost)
        assert len(got) == k and sum(len(g) for g in balance.deal(rows, per)) == len(rows)
        # apart by at most two of the longest tasks, however long the bundles
        assert max(got) - min(got) <= 2 * 5, (k, got)
    contiguous = _loads(balance.deal(rows, 50, "contiguous"), cost)
    if axis == "outer":
        assert max(contiguous) - min(contiguous) > 20 * 5  # what the old plan did


def test_known_times_are_dealt_longest_first_to_the_least_loaded_bundle(balance):
    rows = list(range(40))
    times = [0.1 + (i * 37 % 40) / 10 for i in rows]  # skewed, in no particular order
    groups = balance.deal(rows, 20, "balanced", times)
    loads = [sum(times[r] for r in g) for g in groups]
    assert sorted(r for g in groups for r in g) == rows
    assert max(loads) - min(loads) <= max(times) * 0.05
    for g in groups:  # each bundle runs its longest tasks first
        assert [times[r] for r in g] == sorted((times[r] for r in g), reverse=True)
    assert loads == sorted(loads, reverse=True)  # the busiest element first in the array


def test_predictor_uses_own_times_then_main_effects_of_the_parameters(balance):
    samples = [({"n": n, "m": m}, 0.01 * n * m) for n in (1, 2, 4) for m in (1, 3)]
    p = balance.Predictor(samples)
    assert p({"n": 4, "m": 3}) == pytest.approx(0.12, rel=1e-6)  # exact for a product
    assert p({"n": 4.2, "m": 1}) == pytest.approx(p({"n": 4, "m": 1}))  # nearest known n
    assert p({"n": 2, "m": 1}) < p({"n": 4, "m": 1}) < p({"n": 4, "m": 3})
    rows = [(0, "a", json.dumps({"n": 1, "m": 1})), (1, "b", json.dumps({"n": 2, "m": 3}))]
    assert balance.predictions(p, rows, {"a": 7.0}) == [7.0, pytest.approx(0.06)]  # own time
    assert balance.predictions(None, rows, {}) is None


def test_recorded_times_last_one_wins_and_a_retry_round_reads_no_task_ids(project, monkeypatch):
    """The planner's reading (execution/slurm/recorded.py) on a store made by real local runs:
    the mean and each task's own time from the raw Parquet rows (the later run's row wins);
    a harvest's later retry round (predictor fitted, tasks never done) reads the duration
    column only, once, and the first round reads the task ids once."""
    import pyarrow.parquet as pq
    from pushbutton.execution.slurm import balance, recorded
    from pushbutton.store.database import Store
    spec = _spec(project, "rec", 12)
    pb("run", spec, "--quiet")
    pb("run", spec, "--rerun", "--quiet")  # two Parquet rows per task
    rows = _parts(project, "rec")
    assert len(rows) == 24
    last = {}
    for r in sorted(rows, key=lambda r: r["pb_finished_at"]):
        last[r["pb_task_id"]] = r["pb_duration_s"]
    store = Store(project, create=False)
    eid = store.experiment("rec")
    reads = []
    real = pq.ParquetFile.read
    monkeypatch.setattr(pq.ParquetFile, "read",
                        lambda self, columns=None, **kw: reads.append(tuple(columns)) or
                        real(self, columns=columns, **kw))
    rec = recorded.read(store, eid, "rec")
    assert rec.mean == pytest.approx(sum(r["pb_duration_s"] for r in rows) / 24)
    ids = sorted(last)
    assert rec.own(ids) == [last[t] for t in ids]  # the rerun's times, not the first run's
    assert rec.own(ids, [False] * 12) == [None] * 12  # never done before: not looked up
    assert rec.own(["nope"]) == [None]
    tasks = store.db.execute("SELECT rowid, id, params, attempts, 0, gen FROM tasks WHERE "
                             "exp=? ORDER BY idx", (eid,)).fetchall()  # as retries: attempt0=0
    from pushbutton.store import parts
    f = len(parts.parts(project / ".pushbutton" / "results" / "rec"))
    dur = [("pb_duration_s",)] * f
    both = [("pb_task_id", "pb_duration_s", "pb_finished_at")] * f
    assert f >= 1 and reads == dur + both, reads  # the ids once, when first asked for
    reads.clear()
    balance._FITS.clear()
    for _ in range(3):  # three submit rounds of one harvest process
        rec = recorded.read(store, eid, "rec")  # what submit_pending reads, once a round
        groups, pred, loads = balance.plan(store, eid, "rec", tasks[:4], 2, rec=rec)
        assert pred is not None and pred.n == 12 and len(groups) == 2
    assert reads == dur + both + dur + dur, reads  # the ids for the first round's fit only


# -- on the test cluster ----------------------------------------------------------------------
def _spec(proj: Path, name: str, n: int, fn: str = "nap", retries: int = 0,
          extra: str = "") -> Path:
    """Task x of n sleeps 0.02 .. 0.1 s, growing 5x along x (the space's order)."""
    s = [round(0.02 * (1 + 4 * i / (n - 1)), 4) for i in range(n)]
    p = proj / f"{name}.toml"
    p.write_text(f'name = "{name}"\nfunction = "slurm_tasks:{fn}"\n[space]\n'
                 f'zip = {{ x = {list(range(n))}, s = {s} }}\n{extra}'
                 f'[resources]\nretries = {retries}\n')
    return p


def _db(proj: Path):
    import sqlite3
    return sqlite3.connect(proj / ".pushbutton" / "state.sqlite")


def _parts(proj: Path, name: str) -> list[dict]:
    """The raw Parquet rows (recorded facts): task, bundle, duration, finish time."""
    import pyarrow.parquet as pq
    out = []
    for f in sorted((proj / ".pushbutton" / "results" / name).glob("*.parquet")):
        out += pq.read_table(f, columns=["pb_task_id", "pb_bundle", "pb_duration_s",
                                         "pb_finished_at"]).to_pylist()
    return out


def _busy(proj: Path, name: str, bundles=None) -> dict:
    """Recorded task time per bundle (array element), of the given bundles."""
    busy = collections.Counter()
    for r in _parts(proj, name):
        if bundles is None or r["pb_bundle"] in bundles:
            busy[r["pb_bundle"]] += r["pb_duration_s"]
    return dict(busy)


def _contig_target(proj: Path) -> None:
    (proj / "pushbutton-targets.toml").write_text(
        f'[targets.contig]\npython = "{sys.executable}"\nplan = "contiguous"\n'
        'poll_interval = 0.5\n')


@pytest.mark.slurm
def test_skewed_sweep_keeps_array_elements_equally_busy(slurm, project):
    cpus = 2
    spec = _spec(project, "skew", 40)
    dry = pb("run", spec, "--on", "local-slurm", "--dry-run").stdout
    pb("run", spec, "--on", "local-slurm", "--wait", "--quiet", timeout=240)
    busy = _busy(project, "skew")
    assert len(busy) == cpus, busy
    assert max(busy.values()) / min(busy.values()) < 1.15, busy
    assert "2 bundles of 20 tasks" in dry and "serpentine" in dry, dry  # what it planned
    # the same sweep under the old contiguous plan: one element does about twice the work
    _contig_target(project)
    spec2 = _spec(project, "skewc", 40)
    assert "contiguous" in pb("run", spec2, "--on", "contig", "--dry-run").stdout
    pb("run", spec2, "--on", "contig", "--wait", "--quiet", timeout=240)
    busy_c = _busy(project, "skewc")
    assert len(busy_c) == cpus and max(busy_c.values()) / min(busy_c.values()) > 1.6, busy_c


def _worker_pid(bundle_dir: Path) -> int | None:
    """The pid of the worker running this bundle (its command line names the folder)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"worker.py") for a in argv) and str(bundle_dir).encode() in argv:
            return int(d.name)
    return None


@pytest.mark.slurm
def test_array_element_killed_with_sigkill_runs_each_task_once(slurm, project):
    from .test_slurm_recovery import executions, parquet_rows
    n = 24
    p = project / "killed.toml"
    p.write_text('name = "killed"\nfunction = "slurm_tasks:counted"\n[space]\n'
                 f'grid = {{ x = {{ range = [0, {n}] }}, log = ["{project / "executions.log"}"]'
                 ', s = [0.25] }\n[resources]\nretries = 1\n')
    pb("run", p, "--on", "local-slurm", "--quiet")  # fire and forget (+ background harvester)
    db = _db(project)
    bundles = [Path(d) for (d,) in db.execute("SELECT dir FROM bundles ORDER BY id")]
    assert len(bundles) == 2
    victim, pid = bundles[1], None
    deadline = time.time() + 60
    while time.time() < deadline:  # the victim is inside its third task
        out = victim / "starts.jsonl"
        if out.exists() and out.read_text().count('"ev":"start"') >= 3:
            pid = _worker_pid(victim)
            if pid:
                break
        time.sleep(0.05)
    assert pid, "the victim's worker did not start"
    os.kill(pid, signal.SIGKILL)
    pb("harvest", "killed", "--wait", timeout=240)
    ids = parquet_rows(project, "killed")  # raw Parquet parts: each task exactly once
    assert len(ids) == n and len(set(ids)) == n, collections.Counter(ids).most_common(3)
    runs = executions(project)
    assert set(runs) == {str(x) for x in range(n)}
    assert sum(runs.values()) - n <= 1, runs  # only the task that was killed ran again
    kinds = [k for (k,) in db.execute("SELECT kind FROM attempts")]
    assert kinds in ([], ["signal"]), kinds
    assert db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0] == n
    (cause,), = db.execute("SELECT cause FROM bundles WHERE state='failed'").fetchall()
    assert "SIGKILL" in cause, cause  # the element's death was seen, its tasks went out again


@pytest.mark.slurm
def test_second_run_deals_longest_first_from_the_first_runs_times(slurm, project):
    n = 24
    # durations grow with x, but the space lists x in a scrambled order
    xs = [i * 7 % n for i in range(n)]
    s = [round(0.01 + 0.1 * x / (n - 1), 4) for x in xs]
    p = project / "lpt.toml"
    p.write_text('name = "lpt"\nfunction = "slurm_tasks:nap"\n[space]\n'
                 f'zip = {{ x = {xs}, s = {s} }}\n'
                 '[run]\nbundle_size = 12\n')  # two bundles both times: the deal is tested
    pb("run", p, "--on", "local-slurm", "--wait", "--quiet", timeout=240)
    dry = pb("run", p, "--on", "local-slurm", "--dry-run", "--rerun").stdout
    assert "longest-expected first" in dry and f"from {n} recorded task times" in dry, dry
    pb("run", p, "--on", "local-slurm", "--rerun", "--wait", "--quiet", timeout=240)
    db = _db(project)
    (run2,) = db.execute("SELECT max(id) FROM runs").fetchone()
    second = {b for (b,) in db.execute("SELECT id FROM bundles WHERE run=?", (run2,))}
    rows = _parts(project, "lpt")
    prev = {r["pb_task_id"]: r["pb_duration_s"] for r in rows if r["pb_bundle"] not in second}
    assert len(prev) == n and len(second) == 2
    loads = []
    for b in sorted(second):
        ran = sorted((r for r in rows if r["pb_bundle"] == b), key=lambda r: r["pb_finished_at"])
        times = [prev[r["pb_task_id"]] for r in ran]  # in the order they ran the second time
        assert times == sorted(times, reverse=True), times  # longest first
        loads.append(sum(times))
    assert max(loads) - min(loads) < 0.15, loads  # dealt by the first run's times
    busy = _busy(project, "lpt", second)  # and the work recorded in the second run balances
    assert max(busy.values()) / min(busy.values()) < 1.15, busy


@pytest.mark.slurm
def test_second_run_bundle_sizes_follow_the_first_runs_measured_times(slurm, project):
    """A done task's time is recorded in the Parquet results only (not the tasks table's
    t0/t1): the bundle sizing reads it there, so a second run is sized by the first one's
    measured times instead of planned as a first run again."""
    from pushbutton.execution.slurm import submit
    from pushbutton.store.database import Store
    n = 24
    spec = _spec(project, "sized", n)  # 0.02 .. 0.1 s each: about 1.4 s of work in all
    pb("run", spec, "--on", "local-slurm", "--wait", "--quiet", timeout=240)
    db = _db(project)
    assert [k for (k,) in db.execute("SELECT n_tasks FROM bundles")] == [12, 12]  # unknown
    rows = _parts(project, "sized")
    mean = sum(r["pb_duration_s"] for r in rows) / len(rows)
    assert len(rows) == n and 0.015 < mean < 1.0, mean
    store = Store(project, create=False)
    assert submit.mean_duration(store, store.experiment("sized")) == pytest.approx(mean)
    dry = pb("run", spec, "--on", "local-slurm", "--dry-run", "--rerun").stdout
    assert f"tasks took {mean:.3g} s on average so far" in dry, dry
    assert "1 bundle of 24 tasks" in dry, dry
    pb("run", spec, "--on", "local-slurm", "--rerun", "--wait", "--quiet", timeout=240)
    (run2,) = db.execute("SELECT max(id) FROM runs").fetchone()
    # 24 x the measured mean is under the 5 s of work a bundle is given: one bundle, not one
    # per CPU as for tasks of unknown length
    assert [k for (k,) in db.execute("SELECT n_tasks FROM bundles WHERE run=?", (run2,))] == [n]
    assert db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0] == n


def test_unknown_plan_is_a_clear_error(project):
    (project / "pushbutton-targets.toml").write_text('[targets.hpc]\nplan = "lpt"\n')
    spec = _spec(project, "bad", 4)
    r = pb("run", spec, "--on", "hpc", "--dry-run", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "pushbutton-targets.toml" in r.stderr and "targets.hpc.plan" in r.stderr
    assert '"balanced" (the default) or "contiguous"' in r.stderr
