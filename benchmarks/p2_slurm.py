"""P2: 2,000 tiny tasks on SLURM, from `pb run` until every result is in the store.

Three ways, on the same cluster (the test cluster of scripts/setup.d, or any SLURM_CONF):
  bundled   `pb run exp.toml --on local-slurm` (pushbutton's default bundling: a few array
            elements, each running many tasks through the stdlib worker) until the store holds
            every result (ingested by the harvester pb run leaves behind on this host); also
            timed with an explicit `pb harvest --wait` instead
  per-task  the same with bundle_size = 1 (one array element per task), measured on --per-task-n
            tasks (default 100) and reported as a rate, extrapolated to all tasks
  single    the limit: a hand-written single sbatch job whose Python loops over all tasks and
            writes one results file; timed from sbatch until that file is complete
Goal: bundled >= 500x faster than per-task, and <= 2x the single job.

    . .services/env.sh && python benchmarks/p2_slurm.py            # 2000 tasks, 3 repeats
    python benchmarks/p2_slurm.py --tasks 2000 --repeats 5 --per-task-n 100 --api

Results go to benchmarks/out/p2_slurm.json as well as stdout.
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

TASK = '''
def tiny(i):
    return {"v": i * 2, "odd": i % 2 == 1}
'''

LOOP = '''
import json, sys
sys.path.insert(0, {root!r})
from bench_task import tiny
out = [dict(i=i, **tiny(i)) for i in range({n})]
with open({tmp!r}, "w") as f:
    json.dump(out, f)
import os
os.replace({tmp!r}, {dst!r})
'''


def pb(args, cwd, timeout=1800):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"pb {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def project(base: Path, name: str, n: int, bundle_size: int = 0) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / "bench_task.py").write_text(TASK)
    (d / "exp.toml").write_text(
        f'name = "{name}"\nfunction = "bench_task:tiny"\n[space]\n'
        f'grid = {{ i = {{ range = [0, {n}] }} }}\n[run]\nbundle_size = {bundle_size}\n')
    return d


def count_done(d: Path, name: str) -> int:
    from pushbutton.store.database import Store
    st = Store(d, create=False)
    try:
        eid = st.experiment(name)
        return st.counts(eid)["done"]
    finally:
        st.close()


def wait_store(d: Path, n: int, timeout: float = 3600) -> None:
    """Until the store holds n finished tasks (read-only polling, as `pb status` would)."""
    import sqlite3
    db = sqlite3.connect(f"file:{d / '.pushbutton' / 'state.sqlite'}?mode=ro", uri=True,
                         timeout=30)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if db.execute("SELECT count(*) FROM tasks WHERE state='done'").fetchone()[0] >= n:
                return
            time.sleep(0.02)
    finally:
        db.close()
    raise SystemExit(f"{d.name}: results did not arrive within {timeout}s")


def run_cli(base: Path, name: str, n: int, bundle_size: int = 0, manual: bool = False) -> float:
    """`pb run --on local-slurm` until all n results are in the store: harvested by the
    background harvester pb run starts (default), or with manual=True by `pb harvest --wait`."""
    d = project(base, name, n, bundle_size)
    if manual:
        (d / "pushbutton-targets.toml").write_text("[targets.local-slurm]\nauto_harvest = false\n")
    t0 = time.perf_counter()
    pb(["run", "exp.toml", "--on", "local-slurm", "--quiet"], d)
    if manual:
        pb(["harvest", name, "--wait"], d)
    else:
        wait_store(d, n)
    dt = time.perf_counter() - t0
    got = count_done(d, name)
    if got != n:
        raise SystemExit(f"{name}: {got} of {n} results in the store")
    return dt


def run_api(base: Path, name: str, n: int) -> float:
    import pushbutton as pbm
    from pushbutton.execution.slurm.sync import harvest
    d = project(base, name, n)
    sys.path.insert(0, str(d))
    exp = pbm.load(d / "exp.toml", project=d)
    t0 = time.perf_counter()
    exp.run(on="local-slurm")
    harvest(exp.store, name, wait=True)
    dt = time.perf_counter() - t0
    if count_done(d, name) != n:
        raise SystemExit(f"{name}: results missing")
    return dt


def run_single(base: Path, name: str, n: int) -> float:
    d = base / name
    d.mkdir(parents=True)
    (d / "bench_task.py").write_text(TASK)
    dst, tmp = d / "results.json", d / ".results.tmp"
    (d / "loop.py").write_text(LOOP.format(root=str(d), n=n, tmp=str(tmp), dst=str(dst)))
    t0 = time.perf_counter()
    subprocess.run(["sbatch", "--parsable", "-o", str(d / "slurm.out"),
                    f"--wrap={shlex_join([sys.executable, str(d / 'loop.py')])}"],
                   check=True, capture_output=True, text=True)
    while not dst.exists():
        time.sleep(0.02)
    dt = time.perf_counter() - t0
    if len(json.loads(dst.read_text())) != n:
        raise SystemExit("single job: results missing")
    return dt


def shlex_join(argv):
    import shlex
    return shlex.join(argv)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-task-n", type=int, default=100)
    ap.add_argument("--api", action="store_true", help="Also time the Python API path.")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "p2_slurm.json"))
    a = ap.parse_args()
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        raise SystemExit("no SLURM here: run scripts/setup.d/20-slurm.sh and source "
                         ".services/env.sh")
    info = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout
    cpus = int(info.split("/")[-1]) if "/" in info else None
    base = Path(tempfile.mkdtemp(prefix="pb-p2-"))
    res = {"tasks": a.tasks, "cluster_cpus": cpus, "bundled_s": [], "single_s": [],
           "manual_s": [], "api_s": []}
    try:
        for r in range(a.repeats):  # interleaved, so machine load hits all alike
            res["single_s"].append(run_single(base, f"single{r}", a.tasks))
            res["bundled_s"].append(run_cli(base, f"bundled{r}", a.tasks))
            res["manual_s"].append(run_cli(base, f"manual{r}", a.tasks, manual=True))
            if a.api:
                res["api_s"].append(run_api(base, f"api{r}", a.tasks))
            print(f"repeat {r + 1}: single {res['single_s'][-1]:.2f}s, bundled "
                  f"{res['bundled_s'][-1]:.2f}s, with pb harvest --wait "
                  f"{res['manual_s'][-1]:.2f}s" + (f", api {res['api_s'][-1]:.2f}s"
                                                   if a.api else ""), flush=True)
        t = run_cli(base, "pertask", a.per_task_n, bundle_size=1)
        res["per_task_n"], res["per_task_s"] = a.per_task_n, t
    finally:
        shutil.rmtree(base, ignore_errors=True)
    bundled = statistics.median(res["bundled_s"])
    single = statistics.median(res["single_s"])
    rate = res["per_task_n"] / res["per_task_s"]
    per_task_all = a.tasks / rate
    res.update(bundled_median_s=bundled, single_median_s=single, per_task_rate=rate,
               per_task_extrapolated_s=per_task_all, speedup_vs_per_task=per_task_all / bundled,
               ratio_vs_single=bundled / single)
    print(f"\nP2 ({a.tasks} tiny tasks, {cpus} CPUs)")
    print(f"  bundled (pb run -> all results in store): {bundled:.2f}s median of "
          f"{len(res['bundled_s'])}  ({a.tasks / bundled:,.0f} tasks/s)")
    print(f"  bundled, then `pb harvest --wait`:        "
          f"{statistics.median(res['manual_s']):.2f}s median")
    if res["api_s"]:
        print(f"  bundled, Python API:                     "
              f"{statistics.median(res['api_s']):.2f}s median")
    print(f"  single hand-written sbatch loop:          {single:.2f}s median")
    print(f"  one array element per task:               {rate:.2f} tasks/s on {a.per_task_n} "
          f"-> {per_task_all:,.0f}s for {a.tasks}")
    print(f"  speed-up vs per-task: {res['speedup_vs_per_task']:,.0f}x (goal >= 500x); "
          f"vs single job: {res['ratio_vs_single']:.2f}x (goal <= 2x)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
