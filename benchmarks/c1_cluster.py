"""C1: `pb cluster up netns` with 3 nodes, time to ready; and P2's 2,000-task sweep on 3 netns
nodes vs 1 node.

  up        `pb cluster up netns NAME --nodes 3 --cpus 1` from a clean state until it returns
            (every node idle, target registered), then `down --delete`; repeated
  sweep     P2's workload (`tiny(i) -> {"v": 2i, ...}`, 2,000 tasks, pushbutton's default
            bundling) from `pb run --on NAME` until every result is in the store, on the same
            cluster resized to 3 nodes and to 1 node (1 CPU each), interleaved; and the same with
            each task sleeping --sleep-ms (work that does not need a CPU of its own, so 3 nodes
            can overlap it even on a 2-core host)

Needs root (network namespaces) and the SLURM/munge programs. Prints medians and ratios, and
the load average before and after; results also go to benchmarks/out/c1_cluster.json.

    python benchmarks/c1_cluster.py                   # 3 repeats
    python benchmarks/c1_cluster.py --repeats 5 --tasks 2000 --sleep-ms 5
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

sys.path.insert(0, str(Path(__file__).parent))
from p2_slurm import count_done, wait_store  # noqa: E402

TASK = '''
import time


def tiny(i):
    return {"v": i * 2, "odd": i % 2 == 1}


def nap(i):
    time.sleep(__SLEEP__)
    return {"v": i * 2}
'''
NAME = "pbcbench"


def pb(args, cwd, timeout=1800):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"pb {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def project(base: Path, name: str, n: int, fn: str, sleep_ms: float) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / "bench_task.py").write_text(TASK.replace("__SLEEP__", repr(sleep_ms / 1000)))
    (d / "exp.toml").write_text(f'name = "{name}"\nfunction = "bench_task:{fn}"\n[space]\n'
                                f'grid = {{ i = {{ range = [0, {n}] }} }}\n')
    return d


def sweep(base: Path, name: str, n: int, fn: str, sleep_ms: float) -> float:
    d = project(base, name, n, fn, sleep_ms)
    t0 = time.perf_counter()
    pb(["run", "exp.toml", "--on", NAME, "--quiet"], d)
    wait_store(d, n)
    dt = time.perf_counter() - t0
    if count_done(d, name) != n:
        raise SystemExit(f"{name}: results missing")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sleep-ms", type=float, default=5.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "c1_cluster.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    base = Path(tempfile.mkdtemp(prefix="pb-c1-"))
    os.environ.update(XDG_STATE_HOME=str(base / "state"), XDG_CONFIG_HOME=str(base / "config"),
                      XDG_CACHE_HOME=str(base / "cache"))
    os.environ.pop("SLURM_CONF", None)
    res = {"tasks": a.tasks, "sleep_ms": a.sleep_ms, "load_before": os.getloadavg(),
           "up_s": [], "tiny3_s": [], "tiny1_s": [], "nap3_s": [], "nap1_s": []}
    try:
        for r in range(a.repeats):
            t0 = time.perf_counter()
            pb(["cluster", "up", "netns", NAME, "--nodes", "3", "--cpus", "1"], base)
            res["up_s"].append(time.perf_counter() - t0)
            pb(["cluster", "down", NAME, "--delete"], base)
            print(f"up {r + 1}: {res['up_s'][-1]:.2f}s", flush=True)
        pb(["cluster", "up", "netns", NAME, "--nodes", "3", "--cpus", "1"], base)
        for r in range(a.repeats):  # interleaved, so machine load hits all alike
            for k in (3, 1):
                pb(["cluster", "resize", NAME, f"={k}"], base)
                res[f"tiny{k}_s"].append(sweep(base, f"tiny{k}r{r}", a.tasks, "tiny", 0))
                res[f"nap{k}_s"].append(sweep(base, f"nap{k}r{r}", a.tasks, "nap", a.sleep_ms))
            print(f"repeat {r + 1}: tiny 3 nodes {res['tiny3_s'][-1]:.2f}s, 1 node "
                  f"{res['tiny1_s'][-1]:.2f}s; {a.sleep_ms:g} ms tasks 3 nodes "
                  f"{res['nap3_s'][-1]:.2f}s, 1 node {res['nap1_s'][-1]:.2f}s", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "pushbutton", "cluster", "down", NAME, "--delete"],
                       cwd=base, capture_output=True, timeout=300)
        shutil.rmtree(base, ignore_errors=True)
    res["load_after"] = os.getloadavg()
    med = {k: statistics.median(v) for k, v in res.items() if k.endswith("_s")}
    res["medians"] = med
    res["ratio_tiny_1_over_3"] = med["tiny1_s"] / med["tiny3_s"]
    res["ratio_nap_1_over_3"] = med["nap1_s"] / med["nap3_s"]
    print(f"\nC1 ({os.cpu_count()} CPUs on this host; load average before "
          f"{res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f})")
    print(f"  pb cluster up netns, 3 nodes, to ready:  {med['up_s']:.2f}s median of "
          f"{len(res['up_s'])}")
    print(f"  {a.tasks} tiny tasks, 3 nodes: {med['tiny3_s']:.2f}s; 1 node: "
          f"{med['tiny1_s']:.2f}s; 1-node/3-node {res['ratio_tiny_1_over_3']:.2f}x")
    print(f"  {a.tasks} x {a.sleep_ms:g} ms tasks, 3 nodes: {med['nap3_s']:.2f}s; 1 node: "
          f"{med['nap1_s']:.2f}s; 1-node/3-node {res['ratio_nap_1_over_3']:.2f}x")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
