"""The clusters and targets page against the real one-host SLURM cluster (scripts/setup.d/
20-slurm.sh; `. .services/env.sh`): reachability, this user's queue and the nodes with their
SLURM state, one round trip per target per poll, cached; a slow or broken target never holds
the page; target names and descriptions render as text. Skips without the cluster, except
under CI=true."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from starlette.testclient import TestClient

pytestmark = pytest.mark.slurm
CI = os.environ.get("CI") == "true"
TOKEN = "clusters-token"
HOSTILE = "<img src=x onerror=\"window.__pwned=1\">"


def _slurm_ok() -> bool:
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return False
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return r.returncode == 0 and bool(r.stdout.strip())


@pytest.fixture(scope="module")
def slurm_project(tmp_path_factory):
    if not _slurm_ok():
        if CI:
            pytest.fail("the test SLURM cluster is not available under CI=true")
        pytest.skip("the test SLURM cluster is not running (scripts/setup.d/20-slurm.sh)")
    root = tmp_path_factory.mktemp("clusters")
    (root / ".pushbutton").mkdir()
    from pushbutton.store.database import Store
    Store(root).close()
    count = root / "polls.txt"
    (root / "pushbutton-targets.toml").write_text(f"""
[targets.here]
scheduler = "slurm"
description = '{HOSTILE}'
setup = ["echo poll >> {count}"]

[targets.slow]
scheduler = "slurm"
setup = ["sleep 8"]

[targets.broken]
scheduler = "slurm"
setup = ["echo no module named python >&2", "exit 3"]

[targets.dask-gone]
scheduler = "dask"
address = "tcp://127.0.0.1:9"
""")
    job = subprocess.run(["sbatch", "--parsable", "-J", "pb-ui-queue-test", "--begin=now+600",
                          "--wrap", "sleep 1"], capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stderr
    jid = job.stdout.strip().split(";")[0]
    yield root, count, jid
    subprocess.run(["scancel", jid], timeout=30)


@pytest.fixture(scope="module")
def client(slurm_project):
    from pushbutton.ui.app import create_app
    root = slurm_project[0]
    app = create_app(root, TOKEN)
    c = TestClient(app, base_url="http://127.0.0.1")
    c.get(f"/?token={TOKEN}", headers={"Accept": "text/html"})
    yield c
    app.state.clusters_poller.close()


def _row(snapshot, name):
    return next(t for t in snapshot["targets"] if t["name"] == name)


def test_the_page_needs_the_token(client):
    fresh = TestClient(client.app, base_url="http://127.0.0.1")
    for path in ("/clusters", "/clusters/part", "/api/clusters"):
        assert fresh.get(path).status_code == 403


def test_targets_reachability_queue_and_nodes(slurm_project, client):
    root, count, jid = slurm_project
    t0 = time.monotonic()
    page = client.get("/clusters")
    took = time.monotonic() - t0
    assert page.status_code == 200
    assert took < 5, took  # the slow target (8 s of setup) did not hold the page
    assert '<a href="/clusters" class="here">Clusters</a>' in page.text  # in the nav
    snap = client.get("/api/clusters").json()
    here = _row(snap, "here")["status"]
    assert here["reachable"] is True
    jobs = {j["job"]: j for j in here["queue"]}
    assert jid in jobs and jobs[jid]["name"] == "pb-ui-queue-test"
    assert jobs[jid]["state"] == "PENDING" and here["by_state"]["PENDING"] >= 1
    node = os.environ.get("PB_TEST_SLURM_NODE") or os.uname().nodename.split(".")[0]
    nodes = {n["node"]: n for n in here["nodes"]}
    assert node in nodes and nodes[node]["state"].rstrip("*~#") in (
        "idle", "mixed", "allocated", "completing")
    assert int(nodes[node]["cpus"]) >= 1
    # the page says it in words, the hostile description as text
    assert "pb-ui-queue-test" in page.text and node in page.text
    assert HOSTILE not in page.text and "&lt;img src=x onerror=" in page.text
    slow = _row(snap, "slow")
    assert slow["status"] is None and "checking…" in page.text  # still polling
    broken = _row(snap, "broken")["status"]
    assert broken["reachable"] is False and "no module named python" in broken["why"]
    gone = _row(snap, "dask-gone")["status"]
    assert gone["reachable"] is False and "127.0.0.1:9" in gone["why"]
    assert _row(snap, "local")["status"]["reachable"] is True


def test_one_round_trip_per_poll_and_cached(slurm_project, client):
    root, count, _ = slurm_project
    n = len(count.read_text().splitlines())
    for _ in range(5):  # within the cache's few seconds: no new poll
        assert client.get("/clusters/part").status_code == 200
    assert len(count.read_text().splitlines()) == n
    time.sleep(5.2)
    client.get("/clusters/part")  # due again: one poll (one squeue + sinfo script) starts
    deadline = time.monotonic() + 10
    while len(count.read_text().splitlines()) == n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(count.read_text().splitlines()) == n + 1
