"""The `ssh` provider against real sshd: the suite's loopback sshd as a one-machine cluster, and
a throwaway non-root user. Real munged, slurmctld, slurmd, sbatch and `pb run --on`. Without
sshd/SLURM the tests skip, except under CI=true. The provider on three network-namespace
machines, each with its own sshd, hostname and address (a real multi-node cluster: slurmctld
on the first, slurmd on all), is tested in test_wire.py, on the machines its CLI test uses.

Installing packages cannot happen here (munge and slurm-wlm are installed on this host, which
every namespace machine shares): the install path is tested through its decisions (which
packages, which command, the errors without root/sudo or package manager).
"""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pushbutton.clusters import remote_setup as rs
from pushbutton.clusters import remote_steps as steps
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.providers.ssh import SSHProvider, node_name, validate
from pushbutton.clusters.remote_conf import Layout, conf_ports, gres_conf, slurm_conf
from pushbutton.clusters.remote_lib import Remote


CI = os.environ.get("CI") == "true"
TASKS = '''import socket, time

def where(x, s=0.0):
    time.sleep(s)
    return {"x": x, "node": socket.gethostname()}
'''


def _missing(what):
    if CI:
        pytest.fail(f"{what} is not available under CI=true (see scripts/setup.d)")
    pytest.skip(f"{what} is not available; run scripts/test.sh (it starts the services)")


def _need_slurm_programs():
    for p in ("munged", "slurmd", "slurmctld"):
        if not (shutil.which(p) or os.access(f"/usr/sbin/{p}", os.X_OK)):
            _missing(f"{p} (Debian packages munge, slurm-wlm)")


def template(name="lab", setup=(), file=None, **ssh):
    return SimpleNamespace(name=name, provider="ssh", options=ssh, file=file,
                           setup=[list(a) for a in setup], partition="main", slurm={})


def provider(cluster, nodes=None, setup=(), **ssh):
    state = SimpleNamespace(name=cluster, nodes=nodes if nodes is not None else [])
    return SSHProvider(state, template(setup=setup, **ssh), say=lambda line: None)


