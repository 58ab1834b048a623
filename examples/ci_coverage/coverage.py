#!/usr/bin/env python3
"""Does the 95% t-interval for a mean cover the truth when the data are not normal?

A command-line program (any language would do): parameters arrive as arguments, metrics leave as
a JSON object in the file named by $PB_RESULT. Standard library only.
    python coverage.py --dist exponential --n 10 --seed 3
"""
import argparse
import json
import math
import os
import random
import statistics

T975 = {5: 2.776, 10: 2.262, 20: 2.093, 50: 2.010, 100: 1.984, 200: 1.972}
DISTS = {  # sampler, true mean
    "normal": (lambda r: r.gauss(0, 1), 0.0),
    "uniform": (lambda r: r.random(), 0.5),
    "exponential": (lambda r: r.expovariate(1.0), 1.0),
    "lognormal": (lambda r: r.lognormvariate(0, 1), math.exp(0.5)),
}

p = argparse.ArgumentParser()
p.add_argument("--dist", required=True, choices=sorted(DISTS))
p.add_argument("--n", type=int, required=True, choices=sorted(T975))
p.add_argument("--seed", type=int, required=True)
p.add_argument("--trials", type=int, default=2000)
a = p.parse_args()

rng = random.Random(a.seed)
draw, mu = DISTS[a.dist]
covered, widths = 0, []
for _ in range(a.trials):
    xs = [draw(rng) for _ in range(a.n)]
    m, s = statistics.fmean(xs), statistics.stdev(xs)
    half = T975[a.n] * s / math.sqrt(a.n)
    covered += (m - half <= mu <= m + half)
    widths.append(2 * half)
result = {"coverage": covered / a.trials, "mean_width": statistics.fmean(widths)}
with open(os.environ["PB_RESULT"], "w") as f:
    json.dump(result, f)
print(f"{a.dist} n={a.n}: coverage {result['coverage']:.3f}")
