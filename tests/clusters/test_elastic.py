"""Elastic node groups: SLURM's own power saving (State=CLOUD nodes, ResumeProgram /
SuspendProgram / ResumeFailProgram written by pushbutton) starts and stops netns nodes.

The evidence: an idle elastic cluster runs no slurmd for its elastic nodes; a sweep with
`pb run --on` makes slurmctld call ResumeProgram, the nodes start and take work, the sweep
finishes with every result, and after SuspendTime slurmctld suspends them again (their slurmd
gone, sinfo `idle~`) while the `min` node stays up. A resume that fails (a setup step that
fails on the node) is logged, SLURM holds the node down, `pb cluster status` says what failed
and the next command, and after the fix `pb cluster up` puts the node back: the waiting sweep
then finishes on it. Names start with "pbe"."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from .conftest import leftovers, pb, slurm, status

TEMPLATE = '''
[templates.{name}]
provider = "netns"
{setup}
[templates.{name}.nodes.compute]
min = {min}
max = {max}
cpus = 1
memory = 500
[templates.{name}.elastic]
suspend_time = {suspend_time}
resume_timeout = {resume_timeout}
suspend_timeout = 5
'''


SUSPEND_S = 2  # SLURM's SuspendTime: short, so the tests wait little for nodes to go


def _template(project, name, min_, max_, setup="", resume_timeout=40):
    (project / "pushbutton-clusters.toml").write_text(TEMPLATE.format(
        name=name, min=min_, max=max_, setup=setup, resume_timeout=resume_timeout,
        suspend_time=SUSPEND_S))


def _nodes(name):
    return {n["name"]: n for n in status(name)["nodes"]}


def _slurmds(cl, node):
    """slurmd processes running in the node's namespace."""
    from pushbutton.clusters import hostnet
    out = []
    for p in hostnet.netns_pids(f"{cl.provider_data['tag']}-{node}"):
        try:
            if open(f"/proc/{p}/comm").read().strip() == "slurmd":
                out.append(p)
        except OSError:
            pass
    return out


def _wait(what, cond, timeout, step=0.5, cl=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    log = (cl.log_dir / "power.log") if cl is not None else None
    raise AssertionError(f"not within {timeout}s: {what}" + (
        f"\nsinfo: {slurm(cl, 'sinfo', '-h', '-N', '-o', '%N %T %E', check=False).stdout}"
        f"\npower.log:\n{log.read_text() if log.exists() else '-'}" if cl is not None else ""))


def _csv(exp):
    import csv
    import io
    return list(csv.DictReader(io.StringIO(pb("results", exp, "--format", "csv").stdout)))


# -- fast: the state lock and the slurm.conf of an elastic template ----------------------------
LOCKER = r'''
import sys, time
from pathlib import Path
from pushbutton.clusters.cluster import Cluster
from pushbutton.clusters import elastic
folder, name, go, use_lock = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1"
cl = Cluster.at(folder)
(go.parent / f"ready-{name}").touch()
while not go.exists():
    time.sleep(0.01)

def once():
    cl._data = None
    n = cl.node(name)          # read ...
    time.sleep(0.5)            # ... another process writes meanwhile ...
    n.extra["power"] = {"state": "on", "by": name}
    cl.update_node(n)          # ... write

if use_lock:
    with cl.lock():
        once()
else:
    once()
'''


def _race(tmp_path, use_lock: bool) -> int:
    """Six processes each record one node's power state at the same moment; how many of the
    six records survive."""
    from pushbutton.clusters.cluster import Cluster
    from pushbutton.clusters.providers.base import Node
    cl = Cluster.at(tmp_path / f"st-{use_lock}" / "pbelock")
    names = [f"n{i}" for i in range(1, 7)]
    cl.data.update(name=cl.name, steps={})
    cl.put_nodes([Node(n, "compute", elastic=True) for n in names])
    go = tmp_path / f"go-{use_lock}"
    script = tmp_path / "locker.py"
    script.write_text(LOCKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(cl.dir), n, str(go),
                               "1" if use_lock else "0"]) for n in names]
    _wait("the writers to start", lambda: all((tmp_path / f"ready-{n}").exists()
                                              for n in names), 60, 0.05)
    go.touch()
    for p in procs:
        assert p.wait(timeout=60) == 0
    for n in names:
        (tmp_path / f"ready-{n}").unlink()
    recs = json.loads(cl.meta_path.read_text())["nodes"]
    assert [r["name"] for r in recs] == names  # never a torn or emptied file
    return sum(1 for r in recs if (r["extra"].get("power") or {}).get("by") == r["name"])


