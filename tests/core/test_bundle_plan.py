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
