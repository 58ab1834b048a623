"""`pb run --on TARGET --wait`: fire-and-forget, then follow until every result is in."""
from .conftest import pb


def test_run_wait_returns_when_results_are_in(slurm, project):
    (project / "experiment.toml").write_text("""
name = "waited"
function = "slurm_tasks:square"
[space]
grid = { x = { range = [0, 30] } }
""")
    r = pb("run", "experiment.toml", "--on", "local-slurm", "--wait", timeout=240)
    assert "submitted" in r.stdout and "waited: 30 done, 0 failed, 0 not run" in r.stdout
    csv = pb("results", "--format", "csv").stdout.splitlines()
    assert len(csv) == 31
