"""P8: pb ui on a 10^6-task experiment, and what the live channel costs a running sweep.

    python benchmarks/p8_ui.py                      # 100^3 = 10^6 tasks; P1 at 10^4 x 10 ms
    python benchmarks/p8_ui.py --side 47 --p1-n 2000 --reps 3   # ~10^5 tasks: quicker
    python benchmarks/p8_ui.py --store DIR --side 100 --skip-p1   # a store left by a run

Measured through HTTP against `pb ui --port 0` (a separate process, as a user starts it):
  experiments page          GET /, median of 5, 1 s apart (the pages answer from the summary
                            the live channel shares, made at most once per 0.8 s and in the
                            background when it is older; its own cost is printed beside)
  results page              GET /exp/NAME?where=...&sort=...&desc=1 (a sorted, filtered page),
                            median of 5 after the first (which starts the table's Parquet copy
                            and says so when it is not made within a second), and when the
                            first page with rows came (the copy's time)
  figures request           GET /api/exp/NAME/figures, median of 5 (the figures of the copy,
                            computed in the copy's thread, with the counts now)
  server memory             VmRSS and VmHWM (peak) of the pb ui process at the end
  P1 with pb ui open        `pb run` of N x MS ms tasks with pb ui serving the store and an SSE
                            client on /events, against the same run without; interleaved reps
Goals: each page <= 300 ms, server memory <= 300 MB, P1 with / without within 2%.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p3_scale import SPEC  # noqa: E402  (the same sweep as P3)

TASKS = textwrap.dedent('''
    import time

    def noop3(a, b, i):
        return {"y": a + b + i}

    def busy(i, ms=10):
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            pass
        return {"i": i}
''')
P1_SPEC = '''
name = "p1"
function = "tasks:busy"
[space]
grid = {{ i = {{ range = [0, {n}] }}, ms = [{ms}] }}
[run]
workers = {w}
'''
RUN = textwrap.dedent("""
    import json
    from pushbutton.experiment import load
    exp = load("experiment.toml")
    exp.register(yes=True)
    s = exp.run(yes=True)
    print(json.dumps({"done": s["done"], "run_s": s["seconds"]}))
