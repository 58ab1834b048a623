"""How a submission deals its pending tasks to bundles (one bundle = one array element).

The number of bundles and their size come from `submit.bundle_size` (the site limits); this
module only decides which task goes where, and in which order a bundle runs its tasks:

* `balanced` (the default): when task times are known, each task gets a predicted duration
  (`Predictor`) and the tasks are dealt longest-expected first to the bundle with the least
  predicted work so far (LPT); each bundle runs its tasks longest first and the array's
  elements are ordered by their predicted work, largest first. With no task time known yet
  (a first run), the tasks are dealt in the space's order like cards, serpentine (0, 1, ..,
  k-1, k-1, .., 0, 0, 1, ..), so a cost that grows or shrinks along any axis of a grid is
  spread evenly over the bundles.
* `contiguous`: bundle i takes tasks i*per .. (i+1)*per-1 in the space's order (the plan before
  balancing; a target's `plan = "contiguous"` keeps it).
"""
from __future__ import annotations

import bisect
import heapq
import json
import math

from pushbutton.execution.slurm import recorded

PLANS = ("balanced", "contiguous")
SAMPLE = recorded.SAMPLE


class Predictor:
    """Predicted task duration from earlier task times of the same experiment.

    A task that ran before (an earlier attempt, a `--rerun`) is predicted by its own last time.
    Any other task by a main-effects model in log time: log d = mu + sum over parameters of
    the mean log time of the known tasks with that parameter value minus mu; a value never
    seen takes the effect of the nearest known value (numbers) or none (other values)."""

    def __init__(self, samples: list[tuple[dict, float]]):
        logs = [math.log(max(d, 1e-6)) for _, d in samples]
        self.mu = sum(logs) / len(logs)
        acc: dict[str, dict] = {}
        for (params, _), lg in zip(samples, logs):
            for k, v in params.items():
                s = acc.setdefault(k, {}).setdefault(_key(v), [0.0, 0, v])
                s[0] += lg
                s[1] += 1
        self.effects = {k: {vk: (tot / n - self.mu) for vk, (tot, n, _) in vals.items()}
                        for k, vals in acc.items()}
        self.numeric = {}
        for k, vals in acc.items():
            nums = sorted((v, self.effects[k][vk]) for vk, (_, _, v) in vals.items()
                          if _is_num(v))
            if nums:
                self.numeric[k] = ([v for v, _ in nums], [e for _, e in nums])
        self.n = len(samples)

    def __call__(self, params: dict) -> float:
        lg = self.mu
        for k, v in params.items():
            eff = self.effects.get(k)
            if eff is None:
                continue
            e = eff.get(_key(v))
            if e is None and _is_num(v) and k in self.numeric:
                xs, es = self.numeric[k]
                i = bisect.bisect_left(xs, v)
                cand = [j for j in (i - 1, i) if 0 <= j < len(xs)]
                e = es[min(cand, key=lambda j: abs(xs[j] - v))]
            lg += e or 0.0
        return math.exp(lg)

    @classmethod
    def fit(cls, db, eid: int, times: dict) -> "Predictor | None":
        """From recorded task times (task id -> seconds); the parameters come from the
        tasks table. None when there are none."""
        if not times:
            return None
        ids = list(times)
        ids = ids[::max(1, math.ceil(len(ids) / SAMPLE))]
        samples = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = ("SELECT id, params FROM tasks WHERE exp=? AND id IN (%s)"
                 % ",".join("?" * len(chunk)))
            samples += [(json.loads(p), times[tid]) for tid, p in db.execute(q, (eid, *chunk))]
        return cls(samples) if samples else None


def _key(v):
    t = type(v)
    if t is str or t is int or t is float or t is bool or v is None:
        return t, v  # 1, 1.0 and True stay apart, as in JSON (json.dumps costs ~25 us)
    return json.dumps(v, sort_keys=True, default=str)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def deal(rows: list, per: int, plan: str = "balanced", predicted: list[float] | None = None,
         ) -> list[list]:
    """Split `rows` (in the space's order) into ceil(len/per) bundles by `plan`.
    predicted: a duration per row (balanced plan with known times), else None."""
    if not rows:
        return []
    k = math.ceil(len(rows) / max(1, per))
    if plan == "contiguous" or k == 1 and predicted is None:
        return [rows[i:i + per] for i in range(0, len(rows), per)]
    if predicted is None:
        groups: list[list] = [[] for _ in range(k)]
        for i, r in enumerate(rows):
            rnd, pos = divmod(i, k)
            groups[pos if rnd % 2 == 0 else k - 1 - pos].append(r)
        return groups
    return _lpt(rows, k, predicted)[0]


