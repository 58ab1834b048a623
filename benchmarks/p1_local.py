"""P1: overhead of the local backend, every task fully recorded in the store.

Side by side in one run, each as a whole process (python start-up and imports included):
  bare    ProcessPoolExecutor.map with chunking (the limit: no bookkeeping at all)
  joblib  Parallel(n_jobs=W)(delayed(f)(i) ...)
  submitit LocalExecutor, measured on a few tasks and extrapolated (it is ~0.2 s per task)
  pb      `pb run` on a fresh store: register, bundle, run, ingest into SQLite + Parquet

    python benchmarks/p1_local.py                 # (a) 10^4 x 10 ms and (b) 10^4 no-op, 3 reps
    python benchmarks/p1_local.py --n 2000 --reps 1   # quicker
    python benchmarks/p1_local.py --only b        # (b) only: small sweeps start like a script
Prints medians and ratios against the bare pool measured in the same run. pushbutton's modules
are byte-compiled first (as an installed package's are), joblib's already are.
"""
from __future__ import annotations

import argparse
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

    def busy(i, ms=10):
        """ms milliseconds of CPU work (not a sleep: the driver competes for the cores)."""
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            pass
        return {"i": i}

    def noop(i, ms=0):
        return {"i": i}
''')

BARE = textwrap.dedent('''
    import sys, os
    from concurrent.futures import ProcessPoolExecutor
    sys.path.insert(0, os.getcwd())
    import tasks
    n, ms, w, fn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    f = getattr(tasks, fn)
    if __name__ == "__main__":
        with ProcessPoolExecutor(w) as ex:
            out = list(ex.map(f, range(n), [ms] * n, chunksize=max(1, n // (8 * w))))
        assert len(out) == n
''')

JOBLIB = textwrap.dedent('''
    import sys, os
    sys.path.insert(0, os.getcwd())
    import tasks
    from joblib import Parallel, delayed
    n, ms, w, fn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    f = getattr(tasks, fn)
    out = Parallel(n_jobs=w)(delayed(f)(i, ms) for i in range(n))
    assert len(out) == n
''')

SUBMITIT = textwrap.dedent('''
    import sys, os, tempfile
    sys.path.insert(0, os.getcwd())
    import tasks
    import submitit
    n, ms, w, fn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    f = getattr(tasks, fn)
    ex = submitit.LocalExecutor(folder=tempfile.mkdtemp())
    ex.update_parameters(timeout_min=10)
    jobs = ex.map_array(f, list(range(n)), [ms] * n)
    out = [j.result() for j in jobs]
    assert len(out) == n
''')

SPEC = '''
name = "p1"
function = "tasks:{fn}"
[space]
grid = {{ i = {{ range = [0, {n}] }}, ms = [{ms}] }}
[run]
workers = {w}
'''


def timed(argv, cwd) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--ms", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--submitit-n", type=int, default=20)
    ap.add_argument("--only", choices=("a", "b"), help="run one workload only")
    args = ap.parse_args()
    # as pip installs a package: byte-compiled (an editable checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at every start, ~0.1 s)
    import importlib.util
    pkg = importlib.util.find_spec("pushbutton").submodule_search_locations[0]
    subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], check=True,
                   stdout=subprocess.DEVNULL)
    d = Path(tempfile.mkdtemp(prefix="pb-p1-"))
    (d / "tasks.py").write_text(TASKS)
    for name, text in (("bare.py", BARE), ("jl.py", JOBLIB), ("si.py", SUBMITIT)):
        (d / name).write_text(text)
    py, w = sys.executable, str(args.workers)
    for label, fn, ms in (("(a) %d x %d ms" % (args.n, args.ms), "busy", args.ms),
                          ("(b) %d no-op" % args.n, "noop", 0)):
        if args.only and not label.startswith(f"({args.only})"):
            continue
        times = {"bare": [], "joblib": [], "pb": []}
        for _ in range(args.reps):  # interleaved, so load drifts hit every method alike
            times["bare"].append(timed([py, "bare.py", str(args.n), str(ms), w, fn], d))
            times["joblib"].append(timed([py, "jl.py", str(args.n), str(ms), w, fn], d))
            (d / "experiment.toml").write_text(SPEC.format(fn=fn, n=args.n, ms=ms, w=w))
            shutil.rmtree(d / ".pushbutton", ignore_errors=True)
            times["pb"].append(timed([py, "-m", "pushbutton", "run", "experiment.toml",
                                      "--quiet"], d))
        k = args.submitit_n
        si = timed([py, "si.py", str(k), str(ms), w, fn], d)
        bare = statistics.median(times["bare"])
        print(f"\nP1 {label}, {args.workers} workers, medians of {args.reps} "
              f"(load average {os.getloadavg()[0]:.2f})")
        print(f"  {'method':<10}{'wall s':>10}{'x bare':>9}{'overhead/task':>16}")
        for m in ("bare", "joblib", "pb"):
            med = statistics.median(times[m])
            print(f"  {m:<10}{med:>10.3f}{med / bare:>9.3f}"
                  f"{1000 * (med - bare) / args.n:>13.3f} ms")
        jl = statistics.median(times["joblib"])
        print(f"  pb / joblib {statistics.median(times['pb']) / jl:.2f}   (goal for (b): <= 1.0)")
        est = si / k * args.n
        print(f"  {'submitit':<10}{est:>10.1f}{est / bare:>9.0f}   (measured {si:.2f} s on "
              f"{k} tasks = {1000 * si / k:.0f} ms/task, extrapolated)")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
