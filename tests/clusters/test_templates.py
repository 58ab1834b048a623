"""Cluster templates: built-ins without a file, files overriding them by name, flags over both,
and every bad template named by file, key and fix (through the real CLI where a user meets it)."""
import json
import os
import subprocess
import sys

import pytest

from pushbutton.clusters import templates as T
from pushbutton.clusters.cluster import ClusterError


@pytest.fixture
def home(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return proj


def pb(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *args], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ))
    if check and r.returncode != 0:
        raise AssertionError(f"pb {args} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def test_builtins_exist_without_a_file(home):
    found = T.load_all()
    assert {"local", "netns", "ssh", "gce", "aws", "openstack"} <= set(found)
    nt = found["netns"]
    assert nt.provider == "netns" and nt.file == "built-in"
    assert list(nt.nodes) == ["compute"] and nt.nodes["compute"].count == 2
    assert nt.nodes["compute"].max == 2 + T.SLOTS      # free FUTURE slots for resize
    assert found["local"].nodes["compute"].max == 1
    assert found["aws"].options == {} and found["ssh"].options == {}


def test_files_override_by_name_project_over_user(home, tmp_path):
    user = tmp_path / "config" / "pushbutton" / "clusters.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[templates.lab]\nprovider = "netns"\n[templates.lab.nodes.compute]\n'
                    'count = 2\n[templates.netns]\npartition = "mine"\n')
    (home / T.PROJECT_FILE).write_text(
        '[templates.lab]\nprovider = "netns"\nslurm = { SchedulerParameters = "bf_interval=9" }\n'
        'setup = [["true"]]\n[templates.lab.nodes.compute]\ncount = 4\ncpus = 2\n'
        '[templates.lab.nodes.gpu]\ncount = 1\ngres = "gpu:1"\n[templates.lab.netns]\n'
        'subnet = "10.77.3.0/24"\n')
    found = T.load_all()
    lab = found["lab"]
    assert lab.file == str(home / T.PROJECT_FILE)
    assert lab.nodes["compute"].count == 4 and lab.nodes["gpu"].gres == "gpu:1"
    assert lab.options == {"subnet": "10.77.3.0/24"} and lab.setup == [["true"]]
    # a file's [templates.netns] keeps the built-in's keys it does not set
    assert found["netns"].partition == "mine" and found["netns"].provider == "netns"
    assert found["netns"].file == str(user)
    # flags override: N for the default group, GROUP=N for another
    t = T.with_flags(lab, nodes=("3", "gpu=2"), cpus=("gpu=4",), memory=("512",))
    assert (t.nodes["compute"].count, t.nodes["gpu"].count, t.nodes["gpu"].cpus,
            t.nodes["compute"].memory) == (3, 2, 4, 512)
    assert t.nodes["compute"].max == 3 + T.SLOTS
    with pytest.raises(ClusterError, match="no node group 'cpu'"):
        T.with_flags(lab, nodes=("cpu=2",))
    with pytest.raises(ClusterError, match="must be a whole number >= 1"):
        T.with_flags(lab, cpus=("0",))
    rows = json.loads(pb("cluster", "templates", "--json").stdout)
    where = {r["name"]: r["defined"] for r in rows}
    assert where["lab"] == str(home / T.PROJECT_FILE) and where["aws"] == "built-in"


