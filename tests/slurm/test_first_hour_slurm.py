"""What the tutorial's SLURM part turned up (issue 12, item 14): `pb harvest` ends with the top
causes of failures as `pb run` does, and `pb retry` retries where the last run ran."""
import re

import pytest

from .conftest import pb, ssh_target

pytestmark = [pytest.mark.slurm]


def test_harvest_names_the_causes_and_retry_goes_back_to_the_cluster(ssh_host, project):
    ssh_target(project, "tc")
    (project / "exp.toml").write_text(
        'name = "half"\nfunction = "slurm_tasks:fails_at"\n[space]\n'
        'grid = { x = [1, 2, 3], bad = [2] }\n[run]\nbundle_size = 3\n')
    r = pb("run", "exp.toml", "--on", "tc")
    assert "submitted 3 tasks as 1 bundle" in r.stdout, r.stdout
    assert "pb harvest half --wait" in r.stdout and "pb watch" not in r.stdout, r.stdout
    h = pb("harvest", "half", "--wait", "--timeout", "120", timeout=200)
    assert "half: finished; 2 done, 1 failed" in h.stdout, h.stdout
    assert "(1 bundle ingested this time)" in h.stdout
    # the cause and a task to look at, not "pb logs TASK" placeholders
    assert re.search(r"^    1  ValueError at slurm_tasks\.py:\d+ in fails_at$", h.stdout,
                     re.M), h.stdout
    tid = re.search(r"\(pb logs ([0-9a-f]{12})\)", h.stdout).group(1)
    assert "bad x on purpose" in pb("logs", tid).stdout
    assert "pb retry half" in h.stdout and "EXPERIMENT" not in h.stdout
    # retried on the cluster it failed on (it ran locally before)
    r = pb("retry", "half")
    assert r.stdout.startswith("retrying 1 failed task of half on tc\n"), r.stdout
    assert "submitted 1 task as 1 bundle" in r.stdout and "to 'tc'" in r.stdout, r.stdout
    h = pb("harvest", "half", "--wait", "--timeout", "120", timeout=200)
    assert "2 done, 1 failed" in h.stdout
    runs = pb("history", "half").stdout.splitlines()
    assert [row.split()[5] for row in runs[1:]] == ["tc", "tc"], runs
