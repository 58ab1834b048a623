"""P9: where the driver's memory goes, phase by phase, and the peak of a `pb results` export.

    python benchmarks/p9_memory.py              # 10^6 tasks (a few minutes here)
    python benchmarks/p9_memory.py --side 46    # side^3 tasks: 46 -> 97,336 (a small run)
    python benchmarks/p9_memory.py --side 46 --trace   # + tracemalloc's top allocations at the
                                                        # Python heap's peak (slower)

The run is `pb run` as a user starts it (registration streaming while the first tasks run), in
a child process whose resident set a thread samples every 50 ms (/proc/self/statm), each sample
tagged with the phase the driver is in: register (the first chunk), schedule (a bundle made),
ingest (tail of running bundles), finalize (a bundle's end), compact (incremental merges),
merge (the end-of-run merge), retire (bundle folders -> zips), wait (the rest); "(registering)"
while the registration thread streams the rest of the space. It prints the
peak RSS per phase, the run's peak against the goal (10^6: <= 300 MB; 10^7: <= 1 GB), and a
baseline: the RSS of a process that has only imported what a run imports (the shared library
text of Arrow counts in RSS). Then it exports the results with `pb results
--format csv|parquet|json -o FILE` and prints each export's peak RSS against the file's size
and the store's results. It also samples the local pool's workers (the run's worker.py
children, every 0.2 s): their RSS when first seen and their peak, which must stay flat however
many tasks they run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p3_scale import SPEC  # noqa: E402  (the same sweep as P3; its tasks return one more metric)

TASKS = "def noop3(a, b, i):\n    return {'y': a + b + i, 'z': (a * 0.5) if i % 7 else None}\n"

SAMPLER = textwrap.dedent("""
    import os, threading, time
    PAGE = os.sysconf("SC_PAGE_SIZE")
    PHASE = ["start"]
    SAMPLES = []
    TRACE = {"peak": 0, "snap": None}

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    WORKERS = {}  # pid of a worker.py child -> [RSS first seen, peak, last]

    def sample_workers():
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != me:  # its parent
                        continue
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\\0")
                if b"--serve" not in argv or not any(a.endswith(b"worker.py") for a in argv):
                    continue  # not a pool worker (a fork of the driver has its command line)
                with open("/proc/%d/statm" % pid) as f:
                    r = int(f.read().split()[1]) * PAGE
            except OSError:
                continue
            w = WORKERS.setdefault(pid, [r, r, r])
            w[1], w[2] = max(w[1], r), r

    def sample(trace):
        import tracemalloc
        k = 0
        while True:
            k += 1
            if k % 4 == 0:  # the local pool's workers, every 0.2 s
                sample_workers()
            reg = any(t.name == "pb-register" for t in threading.enumerate())
            SAMPLES.append((time.time(), rss(), PHASE[-1] + (" (registering)" if reg else "")))
            if trace:
                cur = tracemalloc.get_traced_memory()[0]
                if cur > TRACE["peak"] * 1.05:
                    TRACE["peak"] = cur
                    TRACE["phase"] = PHASE[-1]
                    TRACE["snap"] = tracemalloc.take_snapshot()
            time.sleep(0.05)

    def phased(cls, meth, name):
        f = getattr(cls, meth)
        def wrapped(*a, **k):
            tag = name(*a, **k) if callable(name) else name
            PHASE.append(tag)
            try:
                return f(*a, **k)
            finally:
                PHASE.pop()
        setattr(cls, meth, wrapped)

    def start(trace=False):
        if trace:
            import tracemalloc
            tracemalloc.start(12)
        threading.Thread(target=sample, args=(trace,), daemon=True).start()

    def report(extra=None):
        import json
        peaks = {}
        for _t, r, ph in SAMPLES:
            peaks[ph] = max(peaks.get(ph, 0), r)
        out = {"peak_mb": max(r for _t, r, _p in SAMPLES) / 2**20,
               "phases": {k: v / 2**20 for k, v in peaks.items()},
               "order": list(dict.fromkeys(p for _t, _r, p in SAMPLES)),
               "workers": [[a / 2**20, b / 2**20, c / 2**20] for a, b, c in WORKERS.values()]}
        if TRACE["snap"] is not None:
            stats = TRACE["snap"].statistics("traceback")[:8]
            out["trace_phase"] = TRACE.get("phase")
            out["trace_peak_mb"] = TRACE["peak"] / 2**20
            out["trace_top"] = [[s.size / 2**20, s.count, s.traceback.format()[-6:]]
                                for s in stats]
        out.update(extra or {})
        print("P9JSON " + json.dumps(out))