""")
PB = [sys.executable, "-m", "pushbutton"]


class Ui:
    def __init__(self, cwd: Path):
        self.proc = subprocess.Popen(PB + ["ui", "--port", "0"], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
        if not m:
            sys.exit(f"pb ui did not start: {line!r}")
        self.base, self.token = m.group(1), m.group(2)

    def get(self, path: str) -> tuple[float, bytes]:
        sep = "&" if "?" in path else "?"
        t = time.perf_counter()
        with urllib.request.urlopen(f"{self.base}{path}{sep}token={self.token}") as r:
            body = r.read()
        return time.perf_counter() - t, body

    def memory_mb(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()

        def kb(key):
            return int(status.split(key + ":")[1].split()[0]) / 1024
        return kb("VmRSS"), kb("VmHWM")

    def follow(self) -> threading.Event:
        """An SSE client on /events (as an open dashboard page) until the event is set."""
        stop = threading.Event()
        got = [0]

        def read():
            with urllib.request.urlopen(f"{self.base}/events?token={self.token}") as r:
                while not stop.is_set():
                    line = r.readline()
                    if not line:
                        return
                    got[0] += line.startswith(b"event:")
        threading.Thread(target=read, daemon=True).start()
        stop.got = got
        return stop

    def close(self):
        self.proc.terminate()
        self.proc.wait(30)


def pages(d: Path, side: int) -> dict:
    ui = Ui(d)
    try:
        ui.get("/")  # imports, first summary
        exp = []
        for _ in range(5):
            time.sleep(1.0)
            exp.append(ui.get("/")[0])
        q = "/exp/million?" + urllib.parse.urlencode(
            {"where": f"a < {side // 2} AND pb_status = 'done'", "sort": "y", "desc": "1"})
        first, body = ui.get(q)  # says the table is being copied, or waits for it (small)
        assert b'id="pb-results"' in body and b"pb-table-error" not in body, body[-2000:]
        t = time.perf_counter()
        while b"pb-table-pending" in body:  # reloaded by the page itself every 3 s
            time.sleep(0.5)
            body = ui.get(q)[1]
        copied = first + time.perf_counter() - t
        res = []
        for k in range(5):  # other pages of the same sorted, filtered table
            res.append(ui.get(q + f"&page={k + 1}")[0])
        fig = []
        for _ in range(5):  # the figures request (the page's charts.js polls it)
            fig.append(ui.get("/api/exp/million/figures")[0])
            time.sleep(0.3)
        rss, hwm = ui.memory_mb()
    finally:
        ui.close()
    from pushbutton.store.database import Store
    from pushbutton.ui.data import summary
    store = Store(d, create=False)
    e = store.experiments()[0]
    st = []
    for _ in range(5):
        t = time.perf_counter()
        summary(store, e)
        st.append(time.perf_counter() - t)
    store.close()
    return {"summary behind it (operations.status) s": statistics.median(st),
            "experiments page s": statistics.median(exp), "results page s": statistics.median(res),
            "results page, first (says the copy is being made) s": first,
            "results page with rows, first (after the copy) s": copied,
            "figures request s": statistics.median(fig),
            "server RSS MB": rss, "server peak RSS MB": hwm}


def p1(n: int, ms: int, w: int, reps: int) -> dict:
    times = {"without": [], "with pb ui + SSE client": []}
    events = 0
    for _ in range(reps):
        for mode in times:
            d = Path(tempfile.mkdtemp(prefix="pb-p8-p1-"))
            (d / "tasks.py").write_text(TASKS)
            (d / "experiment.toml").write_text(P1_SPEC.format(n=n, ms=ms, w=w))
            subprocess.run(PB + ["init"], cwd=d, check=True, stdout=subprocess.DEVNULL)
            ui = stop = None
            if mode != "without":
                ui = Ui(d)
                stop = ui.follow()
                time.sleep(1.5)
            t = time.perf_counter()
            subprocess.run(PB + ["run", "experiment.toml", "--quiet"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
            times[mode].append(time.perf_counter() - t)
            if ui:
                stop.set()
                events += stop.got[0]
                ui.close()
            shutil.rmtree(d, ignore_errors=True)
    out = {f"P1 {k} s": statistics.median(v) for k, v in times.items()}
    out["SSE messages received"] = events
    return out


def build_and_measure(args) -> tuple:
    n = args.side ** 3
    d = Path(tempfile.mkdtemp(prefix="pb-p8-"))
    (d / "tasks.py").write_text(TASKS)
    (d / "experiment.toml").write_text(SPEC.format(s=args.side))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RUN], cwd=d, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    built = time.perf_counter() - t
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["done"] == n, m
    r = pages(d, args.side)
    shutil.rmtree(d, ignore_errors=True)
    return n, built, r


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=100, help="grid side; tasks = side^3")
    ap.add_argument("--p1-n", type=int, default=10_000, help="P1 tasks")
    ap.add_argument("--p1-ms", type=int, default=10, help="P1 task length, ms")
    ap.add_argument("--reps", type=int, default=3, help="P1 repetitions (interleaved)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--skip-p1", action="store_true")
    ap.add_argument("--store", help="a project another run of this benchmark left (its "
                    "'million' experiment; read only): no store is built")
    args = ap.parse_args()
    if args.store:
        r = pages(Path(args.store), args.side)
        n, built = None, 0.0
    else:
        n, built, r = build_and_measure(args)
    print(f"P8 pb ui at {n or 'the given store'} tasks (store built in {built:.0f} s); load "
          f"average {os.getloadavg()[0]:.2f}")
    goals = {"experiments page s": 0.3, "results page s": 0.3, "server RSS MB": 300,
             "results page, first (says the copy is being made) s": 0.3 + 1.0,
             "figures request s": 0.3, "server peak RSS MB": 300}
    for k, v in r.items():
        g = goals.get(k)
        print(f"  {k:<48}{v:>10.3f}" + (f"   goal <= {g:g}  {'ok' if v <= g else 'MISSED'}"
                                          if g else ""))
    if not args.skip_p1:
        p = p1(args.p1_n, args.p1_ms, args.workers, args.reps)
        base, with_ui = p["P1 without s"], p["P1 with pb ui + SSE client s"]
        print(f"P1 {args.p1_n:,} x {args.p1_ms} ms, {args.workers} workers, medians of "
              f"{args.reps} (interleaved)")
        for k, v in p.items():
            print(f"  {k:<48}{v:>10.3f}")
        ratio = with_ui / base
        print(f"  {'ratio with / without':<48}{ratio:>10.3f}   goal <= 1.02  "
              f"{'ok' if ratio <= 1.02 else 'MISSED'}")


if __name__ == "__main__":
    main()
