"""A small real experiment for the chart tests: a 2 x 3 grid x 2 reps with failures, a hostile
parameter value and metric name, and per-step series."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

HOSTILE = "<img src=x onerror=\"window.__pwned=1\">"
METRIC = "<b>loss</b>"

TASK = textwrap.dedent('''
    import math, random
    import pushbutton

    def recover(delta, rho, method, rep, seed=None):
        if rho > 0.9 and rep == 0:
            raise ValueError("diverged <script>window.__pwned=2</script>")
        r = random.Random(seed)
        for step in range(4):
            pushbutton.log(step=step, loss=1.0 / (step + 1 + delta))
        p = 1 / (1 + math.exp(-(rho - (0.2 + 0.5 * delta)) / 0.05))
        return {"success": r.random() < p, "err": r.random(), "<b>loss</b>": delta + r.random()}
''')

SPEC = textwrap.dedent('''
    name = "phase"
    function = "task:recover"
    [space]
    reps = 2
    [space.grid]
    delta = [0.2, 0.8]
    rho = [0.0, 0.5, 1.0]
    method = ["lasso", '<img src=x onerror="window.__pwned=1">']
    [run]
    workers = 2
    [units]
    delta = "n/N"
    [[figures]]
    kind = "heatmap"
    x = "delta"
    y = "rho"
    value = "success"
    boundary = 0.5
    [[figures]]
    kind = "line"
    x = "rho"
    y = "<b>loss</b>"
    hue = "method"
    [[figures]]
    kind = "learning_curves"
    metric = "loss"
    hue = "delta"
''')


def make_project(root: Path):
    """Write the task and spec into `root` and run the experiment; returns the Experiment."""
    import pushbutton as pb
    (root / "task.py").write_text(TASK)
    (root / "experiment.toml").write_text(SPEC)
    old = os.getcwd()
    os.chdir(root)
    try:
        exp = pb.load(root / "experiment.toml", project=root)
        exp.run(message="first", yes=True)
    finally:
        os.chdir(old)
    return exp


def grow(root: Path):
    """A third replicate: 12 more tasks, all done (the results the open page must pick up)."""
    import pushbutton as pb
    spec = root / "experiment.toml"
    spec.write_text(SPEC.replace("reps = 2", "reps = 3"))
    old = os.getcwd()
    os.chdir(root)
    try:
        pb.load(spec, project=root).run(message="more", yes=True)
    finally:
        os.chdir(old)