def pb(*args, cwd, env=None, timeout=240, check=True):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def leftovers(*paths: str) -> list[str]:
    """Live processes whose command line names one of the paths (zombies do not count)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(x in cmd for x in paths):
            out.append(f"{p.name}: {cmd[:160]}")
    return out


def run_project(tmp_path: Path, name: str, target_fields: dict, n: int, s: float) -> Path:
    """A project with a target file naming the cluster and an experiment of n tasks."""
    from pushbutton.execution.targets import Target
    proj = tmp_path / f"proj-{name}"
    proj.mkdir()
    (proj / "pbs_tasks.py").write_text(TASKS)
    (proj / "exp.toml").write_text(
        f'name = "{name}"\nfunction = "pbs_tasks:where"\n[space]\n'
        f'grid = {{ x = {list(range(n))}, s = [{s}] }}\n[run]\nbundle_size = 1\n')
    t = Target(**target_fields)
    (proj / "pushbutton-targets.toml").write_text(t.to_toml())
    return proj


def results(proj: Path, name: str) -> list[dict]:
    r = pb("results", name, "--format", "json", "--all", cwd=proj)
    text = r.stdout.strip()
    return json.loads(text) if text.startswith("[") else \
        [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def batch_job(sh: Remote, conf: str, out: str, command: str, timeout: float = 120) -> None:
    """A real batch job through sbatch on the machine, waited for until SLURM says COMPLETED
    (polled every 0.2 s: `sbatch --wait` looks every few seconds, ~10 s for a job of none)."""
    env = ["env", f"SLURM_CONF={conf}"]
    jid = sh.run("test", env + ["sbatch", "--parsable", "-o", out, "--wrap", command]
                 ).stdout.strip().split(";")[0]
    deadline = time.time() + timeout
    while True:
        text = sh.run("test", env + ["scontrol", "-o", "show", "job", jid]).stdout
        state = re.search(r"JobState=(\S+)", text)
        if state and state.group(1) not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            break
        assert time.time() < deadline, f"job {jid} not over within {timeout:g}s: {text}"
        time.sleep(0.2)
    assert state.group(1) == "COMPLETED", text


# -- without SSH: options, plans, the install decisions, the config text ------------------
def test_bad_options_name_file_key_and_fix():
    with pytest.raises(ClusterError) as e:
        validate(template(file="/p/pushbutton-clusters.toml", hosts=["ws1"], hosst=["x"]))
    msg = str(e.value)
    assert "/p/pushbutton-clusters.toml" in msg and "templates.lab.ssh.hosst" in msg
    assert "unknown key 'hosst'" in msg and "did you mean 'hosts'" in msg
    with pytest.raises(ClusterError) as e:
        validate(template(hosts=[]))
    assert "templates.lab.ssh.hosts" in str(e.value) and "lists no machines" in str(e.value)
    assert "fix: give at least one SSH destination" in str(e.value)
    with pytest.raises(ClusterError) as e:
        validate(template())
    assert "names no machines" in str(e.value) and "[templates.lab.ssh]" in str(e.value)
    with pytest.raises(ClusterError) as e:
        validate(template(hosts=["-oProxyCommand=evil"]))
    assert "not an SSH destination" in str(e.value)
    with pytest.raises(ClusterError) as e:
        validate(template(hosts=["a", "a"]))
    assert "listed twice" in str(e.value)
    with pytest.raises(ClusterError) as e:
        validate(template(hosts=["a"], workdir="relative/dir"))
    assert "templates.lab.ssh.workdir" in str(e.value)
    o = validate(template(hosts=["a"], ssh_options="-p 2222 -o X=y"))
    assert o.ssh_options == ["-p", "2222", "-o", "X=y"]


def test_plan_names_every_step_without_ssh():
    p = provider("c1", hosts=["me@ws1.lab.org", "10.0.0.5"], head="me@ws1.lab.org",
                 user="me")
    nodes = p.nodes_for_hosts(cpus=4, memory=8000)
    assert [n.name for n in nodes] == ["ws1", "10-0-0-5"] and node_name("WS_2") == "ws_2"
    lines = p.plan(nodes)
    assert lines[0] == "ws1: 4 CPUs, 8000 MB on me@ws1.lab.org"
    assert lines[2].startswith("ws1 [head (slurmctld) + node (slurmd)] via ssh me@ws1.lab.org")
    assert "slurmctld" in lines[2] and "slurmctld" not in lines[3] and "slurmd" in lines[3]
    for step in ("reachable", "packages", "munge key", "slurm.conf", "munged", "work folder"):
        assert any(ln.strip().startswith(step + ":") for ln in lines), step
    # a head that is not one of the hosts runs slurmctld only
    p2 = provider("c1", hosts=["ws2"], head="ctl")
    lines = p2.plan(p2.nodes_for_hosts())
    assert any(ln.startswith("ctl [head (slurmctld)] via ssh ctl: ") for ln in lines)
    assert p2.controller() == "ctl"
    # more nodes than machines
    with pytest.raises(ClusterError) as e:
        p2.plan([Node("a", "compute"), Node("b", "compute")])
    assert "more nodes than" in str(e.value) and "fix:" in str(e.value)


def test_install_decisions_for_debian_and_rhel_likes():
    deb = {"pm": "apt-get", "uid": "0", "bin_python3": "/usr/bin/python3",
           "bin_sha256sum": "/usr/bin/sha256sum", "bin_base64": "/usr/bin/base64"}
    miss = steps.missing_programs(deb, is_head=True, compute=True)
    assert {"munged", "slurmd", "slurmctld", "sbatch"} <= set(miss) and "python3" not in miss
    assert steps.packages_for("apt-get", miss) == ["munge", "slurm-wlm"]
    assert steps.install_commands(deb, ["munge", "slurm-wlm"]) == [[
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "-o",
        "DPkg::Lock::Timeout=600", "--no-install-recommends", "munge", "slurm-wlm"]]
    rhel = dict(deb, pm="dnf", uid="1000", sudo="yes")
    compute_only = steps.missing_programs(rhel, is_head=False, compute=True)
    assert "slurmctld" not in compute_only
    assert steps.packages_for("dnf", compute_only) == ["munge", "slurm-slurmd"]
    head = steps.packages_for("dnf", steps.missing_programs(rhel, True, True))
    assert set(head) == {"munge", "slurm-slurmd", "slurm-slurmctld", "slurm"}
    assert steps.install_commands(rhel, ["munge"]) == [["sudo", "-n", "dnf", "install", "-y",
                                                        "munge"]]
    assert steps.privileges(rhel) == "sudo" and steps.privileges(deb) == "root"
    # the errors a user gets: no way to install
    opts = rs.SetupOptions(cluster="c1")

    def ctx(facts):
        c = steps.Ctx(node=Node("ws1", "compute"), remote=Remote("ws1", host="ws1"), opts=opts,
                      is_head=True, compute=True)
        c.facts = facts
        return c
    with pytest.raises(ClusterError) as e:
        steps._packages_apply(ctx(dict(deb, uid="1000", sudo="no")))
    msg = str(e.value)
    assert "node 'ws1', step 'packages'" in msg and "munge slurm-wlm" in msg
    assert "no passwordless sudo" in msg and "fix: install them as root once" in msg
    with pytest.raises(ClusterError) as e:
        steps._packages_apply(ctx(dict(deb, pm="")))
    assert "no apt-get, dnf or yum" in str(e.value) and "dnf install epel-release" in \
        str(e.value)
    assert steps._packages_check(ctx(dict(deb, **{f"bin_{p}": "/x" for p in miss}))) \
        .startswith("munge and slurm already installed")


def test_layout_and_slurm_conf_text():
    lay = Layout.make("lab", "/home/me", "me")
    assert lay.root == "/home/me/.pushbutton-clusters/lab" and lay.check() is None
    assert lay.run.startswith("/tmp/pbc-") and len(lay.socket) < 60
    assert Layout.make("lab", "/home/me", "me", "/srv/pb").root == "/srv/pb/lab"
    assert Layout("lab", "/", "/tmp/pbc-0123456789ab").check()
    assert Layout("lab", "/home/me/lab", "/tmp/x").check()
    nodes = [Node("ws1", "compute", cpus=4, memory=8000, addr="10.0.0.1"),
             Node("ws2", "compute", cpus=2, memory=4000, addr="10.0.0.2", gres="gpu:2")]
    text = slurm_conf(lay, user="me", head_host="ws1", head_addr="10.0.0.1", ctld_port=7001,
                      slurmd_port=7003, nodes=nodes, extra={"KillWait": "9"})
    assert "SlurmctldHost=ws1(10.0.0.1)" in text and "SlurmUser=me" in text
    assert f"AuthInfo=socket={lay.socket}" in text and "KillWait=9" in text
    assert "KillWait=5" not in text and "GresTypes=gpu" in text
    assert "SlurmdPidFile=/home/me/.pushbutton-clusters/lab/run/slurmd-%n.pid" in text
    assert "NodeName=ws2 NodeAddr=10.0.0.2 CPUs=2 RealMemory=4000 Gres=gpu:2" in text
    assert "PartitionName=main Nodes=ws1,ws2 Default=YES" in text
    assert conf_ports(text) == (7001, 7003)
    assert gres_conf(nodes).splitlines()[1] == "NodeName=ws2 Name=gpu Count=2"


# -- real sshd ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loop_ssh():
    cfg, host = os.environ.get("PB_TEST_SSH_CONFIG"), os.environ.get("PB_TEST_SSH_HOST")
    if not (cfg and host and Path(cfg).exists()):
        _missing("the test sshd (PB_TEST_SSH_CONFIG)")
    r = subprocess.run(["ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                        host, "true"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        _missing(f"ssh to {host} ({r.stderr.strip()})")
    _need_slurm_programs()
    return {"hosts": [host], "ssh_config": cfg}


def test_unreachable_host_names_node_step_and_fix():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = provider("pbs-unreach", hosts=["127.0.0.1"], connect_timeout=3,
                 ssh_options=["-p", str(port), "-o", "StrictHostKeyChecking=no",
                              "-o", "UserKnownHostsFile=/dev/null"])
    nodes = p.nodes_for_hosts()
    t0 = time.time()
    with pytest.raises(ClusterError) as e:
        p.create(nodes)
    msg = str(e.value)
    assert "node '127-0-0-1' (ssh 127.0.0.1), step 'reachable'" in msg
    assert "Connection refused" in msg and "command: pb_probe" in msg
    assert "fix: check that sshd runs on '127.0.0.1'" in msg
    assert time.time() - t0 < 15 and nodes[0].stage == "planned"


def test_one_machine_cluster_over_loopback_ssh(loop_ssh, tmp_path):
    """Set up twice (the second time every action says 'already'), a real sbatch job, a sweep
    through the target `up` would register, then down: no process, no folder left."""
    name = f"pbs-loop-{secrets.token_hex(3)}"
    p = provider(name, workdir=str(tmp_path / "remote"), **loop_ssh)
    nodes = p.nodes_for_hosts(cpus=2, memory=1000)
    p.state.nodes = nodes
    head = nodes[0]
    try:
        p.check()
        p.create(nodes)
        assert nodes[0].stage == "created"
        opts = p.setup_options(conf_nodes=nodes)
        t0 = time.time()
        first = rs.setup_nodes(nodes, head, None, None, opts, say=lambda s: None)
        t_first = time.time() - t0
        lines = first[head.name]
        assert "munge key: wrote munge key (new)" in lines
        assert "slurm.conf: wrote slurm.conf (new)" in lines and "munged: started munged" in lines
        t0 = time.time()
        again = rs.setup_nodes(nodes, head, None, None, opts, say=lambda s: None)[head.name]
        t_again = time.time() - t0
        assert [ln.split(":")[0] for ln in again] == [ln.split(":")[0] for ln in lines]
        for ln in again:
            assert "already" in ln or ": ok (" in ln, ln
        lay = Layout.from_json(head.extra["pb"]["layout"])
        assert lay.root == f"{Path.home()}/.pushbutton-clusters/{name}"
        p.setup(nodes)
        p.start(nodes)
        assert nodes[0].stage == "running"
        assert rs.start_slurmd(nodes, opts, say=lambda s: None)[head.name] == \
            [f"slurmd: slurmd already running (pid {_pid(lay.pidfile('slurmd', head.name))})"]
        # sinfo with the cluster's conf answers; a real batch job runs and completes
        sh = Remote(head.name, host=head.extra["host"], ssh_config=loop_ssh["ssh_config"])
        env = ["env", f"SLURM_CONF={lay.conf}"]
        r = sh.run("test", env + ["sinfo", "-h", "-N", "-o", "%N %T %c"])
        assert r.stdout.split() == [head.name, "idle", "2"]
        out = tmp_path / "remote" / "job.out"
        batch_job(sh, lay.conf, str(out), "echo ran on $SLURMD_NODENAME")
        assert out.read_text().strip() == f"ran on {head.name}"
        # the target `up` registers: pb run --on NAME reaches this cluster, not the suite's
        fields = p.target_fields(nodes)
        assert fields["env"] == {"SLURM_CONF": lay.conf} and fields["host"] == loop_ssh["hosts"][0]
        proj = run_project(tmp_path, "loop", dict(fields, poll_interval=0.5), n=4, s=0.0)
        pb("run", "exp.toml", "--on", name, "--wait", cwd=proj)
        rows = results(proj, "loop")
        assert sorted(r["x"] for r in rows) == [0, 1, 2, 3]
        assert {r["pb_status"] for r in rows} == {"done"}
        assert p.shell(None)[-1].startswith("env SLURM_CONF=")
        print(f"\nsetup of one machine: first {t_first:.1f}s, again {t_again:.1f}s")
    finally:
        p.destroy(nodes)
    assert not Path(lay.root).exists() and not Path(lay.run).exists()
    assert leftovers(lay.root, lay.run) == []
    assert not Path(lay.root).parent.exists() or any(Path(lay.root).parent.iterdir())


def _pid(path: str) -> int:
    return int(Path(path).read_text().strip())


def test_failing_setup_command_names_node_step_command_and_fix(loop_ssh, tmp_path):
    name = f"pbs-fail-{secrets.token_hex(3)}"
    p = provider(name, setup=[["python3", "-c", "pass"],
                              ["sh", "-c", "echo no such package >&2; exit 1"]],
                 workdir=str(tmp_path / "remote"), cluster_dir=str(tmp_path / "clusters"),
                 **loop_ssh)
    nodes = p.nodes_for_hosts()
    try:
        with pytest.raises(ClusterError) as e:
            p.setup(nodes)
        msg = str(e.value)
        assert f"node '{nodes[0].name}', step 'setup': the command failed (exit status 1)" in msg and "command: sh -c 'echo no such package" in msg
        assert "stderr: no such package" in msg and "fix: fix setup[1] of the template" in msg
        assert nodes[0].stage == "planned"
    finally:
        p.destroy(nodes)
    assert not (tmp_path / "clusters" / name).exists()


# -- three machines, each a network namespace with its own sshd: test_wire.py's
# test_ssh_cluster_of_three_machines_cli_round_then_provider_round (one set of machines, one
# CLI round and one round through this provider's API) ---------------------------------------


# -- a user who is not root: the daemons run as that user -------------------------------------
NONROOT = "pbs-nonroot"


def _user_pids(uid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and p.stat().st_uid == uid:
                out.append(int(p.name))
        except OSError:
            pass
    return out


@pytest.fixture
def nonroot_ssh(tmp_path):
    """A throwaway user reached over its own loopback sshd (key in the user's ~/.ssh)."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not os.access("/usr/sbin/sshd",
                                                                          os.X_OK):
        _missing("root, useradd and sshd (for a throwaway non-root user)")
    _need_slurm_programs()
    subprocess.run(["userdel", "-r", NONROOT], capture_output=True, timeout=30)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", NONROOT], check=True,
                   timeout=30)
    import pwd
    pw = pwd.getpwnam(NONROOT)
    sshd = None
    try:
        for k in ("host", "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(tmp_path / k)], check=True, timeout=30)
        dot = Path(pw.pw_dir) / ".ssh"
        dot.mkdir(mode=0o700)
        shutil.copy(tmp_path / "id.pub", dot / "authorized_keys")
        for p in (dot, dot / "authorized_keys"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        (tmp_path / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {tmp_path}/host\n"
            f"PidFile {tmp_path}/sshd.pid\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n")
        sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f",
                                 str(tmp_path / "sshd_config")],
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "sshd.log",
                                                                       "w"))
        (tmp_path / "ssh_config").write_text(
            f"Host {NONROOT}\n  HostName 127.0.0.1\n  Port {port}\n  User {NONROOT}\n"
            f"  IdentityFile {tmp_path}/id\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n")
        deadline = time.time() + 20
        while subprocess.run(["ssh", "-F", str(tmp_path / "ssh_config"), NONROOT, "true"],
                             capture_output=True, timeout=30).returncode != 0:
            if time.time() > deadline:
                pytest.fail("the throwaway sshd does not answer: " +
                            (tmp_path / "sshd.log").read_text()[-300:])
            time.sleep(0.3)
        yield {"hosts": [NONROOT], "ssh_config": str(tmp_path / "ssh_config"),
               "home": pw.pw_dir, "uid": pw.pw_uid}
    finally:
        subprocess.run(["ssh", "-F", str(tmp_path / "ssh_config"), "-O", "exit", NONROOT],
                       capture_output=True, timeout=10)
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=10)
        for pid in _user_pids(pw.pw_uid):  # what the test started as that user
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
        subprocess.run(["userdel", "-r", NONROOT], capture_output=True, timeout=30)


