"""P7: pushbutton on Dask at scale, against the local backend and a hand-written Dask loop.

Measured in one run, each sweep a whole process (python start-up, imports, cluster start):
  local   `pb run` of a no-op sweep of --n tasks on the local backend (W workers)
  dask    the same sweep with `--on` a Dask target `address = "local"` (a LocalCluster of W
          single-threaded worker processes, started by the run)
  hand    a hand-written loop: LocalCluster(W) + client.map(f, range(k), batch_size=4096) +
          as_completed(...).batches(), on --hand-n tasks (it costs milliseconds per task, so it
          runs on fewer tasks), scaled to --n: its whole process once plus its loop's time
          times n/k - 1 (said so in its line, with the raw figures)
Then, on a LocalCluster this process starts (same W), a sweep whose task durations grow 5x along
one parameter (sleeps of --skew-ms .. 5 x --skew-ms): its makespan (first task start to last task
end, from the recorded task times) against the ideal (total task time / W, plus the submission
latency: first bundle submitted to its first task's start); and the bytes of each submitted call
as the scheduler holds it (function + arguments), next to the code archive's size (the project
holds a 2 MB incompressible .py file), and how often the code reached each worker.

    python benchmarks/p7_dask.py                          # 10^6 tasks, 1 rep (minutes)
    python benchmarks/p7_dask.py --n 100000 --reps 3      # development scale
    python benchmarks/p7_dask.py --n 20000 --hand-n 2000 --reps 1 --skew-n 50   # quick
Prints medians, the ratios dask/local and hand/dask, makespan/ideal and the raw figures.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TASKS = textwrap.dedent('''
    import time

    def noop(i):
        return {"i": i}

    def nap(i, s=0.0):
        time.sleep(s)
        return {"i": i}
''')

HAND = textwrap.dedent('''
    import os, sys, time
    sys.path.insert(0, os.getcwd())
    from distributed import Client, LocalCluster, as_completed
    import tasks
    if __name__ == "__main__":
        n, w = int(sys.argv[1]), int(sys.argv[2])
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \\
                Client(cluster) as client:
            t = time.perf_counter()
            futs = client.map(tasks.noop, range(n), batch_size=4096)
            out = []
            for batch in as_completed(futs).batches():
                out.extend(f.result() for f in batch)
            print(time.perf_counter() - t)  # the loop alone: what scales with n
        assert len(out) == n
''')

SPEC = '''
name = "p7"
function = "tasks:noop"
[space]
grid = {{ i = {{ range = [0, {n}] }} }}
[run]
workers = {w}
'''

SKEW = '''
name = "p7skew"
function = "tasks:nap"
[space]
grid = {{ s = [{levels}], i = {{ range = [0, {per}] }} }}
'''


def timed(argv, cwd, out=False):
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
    return (time.perf_counter() - t, r.stdout) if out else time.perf_counter() - t


def targets(d: Path, w: int, address: str = "local"):
    (d / "pushbutton-targets.toml").write_text(
        f'[targets.dl]\nscheduler = "dask"\naddress = "{address}"\nworkers = {w}\n')


def noop_sweeps(d: Path, args) -> dict:
    py, w = sys.executable, args.workers
    (d / "experiment.toml").write_text(SPEC.format(n=args.n, w=w))
    targets(d, w)
    times = {"local": [], "dask": [], "hand": []}
    for _ in range(args.reps):  # interleaved, so load drifts hit every method alike
        for m, extra in (("local", []), ("dask", ["--on", "dl"])):
            shutil.rmtree(d / ".pushbutton", ignore_errors=True)
            times[m].append(timed([py, "-m", "pushbutton", "run", "experiment.toml", "--quiet",
                                   *extra], d))
        # start-up once, the loop scaled: whole(k) + loop(k) * (n/k - 1)
        whole, out = timed([py, "hand.py", str(args.hand_n), str(w)], d, out=True)
        loop = float(out.split()[-1])
        times["hand"].append(whole + loop * (args.n / args.hand_n - 1))
        times.setdefault("hand_raw", []).append((whole, loop))
    shutil.rmtree(d / ".pushbutton", ignore_errors=True)
    return times


def skewed(d: Path, args) -> dict:
    """The skewed sweep on a LocalCluster of this process, with the submitted calls' sizes
    recorded on its scheduler."""
    import distributed
    from distributed.diagnostics.plugin import SchedulerPlugin
    from distributed.protocol.pickle import dumps

    class CallSizes(SchedulerPlugin):
        def __init__(self, scheduler):
            self.scheduler, self.sizes = scheduler, []

        def transition(self, key, start, finish, *a, **kw):
            if finish == "processing" and str(key).startswith("pb-"):
                ts = self.scheduler.tasks.get(key)
                if ts is not None and ts.run_spec is not None:
                    self.sizes.append(len(dumps(ts.run_spec)))

    blob = base64.b64encode(os.urandom(1_500_000)).decode()
    (d / "blob.py").write_text(f"DATA = {blob!r}\n")  # a 2 MB .py file: the archive is big
    levels = ", ".join(str(args.skew_ms / 1000 * k) for k in (1, 2, 3, 4, 5))
    (d / "experiment.toml").write_text(SKEW.format(levels=levels, per=args.skew_n // 5))
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        sizes = CallSizes(cluster.scheduler)
        cluster.scheduler.add_plugin(sizes, name="p7-call-sizes")
        targets(d, args.workers, cluster.scheduler_address)
        shutil.rmtree(d / ".pushbutton", ignore_errors=True)
        timed([sys.executable, "-m", "pushbutton", "run", "experiment.toml", "--on", "dl",
               "--quiet"], d)
        with distributed.Client(cluster.scheduler_address) as c:
            arrivals = c.run(lambda dask_worker: sum(
                getattr(dask_worker, "_pushbutton_arrivals", {}).values()))
    from pushbutton import load
    from pushbutton.execution.backends.dask import code_zip
    from pushbutton.store.database import Store
    df = load(d / "experiment.toml").results()
    t1 = df["pb_finished_at"]
    t0 = t1 - df["pb_duration_s"]
    db = Store(d).db
    first_submit = db.execute("SELECT min(submitted) FROM bundles").fetchone()[0]
    bundles = db.execute("SELECT count(*) FROM bundles").fetchone()[0]
    return {"span": t1.max() - t0.min(), "busy": df["pb_duration_s"].sum(),
            "latency": t0.min() - first_submit, "bundles": bundles, "sizes": sizes.sizes,
            "archive": len(code_zip(d)), "arrivals": arrivals, "tasks": len(df)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="no-op tasks (default 10^6)")
    ap.add_argument("--hand-n", type=int, default=None,
                    help="tasks of the hand-written loop, scaled to --n (default min(n, "
                         "20000))")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--skew-n", type=int, default=200, help="tasks of the skewed sweep")
    ap.add_argument("--skew-ms", type=float, default=20,
                    help="shortest skewed task (ms); the longest is 5x")
    args = ap.parse_args()
    args.hand_n = args.hand_n or min(20_000, args.n)
    d = Path(tempfile.mkdtemp(prefix="pb-p7-"))
    (d / "tasks.py").write_text(TASKS)
    (d / "hand.py").write_text(HAND)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}")
    times = noop_sweeps(d, args)
    med = {m: statistics.median(v) for m, v in times.items() if m != "hand_raw"}
    print(f"\nP7 no-op sweep of {args.n} tasks, {args.workers} workers, medians of {args.reps} "
          "(whole process)")
    print(f"  local  {med['local']:9.2f} s   raw {[round(x, 2) for x in times['local']]}")
    print(f"  dask   {med['dask']:9.2f} s   raw {[round(x, 2) for x in times['dask']]}")
    raw = ", ".join(f"{w:.2f} s whole / {lp:.2f} s loop" for w, lp in times["hand_raw"])
    print(f"  hand   {med['hand']:9.2f} s   (client.map + as_completed.batches measured on "
          f"{args.hand_n} tasks: {raw}; its loop scaled x{args.n / args.hand_n:g})")
    print(f"  ratio dask/local {med['dask'] / med['local']:.2f}   (goal <= 2)")
    print(f"  ratio hand/dask  {med['hand'] / med['dask']:.1f}")
    s = skewed(d, args)
    ideal = s["busy"] / args.workers + s["latency"]
    sz = sorted(s["sizes"])
    print(f"\nP7 skewed sweep: {s['tasks']} tasks of {args.skew_ms:g}..{5 * args.skew_ms:g} ms "
          f"(5x along one parameter), {args.workers} workers, {s['bundles']} bundles")
    print(f"  makespan {s['span']:.2f} s, ideal {ideal:.2f} s (task time {s['busy']:.2f} s / "
          f"{args.workers} + submission latency {s['latency']:.3f} s)")
    print(f"  ratio makespan/ideal {(s['span'] + s['latency']) / ideal:.3f}   (goal <= 1.15)")
    print(f"  bytes per submitted call: median {statistics.median(sz):.0f}, max {sz[-1]} "
          f"({len(sz)} calls); code archive {s['archive']} bytes, reached the workers "
          f"{sorted(s['arrivals'].values())} times each")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
