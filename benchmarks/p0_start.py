"""P0: how soon the first task starts, and what registering the space costs.

    python benchmarks/p0_start.py                 # 10^4 and 10^6 tasks, 3 repetitions
    python benchmarks/p0_start.py --n 100000 --reps 1   # one size, quicker
    python benchmarks/p0_start.py --n 100000 --no-run   # registration only

Per size, each a whole process on a fresh store:
  first task    time from starting `pb run SPEC` to the start of the first task, as the task
                records it itself (goal: <= 2 s at any size)
  reg in run    the registration's own time during that run (the `registered` event: it
                streams while tasks run, so it shares the cores with them)
  register      `exp.register(yes=True)` alone in a fresh process (what p3 measures), with the
                peak memory of that process (ru_maxrss)
and, in the same run, the reference for registering: canonical JSON + blake2b of the points
plus a SQLite insert of the rows under a unique index (p3_scale.references). Goal: register
<= 1.0x that reference.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPEC = """
name = "start"
function = "tasks:stamp"
[space]
grid = {{ a = {{ range = [0, {a}] }}, b = {{ range = [0, 100] }}, i = {{ range = [0, 100] }} }}
[run]
max_tasks = 100000000
"""
TASKS = "import time\n\ndef stamp(a, b, i):\n    return {'t': time.time()}\n"

REGISTER = """
import json, resource, time
from pushbutton.experiment import load
exp = load("experiment.toml")
t = time.perf_counter(); exp.register(yes=True); s = time.perf_counter() - t
print(json.dumps({"register_s": s,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FIRST = """
import duckdb, glob, json, sqlite3
con = duckdb.connect()
t = con.execute("SELECT min(t), count(*) FROM read_parquet('.pushbutton/results/start/*.parquet')"
                ).fetchone()
db = sqlite3.connect(".pushbutton/state.sqlite")
ev = db.execute("SELECT t, data FROM events WHERE kind='registered' ORDER BY id DESC").fetchone()
print(json.dumps({"first": t[0], "rows": t[1], "registered_t": ev[0] if ev else None,
                  "registered": json.loads(ev[1]) if ev else None}))
"""


def run_once(d: Path, n: int, run: bool) -> dict:
    (d / "experiment.toml").write_text(SPEC.format(a=max(1, n // 10_000)))
    out = {}
    if run:
        shutil.rmtree(d / ".pushbutton", ignore_errors=True)
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "pushbutton", "run", "experiment.toml", "--quiet",
                        "--yes"], cwd=d, check=True, stdout=subprocess.DEVNULL)
        wall = time.time() - t0
        f = json.loads(subprocess.run([sys.executable, "-c", FIRST], cwd=d, check=True,
                                      capture_output=True, text=True).stdout)
        out.update(first_s=f["first"] - t0, run_s=wall, rows=f["rows"],
                   reg_in_run_s=(f["registered"] or {}).get("seconds"),
                   first_before_registered=f["first"] < (f["registered_t"] or 0))
    shutil.rmtree(d / ".pushbutton", ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", REGISTER], cwd=d, check=True, capture_output=True,
                       text=True)
    out.update(json.loads(r.stdout.strip().splitlines()[-1]))
    shutil.rmtree(d / ".pushbutton", ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="small scale: --n 100000 --reps 1")
    ap.add_argument("--n", type=int, action="append",
                    help="tasks (rounded to a multiple of 10,000; repeatable); default 10^4, 10^6")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-run", action="store_true", help="measure the registration only")
    args = ap.parse_args()
    from p3_scale import references
    sizes = args.n or [10_000, 1_000_000]
    d = Path(tempfile.mkdtemp(prefix="pb-p0-"))
    (d / "tasks.py").write_text(TASKS)
    print(f"P0 (load average {os.getloadavg()[0]:.2f} at the start)")
    for n in sizes:
        n = max(1, n // 10_000) * 10_000
        res = [run_once(d, n, not args.no_run) for _ in range(args.reps)]
        ref = references(n)
        ref_s = ref["json+blake2b"] + ref["sqlite insert (unique index)"]
        med = {k: statistics.median(r[k] for r in res) for k in res[0]
               if isinstance(res[0][k], (int, float)) and not isinstance(res[0][k], bool)
               and all(r.get(k) is not None for r in res)}
        print(f"\n{n:,} tasks, medians of {args.reps} (load average {os.getloadavg()[0]:.2f})")
        if not args.no_run:
            ok = "ok" if med["first_s"] <= 2.0 else "MISSED"
            each = ", ".join("%.2f" % r["first_s"] for r in res)
            print(f"  first task starts after      {med['first_s']:8.2f} s   goal <= 2 s  {ok}"
                  f"   (each: {each})")
            print(f"  first task before the registration ended: "
                  f"{sum(r['first_before_registered'] for r in res)}/{len(res)} runs")
            print(f"  whole run                    {med['run_s']:8.2f} s   "
                  f"({med['rows']:,.0f} result rows)")
            if "reg_in_run_s" in med:
                print(f"  registration during the run  {med['reg_in_run_s']:8.2f} s")
        ratio = med["register_s"] / ref_s
        print(f"  register alone (exp.register) {med['register_s']:7.2f} s   peak memory "
              f"{med['rss_mb']:.0f} MB")
        print(f"  reference json+blake2b {ref['json+blake2b']:.2f} s + sqlite insert "
              f"{ref['sqlite insert (unique index)']:.2f} s = {ref_s:.2f} s")
        print(f"  ratio register / reference   {ratio:8.2f}   goal <= 1.0  "
              f"{'ok' if ratio <= 1.0 else 'MISSED'}")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