@pytest.mark.parametrize("body, key, words", [
    ('provider = "netns"\nnodez = {}', "templates.bad.nodez", ["unknown key 'nodez'",
                                                              "did you mean 'nodes'"]),
    ('provider = "netns"\n[templates.bad.nodes.compute]\ncuont = 2', "templates.bad.nodes."
     "compute.cuont", ["unknown key 'cuont'", "did you mean 'count'"]),
    ('provider = "netns"\n[templates.bad.nodes.compute]\ncpus = 0',
     "templates.bad.nodes.compute.cpus", [">= 1"]),
    ('provider = "netns"\n[templates.bad.nodes.compute]\ncount = "three"',
     "templates.bad.nodes.compute.count", ["whole number"]),
    ('provider = "netns"\n[templates.bad.nodes.compute]\ngres = "gpu"',
     "templates.bad.nodes.compute.gres", ["NAME[:TYPE]:COUNT"]),
    ('provider = "netns"\n[templates.bad.nodes.compute]\ncount = 3\nmax = 2',
     "templates.bad.nodes.compute", ["max (2) is below count (3)"]),
    ('provider = "netns"\nslurm = { SchedulerParameter = "x" }',
     "templates.bad.slurm.SchedulerParameter",
     ["not a slurm.conf key", "did you mean 'SchedulerParameters'"]),
    ('provider = "netns"\nslurm = { SlurmctldPort = 1 }', "templates.bad.slurm.SlurmctldPort",
     ["written by pushbutton"]),
    ('provider = "netns"\nsetup = ["pip install numpy"]', "templates.bad.setup",
     ["list of argv lists"]),
    ('provider = "nets"', "templates.bad.provider", ["provider is one of: local, netns"]),
    ('nodes = {}', "templates.bad.provider", ["names no provider"]),
    ('provider = "netns"\n[templates.bad.ssh]\nhosts = ["a"]', "templates.bad",
     ["table is for provider ssh"]),
])
def test_bad_templates_name_file_key_and_fix(home, body, key, words):
    f = home / T.PROJECT_FILE
    f.write_text(f"[templates.bad]\n{body}\n")
    r = pb("cluster", "up", "bad", "pbct1", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr
    assert str(f) in err and f"key '{key}" in err, err
    for w in words:
        assert w in err, err
    assert "Traceback" not in err


def test_unknown_template_provider_and_file_errors(home, tmp_path):
    r = pb("cluster", "up", "netsn", "pbct2", check=False)
    assert r.returncode == 2 and "no cluster template named 'netsn'" in r.stderr
    assert "did you mean 'netns'" in r.stderr and T.PROJECT_FILE in r.stderr
    (home / T.PROJECT_FILE).write_text("[cluster.x]\nprovider = 'netns'\n")
    r = pb("cluster", "templates", check=False)
    assert r.returncode == 2 and "unknown top-level key 'cluster'" in r.stderr
    assert "[templates.NAME]" in r.stderr
    (home / T.PROJECT_FILE).write_text("[templates.x\n")
    r = pb("cluster", "templates", check=False)
    assert r.returncode == 2 and "not valid TOML" in r.stderr and T.PROJECT_FILE in r.stderr
    # a provider whose module is not in this installation: a message, not a traceback
    from pushbutton.clusters.providers import REGISTRY, provider_class
    REGISTRY["pbctest"] = ("no_such_module", "X")
    try:
        with pytest.raises(ClusterError, match="provider 'pbctest' is not available"):
            provider_class("pbctest")
    finally:
        del REGISTRY["pbctest"]
    with pytest.raises(ClusterError, match="unknown provider 'nope'"):
        provider_class("nope")


def test_netns_options_are_checked_by_the_provider(home):
    (home / T.PROJECT_FILE).write_text('[templates.n]\nprovider = "netns"\n'
                                       '[templates.n.netns]\nsubnett = "10.1.2.0/24"\n')
    r = pb("cluster", "up", "n", "pbct3", "--dry-run", check=False)
    assert r.returncode == 2 and "key 'templates.n.netns.subnett'" in r.stderr
    assert "did you mean 'subnet'" in r.stderr
    (home / T.PROJECT_FILE).write_text('[templates.n]\nprovider = "netns"\n'
                                       '[templates.n.netns]\nsubnet = "8.8.8.0/24"\n')
    r = pb("cluster", "up", "n", "pbct3", "--dry-run", check=False)
    if os.geteuid() == 0:
        assert r.returncode == 2 and "must be a private IPv4 network" in r.stderr, r.stderr
    r = pb("cluster", "up", "netns", "pbct3", "--dry-run", "--nodes", "3")
    assert "n3: namespace pbct3-n3" in r.stdout or os.geteuid() != 0


def test_slurm_conf_render_slots_and_gres():
    from pushbutton.clusters.providers.base import Node
    from pushbutton.clusters.slurm_conf import _hostlist, gres_conf, render
    from pathlib import Path
    nodes = [Node("n1", "compute", 1, 1024, None, "10.1.2.2"),
             Node("g1", "gpu", 2, 2048, "gpu:1", "10.1.2.3")]
    future = [Node(f"n{i}", "compute", 1, 1024) for i in (2, 3, 4, 7)] + \
        [Node("e1", "el", 1, 512, elastic=True)]
    text = render(name="Lab-1", ctl_host="h", ctl_addr="10.1.2.1", ctld_port=1, slurmd_port=2,
                  user="u", state_dir=Path("/s"), log_dir=Path("/l"), spool_dir=Path("/sp"),
                  pid_dir=Path("/p"), munge_socket=None, nodes=nodes, future=future[:4],
                  extra={"SlurmdTimeout": 20, "DebugFlags": "Power"},
                  power={"SuspendProgram": "/x/suspend"})
    lines = text.splitlines()
    assert "ClusterName=lab1" in lines and "SlurmctldHost=h(10.1.2.1)" in lines
    assert "NodeName=n1 NodeAddr=10.1.2.2 NodeHostname=n1 CPUs=1 RealMemory=1024 " \
           "State=UNKNOWN" in lines
    assert "NodeName=n[2-4,7] CPUs=1 RealMemory=1024 State=FUTURE" in lines
    assert "SlurmdTimeout=20" in lines and "SlurmdTimeout=15" not in lines
    assert "DebugFlags=Power,NO_CONF_HASH" in lines and "SuspendProgram=/x/suspend" in lines
    assert "GresTypes=gpu" in lines and "SlurmdPidFile=/p/slurmd-%n.pid" in lines
    el = render(name="x", ctl_host="h", ctl_addr=None, ctld_port=1, slurmd_port=2, user="u",
                state_dir=Path("/s"), log_dir=Path("/l"), spool_dir=Path("/sp"),
                pid_dir=Path("/p"), munge_socket=None, nodes=[future[-1]], future=[])
    assert "NodeName=e1 CPUs=1 RealMemory=512 State=CLOUD" in el.splitlines()
    nodes.append(Node("f1", "fpga", 1, 1024, "fpga:xil:2"))
    assert gres_conf(nodes, lambda n, name, c: f"/d/{n.name}/{name}[0-{c - 1}]") == (
        "# Generated by `pb cluster`\nNodeName=g1 Name=gpu File=/d/g1/gpu[0-0]\n"
        "NodeName=f1 Name=fpga Type=xil Count=2\n")
    assert _hostlist(["a1", "a2", "b3"]) == "a1,a2,b3" and _hostlist(["n9"]) == "n9"
