"""How long `pb parrun` takes to read a script's grid (the static path must stay under 50 ms
for a 10^4-point nest; the evaluated path runs the script's top in a subprocess).

    PYTHONPATH=src python benchmarks/parrun_grid.py [--reps 5]
"""
import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from pushbutton.spec import parrun

SCRIPTS = {
    "static 100 x 100 ranges": """
        N = 100
        for i in range(N):
            for j in range(100):
                result = {"s": i + j}
    """,
    "static 10^4 literal list x 1": """
        XS = %r
        for x in XS:
            for k in [0]:
                result = {"s": x}
    """ % list(range(10_000)),
    "static dependent range(i), 141 outer (9,870 points)": """
        for i in range(141):
            for j in range(i):
                result = {"s": i + j}
    """,
    "static enumerate/zip 100 x 100": """
        A = list(range(100))
        B = %r
        for i, a in enumerate(A):
            for b, c in zip(B, B):
                result = {"s": a + b}
    """ % [float(b) for b in range(100)],
    "evaluated numpy 100 x 100": """
        import numpy as np
        A = np.arange(100)
        B = np.logspace(-3, 0, 100)
        for i in range(len(A)):
            for b in B:
                result = {"s": float(A[i] * b)}
    """,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for label, text in SCRIPTS.items():
            p = Path(d) / "script.py"
            p.write_text(textwrap.dedent(text).lstrip())
            times, how, n = [], None, 0
            for _ in range(a.reps):
                t0 = time.perf_counter()
                nest = parrun.read(p)
                n = len(parrun.space_of(nest))
                times.append(time.perf_counter() - t0)
                how = nest.how
            print(f"{label:55s} {n:>7,} points  {how:9s}  read + space: median "
                  f"{statistics.median(times) * 1000:7.1f} ms (min {min(times) * 1000:.1f})")


if __name__ == "__main__":
    main()
