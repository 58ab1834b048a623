"""Provider netns: a real multi-node SLURM on this host (namespaces, a bridge, one munged, one
slurmctld, a slurmd per node), driven through the CLI as a user would.

The evidence of the issue: up with 3 nodes -> a sweep with `pb run --on` spreads over all three
-> one node dies mid-sweep (kill -9 of its slurmd and of everything it runs: a node crash) -> its
tasks run again elsewhere, none lost or duplicated (counted on the raw Parquet parts) -> resize
+1 and the new node takes work while slurmctld keeps its pid -> resize to 0 nodes (sbatch still
queues) and back -> down leaves no namespace, link, process or file."""
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import leftovers, pb, slurm, status

pytestmark = pytest.mark.slow


def _results_rows(project, exp):
    """Every row of every Parquet part of the experiment (not the view), as dicts."""
    import pyarrow.parquet as pq
    parts = sorted((project / ".pushbutton" / "results" / exp).glob("*.parquet"))
    assert parts
    rows = []
    for p in parts:
        rows += pq.read_table(p).to_pylist()
    return rows


def _csv(exp):
    import csv
    import io
    text = pb("results", exp, "--format", "csv").stdout
    return list(csv.DictReader(io.StringIO(text)))


def _node_pids(cl, node):
    from pushbutton.clusters import hostnet
    return hostnet.netns_pids(f"{cl.provider_data['tag']}-{node}")