def test_daemons_run_as_a_user_without_root_or_sudo(nonroot_ssh, tmp_path):
    """No root, no sudo (packages are there): munged, slurmctld, slurmd run as the user, a job
    runs as the user, down removes the user's cluster folder."""
    name = f"pbs-user-{secrets.token_hex(3)}"
    ssh = {k: nonroot_ssh[k] for k in ("hosts", "ssh_config")}
    p = provider(name, workdir="~/pbwork", **ssh)
    nodes = p.nodes_for_hosts(cpus=1, memory=500)
    p.state.nodes = nodes
    lay = None
    try:
        p.create(nodes)
        report = rs.setup_nodes(nodes, nodes[0], None, None, p.setup_options(conf_nodes=nodes),
                                say=lambda s: None)[nodes[0].name]
        assert any("is not root and has no passwordless sudo" in ln for ln in report)
        p.setup(nodes)
        p.start(nodes)
        lay = Layout.from_json(nodes[0].extra["pb"]["layout"])
        assert lay.root == f"{nonroot_ssh['home']}/.pushbutton-clusters/{name}"
        for daemon, node in (("munged", None), ("slurmctld", None), ("slurmd", nodes[0].name)):
            pid = _pid(lay.pidfile(daemon, node))
            assert Path(f"/proc/{pid}").stat().st_uid == nonroot_ssh["uid"], daemon
        sh = Remote(nodes[0].name, host=NONROOT, ssh_config=ssh["ssh_config"])
        out = f"{nonroot_ssh['home']}/pbwork/job.out"
        batch_job(sh, lay.conf, out, "id -un")
        assert Path(out).read_text().strip() == NONROOT
    finally:
        p.destroy(nodes)
    assert lay is not None and not Path(lay.root).exists() and not Path(lay.run).exists()


