"""P6: `pb status`, `pb results --limit 20` and a grouped query over `results` on a big store,
whole commands, against references measured in the same run.

    python benchmarks/p6_status.py                  # builds a 10^7-task store (a real pb run)
    python benchmarks/p6_status.py --n 100000       # a small one (seconds)
    python benchmarks/p6_status.py --store DIR      # reuse a project folder built before

Goals (issue 14): `pb status` <= 0.5 s and `pb results --limit 20` <= 1 s at 10^7 tasks; a
store it built is also measured for its size (<= 150 bytes/task), the run's peak memory (<= 1 GB
at 10^7) and `pb clean` of it (<= 30 s at 10^7); the
grouped query `SELECT a, avg(y) FROM results GROUP BY a` <= 1 s at 10^6. References: the
interpreter start (`python -c pass`), `sqlite3`'s count of the task table, and DuckDB's grouped
mean over the Parquet files alone.
"""
from __future__ import annotations

import argparse
import math
import resource
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
name = "p6"
function = "p6tasks:noop"
[space]
grid = {{ a = {{ range = [0, {a}] }}, i = {{ range = [0, {i}] }} }}
[run]
max_tasks = 100000000
"""
TASKS = "def noop(a, i):\n    return {'y': a + i}\n"


def whole(argv, cwd, env) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.perf_counter() - t


def median(fn, reps) -> float:
    return statistics.median(fn() for _ in range(reps))


def build(root: Path, n: int, env) -> float:
    a = 100
    i = max(1, math.ceil(n / a))
    (root / "experiment.toml").write_text(SPEC.format(a=a, i=i))
    (root / "p6tasks.py").write_text(TASKS)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pushbutton", "run", "experiment.toml", "--yes",
                    "--quiet"], cwd=root, env=env, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="tasks (default 10^7)")
    ap.add_argument("--store", default=None,
                    help="a project folder: built there if it has no store, reused if it has")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep a store built in a temp folder")
    args = ap.parse_args()
    env = dict(os.environ)
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="p6-"))
    root.mkdir(parents=True, exist_ok=True)
    built = built_rss = None
    if not (root / ".pushbutton" / "state.sqlite").exists():
        print(f"building a store of {args.n:,} no-op tasks in {root} (a real pb run) ...",
              flush=True)
        built = build(root, args.n, env)
        # the largest process of that run (the driver; its workers are far smaller)
        built_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = sum(p.stat().st_size for p in (root / ".pushbutton").rglob("*") if p.is_file())
    db = root / ".pushbutton" / "state.sqlite"
    con = sqlite3.connect(db)
    (name, n), = con.execute("SELECT name, n_tasks FROM experiments ORDER BY id DESC LIMIT 1")
    con.close()
    pb = [sys.executable, "-m", "pushbutton"]
    query = "SELECT a, avg(y) FROM results GROUP BY a"

    def sqlite_count():
        t = time.perf_counter()
        c = sqlite3.connect(db)
        c.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
        c.close()
        return time.perf_counter() - t

    def duck_parquet():
        import duckdb
        files = [str(p) for p in (root / ".pushbutton" / "results" / name).glob("*.parquet")]
        t = time.perf_counter()
        duckdb.connect().execute("SELECT a, avg(y) FROM read_parquet(?) GROUP BY a",
                                 [files]).fetchall()
        return time.perf_counter() - t

    r = args.reps
    start = median(lambda: whole([sys.executable, "-c", "pass"], root, env), r)
    st = median(lambda: whole(pb + ["status", name], root, env), r)
    head = median(lambda: whole(pb + ["results", name, "--limit", "20"], root, env), r)
    grouped = median(lambda: whole(pb + ["sql", query, "-e", name], root, env), r)
    ref_count = median(sqlite_count, r)
    ref_duck = median(duck_parquet, r)
    load = os.getloadavg()
    print(f"\nP6 on {n:,} tasks (medians of {r}; load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}){f'; the store was built in {built:.0f} s' if built else ''}")
    print(f"  interpreter start (python -c pass)      {start:7.3f} s")
    print(f"  pb status                               {st:7.3f} s   goal <= 0.5 s at 10^7: "
          f"{'met' if st <= 0.5 else 'missed'}; {st / ref_count:.2f}x sqlite3's count of the "
          f"task table ({ref_count:.3f} s)")
    print(f"  pb results --limit 20                   {head:7.3f} s   goal <= 1 s at 10^7: "
          f"{'met' if head <= 1 else 'missed'}; {head / start:.1f}x the interpreter start")
    print(f"  pb sql \"{query}\"  {grouped:7.3f} s   goal <= 1 s at 10^6: "
          f"{'met' if grouped <= 1 else 'missed'}; {grouped / ref_duck:.1f}x DuckDB over the "
          f"Parquet files alone ({ref_duck:.3f} s)")
    print(f"  store after the run                     {size / 1e9:7.3f} GB   "
          f"({size / n:.1f} bytes/task; goal <= 1.5 GB at 10^7, i.e. 150 bytes/task: "
          f"{'met' if size / n <= 150 else 'missed'})")
    if built_rss is not None:
        print(f"  peak memory of the run's driver         {built_rss:7.0f} MB   "
              f"(goal <= 1 GB at 10^7, <= 300 MB at 10^6)")
    if built is not None and not args.keep:  # a store this run built: measure pb clean of it
        t = time.perf_counter()
        subprocess.run(pb + ["clean", name, "--yes"], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        clean_s = time.perf_counter() - t
        left = sum(p.stat().st_size for p in (root / ".pushbutton").rglob("*") if p.is_file())
        print(f"  pb clean (whole command)                {clean_s:7.2f} s   goal <= 30 s at "
              f"10^7: {'met' if clean_s <= 30 else 'missed'}; {left:,} bytes left")
    if not args.store and not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