def test_concurrent_power_calls_keep_every_record(tmp_path):
    """SLURM may run several power programs at once: under the cluster's lock every write
    survives; without it (the control) read-modify-writes lose each other's records."""
    assert _race(tmp_path, use_lock=True) == 6
    assert _race(tmp_path, use_lock=False) < 6


def test_elastic_slurm_conf_and_programs(tmp_path, monkeypatch):
    """The nodes of an elastic group: `min` always-on nodes excluded from power saving with
    every static node and slot, the rest State=CLOUD; the power programs name the
    interpreter, the package and the cluster's folder by absolute path."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    from pushbutton.clusters import controller, elastic
    from pushbutton.clusters.cluster import Cluster
    from pushbutton.clusters.providers.netns import NetnsProvider
    from pushbutton.clusters.state import plan_nodes
    from pushbutton.clusters.templates import parse
    t = parse({"templates": {"lab": {
        "provider": "netns", "slurm": {"PrivateData": "jobs"},
        "nodes": {"compute": {"count": 1, "max": 3},
                  "burst": {"min": 1, "max": 3, "cpus": 2, "memory": 700}},
        "elastic": {"suspend_time": 8, "resume_timeout": 50}}}})["lab"]
    cl = Cluster("pbelab")
    prov = NetnsProvider(cl, t)
    nodes = plan_nodes(t, prov)
    assert [(n.name, n.elastic) for n in nodes] == [
        ("n1", False), ("burst1", False), ("burst2", True), ("burst3", True)]
    cl.data.update(name=cl.name, steps={})
    cl.put_nodes(nodes)
    controller.ctl(cl).update(host="h", addr="10.1.2.1", ctld_port=1, slurmd_port=2, user="u")
    elastic.configure(cl, t, prov)
    try:
        controller.write_conf(cl, t, prov)
    finally:  # it makes the spool folder, in the temp dir when the state path is long
        if cl.run_dir != cl.dir:
            shutil.rmtree(cl.run_dir, ignore_errors=True)
    lines = cl.conf.read_text().splitlines()
    power = cl.dir / "power"
    for key in (f"ResumeProgram={power / 'resume'}", f"SuspendProgram={power / 'suspend'}",
                f"ResumeFailProgram={power / 'resume-fail'}", "SuspendTime=8",
                "ResumeTimeout=50", "SuspendTimeout=30", "PrivateData=jobs,cloud",
                "SuspendExcNodes=n[1-3],burst1",
                "NodeName=burst2 CPUs=2 RealMemory=700 State=CLOUD",
                "NodeName=burst3 CPUs=2 RealMemory=700 State=CLOUD",
                "NodeName=n[2-3] CPUs=1 RealMemory=1024 State=FUTURE"):
        assert key in lines, (key, lines)
    assert any(x.startswith("NodeName=burst1 ") and "State=UNKNOWN" in x for x in lines)
    assert any(x.startswith("SlurmctldParameters=power_save_interval=") for x in lines)
    text = (power / "resume").read_text()
    assert os.access(power / "resume", os.X_OK)
    assert f"exec {sys.executable} -m pushbutton cluster _power resume --dir {cl.dir}" in text
    assert f"PYTHONPATH={elastic.package_root()}" in text
    assert f">>{cl.log_dir / 'power.log'} 2>&1" in text
    # the slurmctld prolog that lets a job start as soon as its powered-up nodes registered
    assert f"PrologSlurmctld={power / 'prolog'}" in lines
    text = (power / "prolog").read_text()
    assert os.access(power / "prolog", os.X_OK) and f"SLURM_CONF={cl.conf}" in text
    assert "POWERING_UP" in text and "$(( $(date +%s) + 55 ))" in text  # ResumeTimeout + 5
    # ... unless the template names its own
    own = parse({"templates": {"lab": {
        "provider": "netns", "slurm": {"PrologSlurmctld": "/opt/site/prolog"},
        "nodes": {"burst": {"min": 0, "max": 2}}}}})["lab"]
    elastic.configure(cl, own, prov)
    assert "PrologSlurmctld" not in cl.data["power"]
    # a template without elastic groups gets no power saving at all
    plain = parse({"templates": {"p": {"provider": "netns"}}})["p"]
    elastic.configure(cl, plain, prov)
    assert "power" not in cl.data


@pytest.mark.parametrize("top, table, key, words", [
    ('slurm = { SuspendTime = 3 }', "", "templates.bad.slurm.SuspendTime",
     ["written by pushbutton for the elastic groups", "[templates.bad.elastic]"]),
    ("", "suspend_tim = 3", "templates.bad.elastic.suspend_tim",
     ["unknown key", "did you mean 'suspend_time'"]),
    ("", "resume_timeout = 0", "templates.bad.elastic.resume_timeout", [">= 1"]),
])
def test_bad_elastic_templates(tmp_path, monkeypatch, top, table, key, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "st"))
    f = tmp_path / "pushbutton-clusters.toml"
    f.write_text(f'[templates.bad]\nprovider = "netns"\n{top}\n'
                 '[templates.bad.nodes.compute]\nmin = 0\nmax = 2\n'
                 + (f"[templates.bad.elastic]\n{table}\n" if table else ""))
    r = pb("cluster", "up", "bad", "pbebad", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(f) in r.stderr and f"key '{key}'" in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "st" / "pushbutton" / "clusters" / "pbebad").exists()


# -- slow: real SLURM power saving on netns nodes ---------------------------------------------
@pytest.mark.slow
def test_elastic_sweep_starts_nodes_and_slurm_suspends_them(netns_clusters, project):
    cl = netns_clusters("pbee")
    _template(project, "pbee", 1, 3)
    r = pb("cluster", "up", "pbee")
    assert "3 node(s), 2 of them elastic" in r.stdout and "is up" in r.stdout, r.stdout
    assert "n2: starting" not in r.stdout and "n3: starting" not in r.stdout
    nodes = _nodes("pbee")
    assert (nodes["n1"]["slurm"], nodes["n1"]["power"]) == ("idle", "always on")
    for n in ("n2", "n3"):  # powered down: listed by sinfo (PrivateData=cloud), not running
        assert nodes[n]["slurm"] == "idle~" and nodes[n]["power"] == "off", nodes[n]
        assert nodes[n]["slurmd_pid"] is None and nodes[n]["stage"] == "planned"
    assert sorted(leftovers("pbee")["netns"]) == ["pbee-n1"]  # no machine for n2, n3
    out = pb("cluster", "status", "pbee").stdout
    assert "POWER" in out and "always on" in out and f"stops them after {SUSPEND_S}s idle" in out, out
    # the programs need nothing from slurmctld's environment: run one with none at all
    power = cl.dir / "power"
    assert subprocess.run(["env", "-i", str(power / "suspend"), "n1"], timeout=60).returncode == 0
    log = cl.log_dir / "power.log"
    assert "suspend: n1: an always-on node; left alone" in log.read_text()

    # a sweep: slurmctld powers n2 and n3 up for the jobs it gives them
    (project / "burst.toml").write_text(
        'name = "burst"\nfunction = "ctasks:quick"\n[space]\ngrid = { x = { range = [0, 12] } }'
        '\n[run]\nbundle_size = 2\n')
    t0 = time.time()
    run = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "burst.toml", "--on",
                            "pbee", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        seen = set()

        def started():
            for n in ("n2", "n3"):
                if _slurmds(cl, n):
                    seen.add(n)
            return seen == {"n2", "n3"}
        _wait("slurmd of n2 and n3 to start", started, 60, 0.2)
        t_started = time.time() - t0
        out, err = run.communicate(timeout=150)
    finally:
        if run.poll() is None:
            run.kill()
    t_sweep = time.time() - t0
    assert run.returncode == 0, out + err
    assert "burst: 12 done, 0 failed, 0 not run" in out, out + err
    rows = _csv("burst")
    assert len(rows) == 12 and {r["pb_status"] for r in rows} == {"done"}
    assert sorted(int(r["y"]) for r in rows) == sorted(x * x for x in range(12))
    assert {r["pb_host"] for r in rows} == {"n1", "n2", "n3"}
    text = log.read_text()
    assert "resume: slurmctld asks for" in text and "n2: started in" in text, text
    assert "n3: started in" in text, text
    # the jobs on n2 and n3 started when the nodes registered (the cluster's slurmctld prolog
    # ended their configuration), not at slurmctld's 30-s check (job_time_limit)
    ctld_log = (cl.log_dir / "slurmctld.log").read_text()
    assert "prolog_running_decr: Configuration for JobId=" in ctld_log, ctld_log[-2000:]
    assert "job_time_limit: Configuration for" not in ctld_log, ctld_log[-2000:]

    # idle for SuspendTime: slurmctld suspends them, their slurmd go; n1 (min) stays
    t1 = time.time()
    _wait("n2 and n3 to be powered down", lambda: all(
        x["slurm"] == "idle~" for n, x in _nodes("pbee").items() if n != "n1"), 60)
    t_suspend = time.time() - t1
    nodes = _nodes("pbee")
    for n in ("n2", "n3"):
        assert nodes[n]["power"] == "off" and nodes[n]["slurmd_pid"] is None, nodes[n]
        assert not _slurmds(cl, n)
    assert nodes["n1"]["slurm"] == "idle" and nodes["n1"]["slurmd_pid"]
    assert "suspend: n2: stopped" in log.read_text() and "suspend: n3: stopped" in log.read_text()
    assert "suspend: n1" not in log.read_text().split("left alone")[-1]  # never suspended
    sinfo = slurm(cl, "sinfo", "-h", "-N", "-o", "%N %T").stdout.split("\n")
    assert "n2 idle~" in sinfo and "n3 idle~" in sinfo, sinfo

    # an admin's power-up goes through the same program; down stops what SLURM started too
    slurm(cl, "scontrol", "update", "NodeName=n2", "State=POWER_UP")
    _wait("n2 to be powered up", lambda: _nodes("pbee")["n2"]["slurm"] == "idle", 30, 0.2, cl)
    assert _slurmds(cl, "n2") and _nodes("pbee")["n2"]["power"] == "on"
    r = pb("cluster", "down", "pbee")
    assert "n2: stopped slurmd" in r.stdout and "(n2, n3 started by SLURM)" in r.stdout, r.stdout
    assert leftovers("pbee", cl.dir) == {"netns": [], "links": [], "procs": []}
    print(f"elastic: n2+n3 slurmd up {t_started:.1f}s after the sweep started; sweep "
          f"{t_sweep:.1f}s; powered down {t_suspend:.1f}s after it ended")


@pytest.mark.slow
def test_elastic_resume_failure_is_reported_and_up_recovers(netns_clusters, project):
    cl = netns_clusters("pbef")
    broken = project / "broken"
    broken.write_text("")
    _template(project, "pbef", 0, 1, setup=f'setup = [["sh", "-c", "test ! -e {broken}"]]',
              resume_timeout=30)
    r = pb("cluster", "up", "pbef")
    assert "1 node(s), 1 of them elastic" in r.stdout and "setup step" not in r.stdout, r.stdout
    assert _nodes("pbef")["n1"]["slurm"] == "idle~"

    (project / "two.toml").write_text(
        'name = "two"\nfunction = "ctasks:quick"\n[space]\ngrid = { x = { range = [0, 2] } }'
        '\n[run]\nbundle_size = 2\n[resources]\nretries = 2\n')
    run = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "two.toml", "--on",
                            "pbef", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        n1 = _wait("n1's resume to fail", lambda: (lambda x: x if x["power"] == "resume failed"
                                                   else None)(_nodes("pbef")["n1"]), 60)
        assert n1["slurmd_pid"] is None and not _slurmds(cl, "n1")
        _wait("SLURM to hold n1 down", lambda: _nodes("pbef")["n1"]["slurm"].startswith("down"),
              30)
        st = status("pbef")
        assert st["nodes"][0]["reason"].startswith("pb: resume failed"), st["nodes"][0]
        assert len(st["problems"]) == 1, st["problems"]
        p = st["problems"][0]
        assert "setup step 1 failed on node n1" in p and "`pb cluster up pbef`" in p, p
        out = pb("cluster", "status", "pbef").stdout
        assert "resume failed" in out and "SLURM keeps it down" in out, out
        log = (cl.log_dir / "power.log").read_text()
        assert "n1: resume FAILED" in log and "setup step 1 failed" in log, log
        assert "n1: set DOWN in SLURM" in log
        time.sleep(3)
        assert run.poll() is None  # the sweep waits: its only node is down

        broken.unlink()  # the fix
        r = pb("cluster", "up", "pbef")
        assert "n1: back in the pool" in r.stdout, r.stdout
        assert status("pbef")["problems"] == []
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err
    assert "two: 2 done, 0 failed, 0 not run" in out, out + err
    assert {r["pb_host"] for r in _csv("two")} == {"n1"}
    assert "n1: started in" in (cl.log_dir / "power.log").read_text()
    _wait("n1 to be powered down again", lambda: _nodes("pbef")["n1"]["slurm"] == "idle~", 60)
    r = pb("cluster", "down", "pbef", "--delete")
    assert leftovers("pbef", cl.dir) == {"netns": [], "links": [], "procs": []}
