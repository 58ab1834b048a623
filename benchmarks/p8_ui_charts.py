"""P8 (charts): the live figures of `pb ui` at 10^6 results, with references measured in the
same run.

    python benchmarks/p8_ui_charts.py                    # a 100^3 = 10^6-task no-op run
    python benchmarks/p8_ui_charts.py --side 47          # about 10^5 tasks
    python benchmarks/p8_ui_charts.py --store DIR        # a store another run left (read only)
    python benchmarks/p8_ui_charts.py --side 47 --full   # also the old full-table path

Goal: a figures request (the spec's or the automatic figures, throughput and timing, from
the results table the pages read) <= 300 ms at 10^6 results. Printed: the request's time
(the figures of a copy are computed in the copy's thread as soon as it is made; a request reads
the store's version and finds them), the first request after the copy (it may wait for that
computation), the computation alone, the table's copy for the pages (made once per change,
shared with the results page), and as references one DuckDB GROUP BY scan of the same table and (--full) the
full-table path of before (every row into pandas).
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
from p3_scale import SPEC  # noqa: E402  (the same sweep as P3)

TASKS = "def noop3(a, b, i):\n    return {'y': a + b + i}\n"
RUN = ("from pushbutton.experiment import load\n"
       "exp = load('experiment.toml'); exp.run(yes=True)\n")


def build(side: int) -> Path:
    """A store made by a real local run of a no-op task over a side^3 grid."""
    d = Path(tempfile.mkdtemp(prefix="pb-p8c-"))
    (d / "experiment.toml").write_text(SPEC.format(s=side))
    (d / "tasks.py").write_text(TASKS)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN], cwd=d, check=True, stdout=subprocess.DEVNULL)
    print(f"run of {side ** 3} tasks: {time.perf_counter() - t:.1f} s")
    return d


def _median(f, k: int = 5) -> float:
    times = []
    for _ in range(k):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(root: Path, name: str | None = None, full: bool = False) -> dict:
    """The figures' times over the store at `root` (its last experiment by default)."""
    from pushbutton.store.database import Store
    from pushbutton.ui import charts_data as D
    from pushbutton.ui import results as U
    store = Store(root, create=False)
    tables = U.Tables()
    try:
        name = name or store.experiments()[-1]["name"]
        eid = store.experiment(name)
        D.ChartData(lambda: Store(root, create=False), tables=tables)  # (sets tables.warm)
        t = time.perf_counter()
        snap = tables.get(store, eid, name)
        out = {"tasks": sum(store.counts(eid).values()), "table_copy_s":
               time.perf_counter() - t}

        def request():  # a figures request of a new server (no ChartData cache) on the copy
            D.ChartData(lambda: Store(root, create=False), tables=tables).snapshot(name)
        t = time.perf_counter()
        request()  # the first after the copy: waits for the copy's figures (made in its thread)
        out["first_request_after_copy_s"] = time.perf_counter() - t
        out["request_s"] = _median(request)
        out["compute_s"] = _median(lambda: D.compute_from_table(store, eid, name, "v", snap))
        p = [c for c in snap.columns if not c.startswith("pb_")][:1] or ["pb_status"]
        with snap.lock:
            out["ref_groupby_scan_s"] = _median(lambda: snap.con.execute(
                f'SELECT "{p[0]}", count(*), avg(pb_duration_s), stddev_samp(pb_duration_s) '
                f'FROM {U.TABLE} GROUP BY 1').fetchall())
        if full:
            t = time.perf_counter()
            D.compute(store, eid, name, "v")
            out["full_table_path_s"] = time.perf_counter() - t
        figs = D.compute_from_table(store, eid, name, "v", snap)["figures"]
        out["figures"] = [f["kind"] for f in figs["figures"]]
        out["problems"] = figs["problems"]
        return out
    finally:
        tables.close()
        store.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=100, help="grid side; tasks = side^3")
    ap.add_argument("--store", help="measure this project's store instead (read only)")
    ap.add_argument("--experiment", help="its experiment (default: the last)")
    ap.add_argument("--full", action="store_true", help="also time the full-table path")
    ap.add_argument("--keep", action="store_true", help="keep the store built")
    a = ap.parse_args()
    root = Path(a.store) if a.store else build(a.side)
    try:
        r = measure(root, a.experiment, a.full)
    finally:
        if not a.store and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    r["load_average"] = os.getloadavg()
    r["ratio_request_to_goal_300ms"] = r["request_s"] / 0.300
    r["ratio_compute_to_groupby_scan"] = r["compute_s"] / r["ref_groupby_scan_s"]
    if "full_table_path_s" in r:
        r["ratio_full_table_path_to_compute"] = r["full_table_path_s"] / r["compute_s"]
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
