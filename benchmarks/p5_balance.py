"""P5: a skewed sweep on SLURM (task durations grow 5x along one parameter): the static
contiguous plan vs pushbutton's balanced plan vs the ideal.

The sweep: grid k (100 values) x rep (10), task (k, rep) keeps a CPU busy for
base * (1 + 4 k / 99) seconds (5x from the first k to the last). Three runs on the same cluster,
each `pb run exp.toml --on TARGET --wait` from its start until every result is in the store:
  contiguous  target plan = "contiguous": array element i takes a contiguous run of the space
  balanced    the default plan on a first run (no task times known: serpentine deal)
  known       `--rerun` of the balanced experiment: dealt longest-expected first by the times
              the first run recorded
For each: makespan (whole command), its ratio to the ideal = sum of the recorded task times /
CPUs + the submission latency (from the command's start to the first task's start, measured
in that run), the busy time of each array element (recorded task times) and the latency.
Goal: balanced and known <= 1.15x the ideal.

    . .services/env.sh && python benchmarks/p5_balance.py          # 1,000 tasks, ~3 minutes
    python benchmarks/p5_balance.py --tasks 200 --base 0.01        # small scale, ~20 s

Results go to benchmarks/out/p5_balance.json as well as stdout.

Planning cost (`--planning N`, no SLURM needed): a store with N recorded tasks made by a real
local no-op run (or `--store DIR`, a project folder with one experiment whose results are in),
then the planner called directly as submit_pending calls it (execution/slurm/recorded.py read
once + balance.plan), each case in a fresh process: a retry round of 100 pending tasks (the
first in a process, which fits the predictor, and a later one), and a `--rerun` of all N (own
times looked up), against the reference of the same run: pyarrow reading just the columns
(pb_task_id, pb_duration_s, pb_finished_at) of the Parquet parts. Peak RSS over the process's
RSS before it.

    python benchmarks/p5_balance.py --planning 100000                 # ~1 minute
    python benchmarks/p5_balance.py --planning 1000000 --store DIR    # reuse a store
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = '''
import time


def work(k, rep, base, kmax):
    """Busy (not sleeping) for base * (1 + 4 k / kmax) seconds: 5x along k."""
    s = base * (1 + 4 * k / kmax)
    end = time.perf_counter() + s
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"spins": n}
'''


def pb(args, cwd, timeout=1800):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"pb {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def project(base: Path, name: str, n: int, task_s: float) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / "bench_task.py").write_text(TASK)
    ks = max(1, n // 10)
    (d / "exp.toml").write_text(
        f'name = "{name}"\nfunction = "bench_task:work"\n[space]\n'
        f'grid = {{ k = {{ range = [0, {ks}] }}, rep = {{ range = [0, {n // ks}] }}, '
        f'base = [{task_s}], kmax = [{max(1, ks - 1)}] }}\n')
    (d / "pushbutton-targets.toml").write_text(
        f'[targets.contig]\npython = "{sys.executable}"\nplan = "contiguous"\n'
        'poll_interval = 0.5\n')
    return d


def measure(d: Path, name: str, target: str, cpus: int, rerun: bool = False) -> dict:
    """One `pb run --wait`, with the facts its results recorded (raw Parquet parts)."""
    import pyarrow.parquet as pq
    dry = pb(["run", "exp.toml", "--on", target, "--dry-run"] + (["--rerun"] if rerun else []), d)
    t_start = time.time()
    pb(["run", "exp.toml", "--on", target, "--wait", "--quiet"] + (["--rerun"] if rerun else []),
       d)
    t_end = time.time()
    db = sqlite3.connect(d / ".pushbutton" / "state.sqlite")
    (run,) = db.execute("SELECT max(id) FROM runs").fetchone()
    bundles = {b for (b,) in db.execute("SELECT id FROM bundles WHERE run=?", (run,))}
    db.close()
    rows = []
    for f in sorted((d / ".pushbutton" / "results" / name).glob("*.parquet")):
        rows += [r for r in pq.read_table(f, columns=["pb_bundle", "pb_duration_s",
                                                       "pb_finished_at"]).to_pylist()
                 if r["pb_bundle"] in bundles]
    busy = collections.Counter()
    for r in rows:
        busy[r["pb_bundle"]] += r["pb_duration_s"]
    first = min(r["pb_finished_at"] - r["pb_duration_s"] for r in rows)
    last = max(r["pb_finished_at"] for r in rows)
    work = sum(r["pb_duration_s"] for r in rows)
    latency = first - t_start
    ideal = work / cpus + latency
    return {"target": target, "tasks": len(rows), "bundles": len(bundles),
            "makespan_s": t_end - t_start, "last_task_end_s": last - t_start,
            "task_time_s": work, "latency_s": latency, "ideal_s": ideal,
            "ratio": (t_end - t_start) / ideal, "ratio_last_end": (last - t_start) / ideal,
            "busy_s": sorted(busy.values(), reverse=True),
            "plan": [ln.strip() for ln in dry.splitlines() if "dealt" in ln]}


PLAN_STEP = r"""
import json, resource, sys, time
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from pathlib import Path
what, root, name, k = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
from pushbutton.store.database import Store
from pushbutton.store import parts
import pyarrow.compute, pyarrow.parquet as pq  # imported in a harvest process anyway
st = Store(root, create=False, peek=True)
eid = st.experiment(name)
rows = st.db.execute("SELECT rowid, id, params, attempts, attempt0, gen FROM tasks WHERE exp=? "
                     "ORDER BY idx LIMIT ?", (eid, k)).fetchall() if k else []
