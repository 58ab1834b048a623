"""How many tasks go into one bundle.

Locally the driver hands out bundles as workers free up (guided self-scheduling): each new
bundle takes a share of what remains, so early bundles are large (little overhead per task) and
the last ones small (no worker idles at the end). A batch scheduler gets a static plan sized to
the site's limits instead (see `static_plan`)."""
from __future__ import annotations

import math


MAX_TASKS = 50_000  # a bundle's task list is held by the driver (and ingested) at once


def guided_size(remaining: int, workers: int, est_task_s: float | None = None,
                fixed: int = 0, max_bundle_s: float = 30.0, factor: int = 3,
                min_bundle_s: float = 0.05) -> int:
    """Tasks for the next bundle when a worker frees up."""
    if remaining <= 0:
        return 0
    if fixed:
        return min(fixed, remaining)
    n = math.ceil(remaining / (factor * workers))
    if est_task_s and est_task_s > 0:
        # bound one bundle's duration so progress and crash recovery stay fine-grained
        n = min(n, max(1, int(max_bundle_s / est_task_s)))
        # and keep it long enough that a bundle's fixed cost (~1 ms) stays negligible
        n = max(n, min(remaining, int(min_bundle_s / est_task_s)))
    else:
        n = min(n, 2000)  # unknown cost: learn it from the first bundles
    # and bounded in tasks: what the driver holds per bundle does not grow with the space
    return max(1, min(n, remaining, MAX_TASKS))


def static_plan(n_tasks: int, est_task_s: float | None = None, max_bundles: int = 1000,
                target_bundle_s: float = 300.0, min_bundles: int = 1, fixed: int = 0) -> int:
    """Tasks per bundle for a batch scheduler: as few jobs as the site limits ask, each running
    about `target_bundle_s`, and never more than `max_bundles` jobs."""
    if n_tasks <= 0:
        return 0
    if fixed:
        return fixed
    per = math.ceil(n_tasks / max(1, max_bundles))
    if est_task_s and est_task_s > 0:
        per = max(per, min(n_tasks, max(1, int(target_bundle_s / est_task_s))))
    else:
        per = max(per, math.ceil(n_tasks / max(min_bundles, 1)))  # one CPU: one bundle
    return max(1, min(per, math.ceil(n_tasks / max(1, min_bundles))))


def describe(n_tasks: int, workers: int, fixed: int = 0) -> list[int]:
    """The bundle sizes a local run would use with equal task durations (for --dry-run)."""
    sizes, rem = [], n_tasks
    while rem > 0 and len(sizes) < 10_000:
        s = guided_size(rem, workers, fixed=fixed)
        sizes.append(s)
        rem -= s
    return sizes
