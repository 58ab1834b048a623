"""Static bundle plans for batch schedulers (execution/bundling.static_plan and the SLURM sizes
built on it): a partition of one CPU gets one bundle of many tasks, not one bundle per task."""
from pushbutton.execution import bundling


def test_static_plan_without_an_estimate():
    # one CPU: one bundle (the SLURM submitter then caps it at UNKNOWN_MAX_TASKS)
    assert bundling.static_plan(2000, None, max_bundles=10000, min_bundles=1) == 2000
    assert bundling.static_plan(2000, None, max_bundles=10000, min_bundles=3) == 667
    assert bundling.static_plan(2000, None, max_bundles=500, min_bundles=1) == 2000
    # a measured duration: about target_bundle_s per bundle
    assert bundling.static_plan(2000, 1.0, max_bundles=10000, min_bundles=4,
                                target_bundle_s=100) == 100
    assert bundling.static_plan(10, None, fixed=3) == 3


def test_guided_bundles_are_bounded_in_tasks():
    """Issue 14, goal 4: at 10^7 no-op tasks the first hand-outs were 1.6 million tasks each,
    whose task lists the driver held (and ingested) at once; now at most MAX_TASKS."""
    for remaining in (10 ** 6, 10 ** 7):
        for est in (1e-6, 1e-5, None):
            n = bundling.guided_size(remaining, 2, est)
            assert 1 <= n <= bundling.MAX_TASKS == 50_000, (remaining, est, n)
    assert bundling.guided_size(10 ** 7, 2, 1e-5) == 50_000  # still as large as allowed
    assert bundling.guided_size(100, 2, 1e-5) == 100  # the tail: what remains
    assert bundling.guided_size(10 ** 7, 2, 1e-5, fixed=200_000) == 200_000  # the user's size