if what == "rerun":  # what `pb run --rerun` sets: attempt0 = attempts (done attempts reset)
    rows = [(r, i, p, a, a, g) for r, i, p, a, _, g in rows]
r0 = rss()
t = time.perf_counter()
if what == "reference":
    n = sum(pq.ParquetFile(f).read(columns=["pb_task_id", "pb_duration_s",
                                            "pb_finished_at"]).num_rows
            for f in parts.parts(st.dir / "results" / name))
    out = {"rows": n}
else:
    from pushbutton.execution.slurm import balance, recorded
    per = max(1, -(-len(rows) // 2))
    for again in range(2 if what == "retry" else 1):  # a harvest's next round: fitted
        t = time.perf_counter()
        rec = recorded.read(st, eid, name)
        groups, pred, loads = balance.plan(st, eid, name, rows, per, rec=rec)
        if not again:
            first = time.perf_counter() - t
    out = {"first_s": first, "mean_s": rec.mean, "recorded": rec.n, "bundles": len(groups),
           "fitted_on": pred.n if pred else 0}
out.update(seconds=time.perf_counter() - t, rss_before_mb=r0, rss_peak_mb=rss())
print(json.dumps(out))
"""


def planning(a) -> None:
    """The planner's cost at N recorded tasks (see the module's doc)."""
    base = None
    if a.store:
        root = Path(a.store).resolve()
    else:
        base = Path(tempfile.mkdtemp(prefix="pb-p5p-"))
        root = base / "plan"
        root.mkdir()
        side = max(1, round(a.planning ** 0.5))
        (root / "tasks.py").write_text("def noop(a, b):\n    return {'y': a + b}\n")
        (root / "experiment.toml").write_text(
            'name = "plan"\nfunction = "tasks:noop"\n[space]\n'
            f'grid = {{ a = {{ range = [0, {side}] }}, b = {{ range = [0, '
            f'{-(-a.planning // side)}] }} }}\n[run]\nmax_tasks = 100000000\n')
        t = time.time()
        pb(["run", "experiment.toml", "--yes", "--quiet"], root, timeout=7200)
        print(f"store built by a local no-op run in {time.time() - t:.1f} s")
    try:
        db = sqlite3.connect(root / ".pushbutton" / "state.sqlite")
        (name, n), = db.execute("SELECT e.name, count(*) FROM experiments e JOIN tasks t ON "
                                "t.exp = e.id GROUP BY e.id ORDER BY count(*) DESC LIMIT 1")
        db.close()
        res = {"recorded_tasks": n, "load_before": os.getloadavg()}
        for key, what, k in (("reference", "reference", 0), ("retry", "retry", 100),
                             ("rerun", "rerun", n)):
            r = subprocess.run([sys.executable, "-c", PLAN_STEP, what, str(root), name, str(k)],
                               capture_output=True, text=True, timeout=3600)
            if r.returncode:
                raise SystemExit(r.stderr)
            res[key] = json.loads(r.stdout.strip().splitlines()[-1])
        res["load_after"] = os.getloadavg()
    finally:
        if base:
            shutil.rmtree(base, ignore_errors=True)
    ref = res["reference"]["seconds"]
    print(f"P5 planning at {n:,} recorded tasks (load {res['load_before'][0]:.2f} before, "
          f"{res['load_after'][0]:.2f} after)")
    print(f"  reference: pyarrow reads pb_task_id, pb_duration_s, pb_finished_at  {ref:7.3f} s  "
          f"peak "
          f"+{res['reference']['rss_peak_mb'] - res['reference']['rss_before_mb']:.0f} MB")
    m = res["retry"]
    print(f"  retry round, 100 pending: first in a process (fits the predictor) "
          f"{m['first_s']:7.3f} s (/ reference {m['first_s'] / ref:.2f}); a later round "
          f"{m['seconds']:7.3f} s (/ reference {m['seconds'] / ref:.2f}); peak "
          f"+{m['rss_peak_mb'] - m['rss_before_mb']:.0f} MB; {m['bundles']} bundles, fitted "
          f"on {m['fitted_on']:,} task times; mean {m['mean_s']:.3g} s")
    m = res["rerun"]
    print(f"  --rerun, {n:,} pending (own times looked up, dealt LPT): {m['seconds']:7.3f} s "
          f"(/ reference {m['seconds'] / ref:.2f}); peak "
          f"+{m['rss_peak_mb'] - m['rss_before_mb']:.0f} MB (process {m['rss_peak_mb']:.0f} MB)"
          f"; {m['bundles']} bundles")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).with_name("p5_planning.json").write_text(json.dumps(res, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Small scale: --tasks 200 --base 0.01 (about 20 s).")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--base", type=float, default=0.027,
                    help="seconds of the shortest task (the longest is 5x); default 0.027")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "p5_balance.json"))
    ap.add_argument("--planning", type=int, metavar="N",
                    help="measure the planner's cost at N recorded tasks instead (no SLURM)")
    ap.add_argument("--store", metavar="DIR",
                    help="with --planning: a project folder whose results are in (reused)")
    a = ap.parse_args()
    if a.planning or a.store:
        return planning(a)
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        raise SystemExit("no SLURM here: run scripts/setup.d/20-slurm.sh and source "
                         ".services/env.sh")
    info = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout
    cpus = int(info.split("/")[-1]) if "/" in info else 1
    base = Path(tempfile.mkdtemp(prefix="pb-p5-"))
    res = {"tasks": a.tasks, "base_s": a.base, "cluster_cpus": cpus,
           "load_before": os.getloadavg()}
    try:
        dc = project(base, "contig", a.tasks, a.base)
        res["contiguous"] = measure(dc, "contig", "contig", cpus)
        db_ = project(base, "balanced", a.tasks, a.base)
        res["balanced"] = measure(db_, "balanced", "local-slurm", cpus)
        res["known"] = measure(db_, "balanced", "local-slurm", cpus, rerun=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    res["load_after"] = os.getloadavg()
    print(f"P5 ({a.tasks} tasks, {a.base:g}-{5 * a.base:g} s each, growing 5x along k; "
          f"{cpus} CPUs; load {res['load_before'][0]:.2f} before, "
          f"{res['load_after'][0]:.2f} after)")
    for key in ("contiguous", "balanced", "known"):
        m = res[key]
        busy = ", ".join(f"{b:.1f}" for b in m["busy_s"])
        print(f"  {key:<10} makespan {m['makespan_s']:6.2f} s  ideal {m['ideal_s']:6.2f} s  "
              f"ratio {m['ratio']:.3f} (last task end: {m['ratio_last_end']:.3f})  "
              f"submission latency {m['latency_s']:.2f} s  task time {m['task_time_s']:.1f} s  "
              f"busy per element [{busy}] s")
        for ln in m["plan"]:
            print(f"             plan: {ln}")
    print(f"  goal: balanced and known <= 1.15x the ideal; contiguous / balanced makespan: "
          f"{res['contiguous']['makespan_s'] / res['balanced']['makespan_s']:.2f}x")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