def test_the_cloud_providers_access(loop_ssh, tmp_path):
    """What the cloud providers call: from_access(nodes, head, ssh={...}, template, state) ->
    the positional form's arguments, and run_action(action, ...) for setup, start and stop,
    here against one real machine (the loopback sshd)."""
    name = f"pbs-kw-{secrets.token_hex(3)}"
    node = Node("pbs-kw1", "compute", cpus=1, memory=500)
    ssh = {"user": None, "identity_file": None, "options": ["-F", loop_ssh["ssh_config"]],
           "hosts": {"pbs-kw1": loop_ssh["hosts"][0]}}
    tmpl = template(name="cloudish", setup=[["true"]])
    state = SimpleNamespace(name=name, nodes=[node])
    compute, head, opts = rs.from_access([node], node, ssh, tmpl, state)
    assert compute == [node] and head is node and node.extra["host"] == loop_ssh["hosts"][0]
    plan = rs.plan_steps(compute, head, opts)
    assert plan[0].startswith("pbs-kw1 [head (slurmctld) + node (slurmd)] via ssh")
    args = ([node], node, ssh, tmpl, state)
    try:
        rep = rs.run_action("setup", *args, say=lambda s: None)["pbs-kw1"]
        assert "setup: ran 1 setup command" in rep and rep[-1] == "slurmctld: started slurmctld"
        rep = rs.run_action("start", *args, say=lambda s: None)["pbs-kw1"]
        assert rep == [f"slurmctld: slurmctld already running (pid {rep[0].split()[-1][:-1]})",
                       "slurmd: started slurmd"]
        assert rs.node_states(node, opts) == {"pbs-kw1": "idle"}
        rep = rs.run_action("stop", *args, say=lambda s: None)
        assert rep == {"pbs-kw1": ["slurmd: stopped slurmd"]}
        with pytest.raises(ClusterError, match="unknown setup action 'reboot'"):
            rs.run_action("reboot", *args)
    finally:
        rs.stop_all([node], node, opts, say=lambda s: None, remove=True)
    assert not Path(Layout.from_json(node.extra["pb"]["layout"]).root).exists()