def _lpt(rows: list, k: int, predicted: list[float]) -> tuple[list[list], list[float]]:
    """Longest first, each to the least-loaded of k bundles: (groups, predicted work of
    each), the busiest first."""
    order = sorted(range(len(rows)), key=predicted.__getitem__, reverse=True)
    heap = [(0.0, b) for b in range(k)]  # (predicted work, bundle)
    groups = [[] for _ in range(k)]
    loads = [0.0] * k
    for i in order:  # longest first, each to the least-loaded bundle: in-bundle order too
        load, b = heap[0]
        groups[b].append(rows[i])
        heapq.heapreplace(heap, (load + predicted[i], b))
    for load, b in heap:
        loads[b] = load
    ranked = [b for b in sorted(range(k), key=lambda b: -loads[b]) if groups[b]]
    return [groups[b] for b in ranked], [loads[b] for b in ranked]


def predictions(predictor: "Predictor | None", rows: list, times) -> list[float] | None:
    """A predicted duration per row (task id at index 1, parameters' JSON at 2): its own
    recorded time when there is one (times: a recorded.Recorded, or task id -> seconds),
    else the predictor's; None without a predictor."""
    if predictor is None:
        return None
    ids = [r[1] for r in rows]
    if isinstance(times, recorded.Recorded):  # a done attempt only where it was reset
        own = times.own(ids, [bool(r[4]) for r in rows] if rows and len(rows[0]) > 4 else None)
    else:
        own = [times.get(t) for t in ids]
    return [predictor(json.loads(r[2])) if o is None else o for r, o in zip(rows, own)]


def plan(store, eid: int, name: str, rows: list, per: int, how: str = "balanced",
         rec: "recorded.Recorded | None" = None):
    """The rows (rowid, id, params, ...) dealt to bundles: (groups, predictor or None,
    predicted work per group or None). rec: the recorded times, when the caller read them
    already (once per submit round: submit_pending)."""
    if how == "contiguous" or not rows:
        return deal(rows, per, "contiguous"), None, None
    if rec is None:
        rec = recorded.read(store, eid, name)
    pred = _fitted(store, eid, rec)
    est = predictions(pred, rows, rec)
    if est is None:
        return deal(rows, per, how), None, None
    groups, loads = _lpt(rows, math.ceil(len(rows) / max(1, per)), est)
    return groups, pred, loads


_FITS: dict = {}  # (store folder, experiment) -> (recorded times it was fitted on, Predictor)
REFIT = 1.25  # a harvest's retry rounds refit once the recorded times grew by a quarter


def _fitted(store, eid: int, rec) -> "Predictor | None":
    """The predictor of these recorded times: fitted once per process, again when the
    experiment recorded REFIT times as many (or fewer: a reset) as the last fit saw."""
    if not rec.n:
        return None
    key = (str(store.dir), eid)
    n0, pred = _FITS.get(key, (0, None))
    if pred is None or not n0 <= rec.n < n0 * REFIT:
        pred = Predictor.fit(store.db, eid, rec.sample())
        _FITS[key] = (rec.n, pred)
    return pred


def describe(plan: str, predictor: "Predictor | None", loads: list[float] | None,
             sizes: list[int] | None = None) -> str:
    """One line for --dry-run: how the tasks are dealt (and the predicted work per bundle)."""
    if plan == "contiguous":
        return ("  tasks dealt in contiguous runs of the space's order (target plan = "
                "\"contiguous\")")
    if predictor is None:
        return ("  tasks dealt across the bundles in the space's order, serpentine (no task "
                "times recorded yet to balance by)")
    line = (f"  tasks dealt longest-expected first to the least-loaded bundle (durations "
            f"predicted from {predictor.n:,} recorded task times)")
    if loads:
        line += f"; predicted work per bundle {min(loads):.3g}-{max(loads):.3g} s"
    if sizes and min(sizes) != max(sizes):
        line += f", {min(sizes):,}-{max(sizes):,} tasks each"
    return line