def _kill_node_mid_task(cl, node, timeout=60):
    """Once `node` has finished a task and is in the middle of its next one (its worker has run
    for 1.5 s, tasks take 1 s), kill -9 everything in its namespace."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = _node_pids(cl, node)
        workers = []
        for p in pids:
            try:
                if b"worker.py" in open(f"/proc/{p}/cmdline", "rb").read():
                    workers.append(p)
            except OSError:
                pass
        if workers:
            time.sleep(1.5)
            killed = _node_pids(cl, node)
            for p in killed:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return killed
        time.sleep(0.1)
    raise AssertionError(f"no task started on {node} within {timeout}s")


def test_netns_cluster_evidence(netns_clusters, project, tmp_path):
    cl = netns_clusters("pbcn")
    t0 = time.time()
    r = pb("cluster", "up", "netns", "pbcn", "--nodes", "3", "--cpus", "1", "--memory", "1000")
    assert "is up" in r.stdout and "target 'pbcn'" in r.stdout, r.stdout
    up_s = time.time() - t0
    st = status("pbcn")
    assert [(n["name"], n["slurm"]) for n in st["nodes"]] == \
        [("n1", "idle"), ("n2", "idle"), ("n3", "idle")], st
    addrs = [n["addr"] for n in st["nodes"]]
    assert len(set(addrs)) == 3 and st["controller"]["addr"] not in addrs
    ctld = st["controller"]["slurmctld_pid"]
    r = pb("cluster", "up", "netns", "pbcn")
    assert "nothing to do" in r.stdout, r.stdout

    # each node is its own host: its hostname and its address, from inside its namespace
    r = pb("cluster", "ssh", "pbcn", "n2", "--", "hostname")
    assert r.stdout.strip() == "n2"
    r = pb("cluster", "ssh", "pbcn", "n3", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {addrs[2]}/" in r.stdout

    # a sweep spreads over the three nodes; n2 dies in the middle of it
    (project / "spread.toml").write_text(
        'name = "spread"\nfunction = "ctasks:slow"\n[space]\ngrid = { x = { range = [0, 36] } }'
        '\n[run]\nbundle_size = 3\n[resources]\nretries = 2\n')
    run = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "spread.toml", "--on",
                            "pbcn", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        killed = _kill_node_mid_task(cl, "n2")
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert len(killed) >= 3  # slurmd, slurmstepd, the job's shell / the worker
    assert run.returncode == 0, out + err
    assert "spread: 36 done, 0 failed, 0 not run" in out, out + err
    rows = _csv("spread")
    assert len(rows) == 36 and {r["pb_status"] for r in rows} == {"done"}
    assert {r["pb_host"] for r in rows} == {"n1", "n2", "n3"}
    again = [r for r in rows if int(r["pb_attempts"]) > 1]
    assert again and {r["pb_host"] for r in again} <= {"n1", "n3"}, again  # ran elsewhere
    raw = _results_rows(project, "spread")
    ids = [r["pb_task_id"] for r in raw]
    assert len(ids) == 36 and len(set(ids)) == 36  # nothing lost, nothing twice
    assert sorted(r["y"] for r in raw) == sorted(x * x for x in range(36))
    st = status("pbcn")
    assert next(n for n in st["nodes"] if n["name"] == "n2")["slurm"].startswith("down")

    # `up` brings the dead node back (its slurmd only)
    r = pb("cluster", "up", "pbcn")
    assert "n2: starting slurmd" in r.stdout and "n1: starting" not in r.stdout, r.stdout
    assert "starting slurmctld" not in r.stdout
    assert [n["slurm"] for n in status("pbcn")["nodes"]] == ["idle"] * 3

    # resize +1: slurmctld sees n4 at once (same pid) and it takes work
    r = pb("cluster", "resize", "pbcn", "+1")
    assert "n4 idle" in r.stdout and "now has 4 node(s)" in r.stdout, r.stdout
    st = status("pbcn")
    assert st["controller"]["slurmctld_pid"] == ctld
    assert [n["name"] for n in st["nodes"]] == ["n1", "n2", "n3", "n4"]
    (project / "joined.toml").write_text(
        'name = "joined"\nfunction = "ctasks:slow"\n[space]\ngrid = { x = { range = [0, 8] } }'
        '\n[run]\nbundle_size = 1\n')
    r = pb("run", "joined.toml", "--on", "pbcn", "--wait")
    assert "joined: 8 done" in r.stdout, r.stdout
    assert "n4" in {r["pb_host"] for r in _csv("joined")}

    # resize to zero nodes: the cluster still answers, sbatch queues; nodes come back
    r = pb("cluster", "resize", "pbcn", "=0")
    assert "now has 0 node(s)" in r.stdout, r.stdout
    assert slurm(cl, "sinfo", "-h", "-N", "-o", "%N").stdout.strip() == ""
    assert leftovers("pbcn")["netns"] == []
    marker = tmp_path / "ran-on"
    job = slurm(cl, "sbatch", "--parsable", "-o", str(marker), "--wrap", "hostname")
    jid = job.stdout.strip().split(";")[0]
    assert slurm(cl, "squeue", "-h", "-j", jid, "-o", "%T").stdout.strip() == "PENDING"
    assert status("pbcn")["nodes"] == []
    r = pb("cluster", "resize", "pbcn", "=2")
    assert "now has 2 node(s)" in r.stdout, r.stdout
    deadline = time.time() + 30
    while time.time() < deadline and not (marker.exists() and marker.read_text().strip()):
        time.sleep(0.2)
    assert marker.read_text().strip() in ("n1", "n2")
    assert status("pbcn")["controller"]["slurmctld_pid"] == ctld

    # down: no namespace, link or process is left; --delete also removes files and target
    pids = [ctld, status("pbcn")["controller"]["munged_pid"]] + \
        [n["slurmd_pid"] for n in status("pbcn")["nodes"]]
    r = pb("cluster", "down", "pbcn")
    assert "is down" in r.stdout
    left = leftovers("pbcn", cl.dir)
    assert left == {"netns": [], "links": [], "procs": []}, left
    for p in pids:
        assert not os.path.exists(f"/proc/{p}") or \
            open(f"/proc/{p}/stat").read().split(")")[-1].split()[0] == "Z"
    r = pb("cluster", "down", "pbcn", "--delete")
    assert not cl.dir.exists() and not cl.run_dir.exists()
    assert "pbcn" not in (tmp_path / "config" / "pushbutton" / "targets.toml").read_text()
    assert leftovers("pbcn", cl.dir) == {"netns": [], "links": [], "procs": []}
    print(f"up of 3 netns nodes: {up_s:.1f}s")


def test_half_built_cluster_resumes(netns_clusters, project):
    """A setup step fails: up stops with the step, the key and the next command; fixed, up
    finishes from there. Daemons killed and a namespace lost between steps: up restarts just
    those. up on a cluster that is up says so and does nothing. A resize killed while it drains
    a node: the next up finishes the removal."""
    cl = netns_clusters("pbcr")
    flag = project / "ready.flag"
    (project / "pushbutton-clusters.toml").write_text(
        f'[templates.pbcr]\nprovider = "netns"\nsetup = [["test", "-e", "{flag}"]]\n'
        '[templates.pbcr.nodes.compute]\ncount = 2\nmemory = 500\ngres = "gpu:2"\n')
    r = pb("cluster", "up", "pbcr", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "setup step 1 failed on node n1" in r.stderr
    assert "key 'templates.pbcr.setup[0]'" in r.stderr
    assert "`pb cluster up pbcr` resumes" in r.stderr
    st = status("pbcr")
    assert [n["stage"] for n in st["nodes"]] == ["created", "created"]
    assert st["steps"] == ["prepare", "create", "controller"] and not st["up"]

    flag.write_text("")
    r = pb("cluster", "up", "pbcr")
    assert "steps done before: prepare, create, controller" in r.stdout
    assert "bridge" not in r.stdout and "namespace" not in r.stdout  # not made again
    assert "setting up 2 node(s)" in r.stdout and "n2: starting slurmd" in r.stdout
    assert "is up" in r.stdout, r.stdout
    st = status("pbcr")
    assert st["up"] and [n["stage"] for n in st["nodes"]] == ["running", "running"]
    # GRES: both GPUs of a node are schedulable (placeholder devices on netns nodes)
    r = slurm(cl, "srun", "--gres=gpu:2", "-N1", "hostname")
    assert r.stdout.strip() in ("n1", "n2")

    # kill slurmctld and n2's slurmd, lose n1's namespace (as a reboot would)
    from pushbutton.clusters import hostnet
    os.kill(st["controller"]["slurmctld_pid"], signal.SIGKILL)
    os.kill(st["nodes"][1]["slurmd_pid"], signal.SIGKILL)
    hostnet.del_netns("pbcr-n1")
    hostnet.del_link(f"pbcr-v{int(st['nodes'][0]['addr'].rsplit('.', 1)[1])}")
    time.sleep(0.3)
    r = pb("cluster", "up", "pbcr")
    assert "n1: its namespace is gone or broken; making it again" in r.stdout, r.stdout
    assert "starting slurmctld" in r.stdout
    assert "n1: setup step 1/1" in r.stdout and "n2: setup" not in r.stdout
    assert "n1: starting slurmd" in r.stdout and "n2: starting slurmd" in r.stdout
    assert "starting munged" not in r.stdout  # it was alive
    assert status("pbcr")["up"]
    r = pb("cluster", "up", "pbcr")
    assert "is already up" in r.stdout and "nothing to do" in r.stdout, r.stdout

    # a resize killed while it waits for a job on the leaving node: up finishes the removal
    job = slurm(cl, "sbatch", "--parsable", "-w", "n2", "-o", "/dev/null", "--wrap", "sleep 4")
    jid = job.stdout.strip().split(";")[0]
    deadline = time.time() + 20
    while slurm(cl, "squeue", "-h", "-j", jid, "-o", "%T").stdout.strip() != "RUNNING":
        assert time.time() < deadline
        time.sleep(0.2)
    rs = subprocess.Popen([sys.executable, "-m", "pushbutton", "cluster", "resize", "pbcr", "-1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not any(n["leaving"] and n["slurm"].startswith("drain") for n in status("pbcr")["nodes"]):
        assert time.time() < deadline and rs.poll() is None
        time.sleep(0.2)
    rs.kill()
    rs.wait()
    assert [(n["name"], n["leaving"]) for n in status("pbcr")["nodes"]] == \
        [("n1", False), ("n2", True)]
    r = pb("cluster", "up", "pbcr")
    assert "finishing the removal of n2 (an earlier resize)" in r.stdout, r.stdout
    assert "n2: removed" in r.stdout and "is up (n1 idle)" in r.stdout, r.stdout
    assert slurm(cl, "squeue", "-h", "-j", jid, "-o", "%T", check=False).stdout.strip() in (
        "", "COMPLETED")  # the job ran to its end before n2 left
    assert leftovers("pbcr")["netns"] == ["pbcr-n1"]

    r = pb("cluster", "down", "pbcr", "--delete")
    assert leftovers("pbcr", cl.dir) == {"netns": [], "links": [], "procs": []}
    assert not cl.dir.exists()
