"""Synthetic experiments for the report tests: finished with failures, half-finished, just started.
Values carry HTML/JS payloads so escaping is tested wherever text reaches the page."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

PAYLOAD = "<script>window.__pwned=1</script>"
QUOTES = "a\"b'c\" onmouseover=\"window.__pwned=2"
IMG = "<img src=x onerror=\"window.__pwned=3\">"

TRACEBACK = ("Traceback (most recent call last):\n"
             "  File \"sim.py\", line 12, in run\n"
             "    solve(delta, rho)\n"
             "  File \"sim.py\", line 40, in solve\n"
             "    raise FloatingPointError(\"diverged at rho > 0.9 " + PAYLOAD + "\")\n"
             "FloatingPointError: diverged at rho > 0.9 " + PAYLOAD)


def make_results(states: str = "finished", seed: int = 0) -> pd.DataFrame:
    """A 2-D delta x rho sweep x 2 methods x 4 reps, success logistic around rho = 0.2 + 0.5 delta."""
    rng = np.random.default_rng(seed)
    rows = []
    for delta in np.round(np.linspace(0.1, 0.9, 5), 10):
        for rho in np.round(np.linspace(0.0, 1.0, 6), 10):
            for method in ("lasso", PAYLOAD):
                for rep in range(4):
                    p = 1 / (1 + math.exp(-(rho - (0.2 + 0.5 * delta)) / 0.08))
                    ok = bool(rng.random() < p)
                    rows.append({"pb_task_id": f"t{len(rows):04d}", "delta": delta, "rho": rho,
                                 "method": method, "rep": rep, "success": ok,
                                 "err": float(rng.lognormal(-3 if ok else 0, 0.3)),
                                 "pb_status": "done", "pb_error_kind": None, "pb_error": None,
                                 "pb_attempts": 1, "pb_duration_s": float(rng.uniform(1, 20)),
                                 "pb_host": QUOTES if rep == 0 else "node-2",
                                 "pb_node": IMG if rep == 0 else ("node-2" if rep == 1 else "node-10"),
                                 "pb_run_id": "r1",
                                 "pb_finished_at": 1.7e9 + len(rows)})
    df = pd.DataFrame(rows)
    df["success"] = df["success"].astype(object)
    if states in ("failures", "half", "started"):
        fail = (df["rho"] == 1.0) & (df["rep"] < 2)
        df.loc[fail, ["pb_status", "pb_error_kind", "pb_error"]] = ["failed", "exception", TRACEBACK]
        df.loc[fail & (df["delta"] > 0.5), ["pb_error_kind", "pb_error"]] = ["timeout", "timed out after 60 s"]
        df.loc[fail, ["success", "err"]] = None
        df.loc[fail, "pb_attempts"] = 3
    if states == "half":
        todo = df.index[df.index % 2 == 1]
        df.loc[todo, "pb_status"] = np.where(df.loc[todo].index % 4 == 1, "running", "pending")
    if states == "started":
        df.loc[:, "pb_status"] = "pending"
    unfinished = df["pb_status"].isin(["pending", "running"])
    df.loc[unfinished, ["success", "err", "pb_duration_s", "pb_host", "pb_node", "pb_finished_at", "pb_error_kind", "pb_error"]] = None
    df.attrs["params"] = ["delta", "rho", "method", "rep"]
    df.attrs["metrics"] = ["success", "err"]
    return df


def make_series(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in results[results["pb_status"] == "done"].itertuples():
        for step in range(0, 50, 5):
            rows.append({"pb_task_id": r.pb_task_id, "pb_step": step, "pb_time": step * 0.1,
                         "loss": math.exp(-step * r.delta / 10) + 0.01 * r.rep,
                         "delta": r.delta, "rho": r.rho, "method": r.method, "rep": r.rep})
    return pd.DataFrame(rows)


def make_context(states: str = "finished") -> dict:
    df = make_results(states)
    return {
        "title": f"Phase transition {PAYLOAD}",
        "name": "phase-" + states,
        "description": f"Where does recovery fail? {QUOTES} {IMG}",
        "spec_text": f'name = "phase"\n[space]\ndelta = [0.1, 0.3]\nmethod = ["lasso", "{PAYLOAD}"]\n',
        "spec_file": "experiment.toml",
        "space_description": "grid(delta=linspace(0.1, 0.9, 5), rho=linspace(0, 1, 6), "
                             f"method=['lasso', '{PAYLOAD}']) * reps(4)",
        "results_df": df,
        "series_df": make_series(df),
        "units": {"delta": "n/N", "rho": f"k/n {IMG}"},
        "figures": [
            {"kind": "heatmap", "x": "delta", "y": "rho", "value": "success", "boundary": 0.5,
             "caption": f"caption {PAYLOAD}"},
            {"kind": "line", "x": "rho", "y": "err", "hue": "method", "err": "ci", "logy": True},
            {"kind": "learning_curves", "metric": "loss", "hue": "delta"},
            {"kind": "histogram", "column": "pb_duration_s", "title": f"run time {QUOTES}"},
        ],
        "runs": [{"run_id": "r1", "started_at": "2026-11-25 08:00", "finished_at": "2026-11-25 09:00",
                  "status": "finished", "backend": "local", "message": f"first try {PAYLOAD}",
                  "provenance": {"git_commit": "0123abcd", "git_dirty": True, "host": QUOTES,
                                 "python": "3.11.7", "packages": {"numpy": "2.0", IMG: "1"},
                                 "diff": f"--- a/sim.py\n+++ b/sim.py\n+x = '{PAYLOAD}'\n"}}],
    }