""")

RUN = SAMPLER + textwrap.dedent("""
    import sys
    trace = "--trace" in sys.argv
    start(trace)
    PHASE.append("imports")
    from pushbutton.execution.driver import Driver
    from pushbutton.harvest.ingest import Ingestor
    from pushbutton.store.registration import Registration
    from pushbutton.experiment import load
    PHASE.pop()
    phased(Registration, "first", "register")
    phased(Driver, "_make_bundle", "schedule")
    phased(Ingestor, "ingest", lambda self, bundles: "ingest")
    phased(Ingestor, "finalize", "finalize")
    phased(Ingestor, "compact", lambda self, full=False: "merge" if full else "compact")
    phased(Ingestor, "retire", "retire")
    PHASE.append("wait")
    exp = load("experiment.toml")
    s = exp.run(yes=True, quiet=True)
    PHASE.pop()
    report({"done": s.get("counts", {}).get("done"), "seconds": s.get("seconds"),
            "ingest_s": s.get("ingest_seconds")})
""")

BASE = SAMPLER + textwrap.dedent("""
    start()
    from pushbutton.execution.driver import Driver
    from pushbutton.experiment import load
    import pyarrow.parquet, pyarrow.json, pyarrow.compute  # (a run no longer loads DuckDB)
    from pushbutton.core import memory
    memory.tame()
    import time; time.sleep(0.3)
    report()
""")

EXPORT = SAMPLER + textwrap.dedent("""
    import sys
    start()
    from pushbutton.cli.main import main
    try:
        main(["results", "--format", sys.argv[1], "-o", sys.argv[2]])
    except SystemExit as e:
        if e.code:
            raise
    report()
""")


def child(code: str, cwd: Path, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(out.stderr[-4000:])
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("P9JSON ")][-1]
    return json.loads(line[len("P9JSON "):])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=100, help="grid side; tasks = side^3")
    ap.add_argument("--trace", action="store_true",
                    help="tracemalloc's top allocations at the Python heap's peak (slower)")
    ap.add_argument("--no-export", action="store_true", help="the run only")
    args = ap.parse_args()
    n = args.side ** 3
    d = Path(tempfile.mkdtemp(prefix="pb-p9-"))
    try:
        (d / "tasks.py").write_text(TASKS)
        (d / "experiment.toml").write_text(SPEC.format(s=args.side))
        base = child(BASE, d)
        run = child(RUN, d, *(["--trace"] if args.trace else []))
        goal = 300 if n <= 1_000_000 else 1024
        print(f"P9 at {n:,} tasks ({run['done']:,} done in {run['seconds']:.1f} s, of which "
              f"ingest {run.get('ingest_s') or 0:.1f} s)")
        print(f"  {'baseline: the run imports alone, MB':<44}{base['peak_mb']:>9.1f}")
        print("  driver peak RSS by phase, MB (in the order first seen):")
        for ph in run["order"]:
            print(f"    {ph:<42}{run['phases'][ph]:>9.1f}")
        v = run["peak_mb"]
        print(f"  {'driver peak RSS, MB':<44}{v:>9.1f}   goal <= {goal}  "
              f"{'ok' if v <= goal else 'MISSED'}")
        print(f"  {'ratio peak / baseline':<44}{v / base['peak_mb']:>9.2f}")
        if run.get("workers"):  # a persistent worker's memory must not grow with its tasks
            ws = run["workers"]
            first, peak = max(w[0] for w in ws), max(w[1] for w in ws)
            print(f"  {'workers (%d) RSS first seen, MB' % len(ws):<44}{first:>9.1f}")
            print(f"  {'workers peak RSS, MB':<44}{peak:>9.1f}")
            print(f"  {'ratio worker peak / first seen':<44}{peak / first:>9.2f}")
            print("    each worker, first seen / peak / at the end, MB: " + ", ".join(
                f"{w[0]:.0f} / {w[1]:.0f} / {w[2]:.0f}" for w in ws))
        if run.get("trace_top"):
            print(f"  Python heap peak {run['trace_peak_mb']:.1f} MB in phase "
                  f"{run['trace_phase']}; top allocations:")
            for size, count, tb in run["trace_top"]:
                print(f"    {size:8.1f} MB {count:>9,} blocks")
                for ln in tb:
                    print("        " + ln.strip())
        if args.no_export:
            return
        res = sum(p.stat().st_size for p in (d / ".pushbutton" / "results").rglob("*.parquet"))
        print(f"  pb results export (stored results {res / 2**20:.1f} MB):")
        for fmt in ("csv", "parquet", "json"):
            f = d / f"out.{fmt}"
            e = child(EXPORT, d, fmt, str(f))
            print(f"    {fmt:<8} peak RSS {e['peak_mb']:>8.1f} MB   file "
                  f"{f.stat().st_size / 2**20:>8.1f} MB   peak - baseline "
                  f"{e['peak_mb'] - base['peak_mb']:>7.1f} MB")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
