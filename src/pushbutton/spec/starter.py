"""`pb init --example`: a small, real experiment to start from."""
from __future__ import annotations

from pathlib import Path

TASK = '''"""A task is a function: parameters in, a dict of metrics out."""
import random


def estimate_pi(n, seed):
    rng = random.Random(seed)
    inside = sum(rng.random() ** 2 + rng.random() ** 2 <= 1 for _ in range(n))
    estimate = 4 * inside / n
    return {"estimate": estimate, "abs_error": abs(estimate - 3.141592653589793)}
'''

SPEC = '''name = "pi"
description = "How fast does the Monte Carlo estimate of pi converge with n?"
function = "task:estimate_pi"

[space]
grid = { n = [100, 1000, 10000, 100000] }
reps = 10

[resources]
timeout = "1m"
retries = 1
'''


def write_starter(folder: Path) -> list[Path]:
    out = []
    for name, text in (("task.py", TASK), ("experiment.toml", SPEC)):
        p = folder / name
        if not p.exists():
            p.write_text(text)
            out.append(p)
    return out
