"""`pb cluster` end to end with the remote providers, as a user runs it.

* ssh: three machines, each a network namespace with its own sshd, address and hostname
  (conftest.sshd_machines, prefix "pbw"): `pb cluster up ssh NAME --host ...` -> `pb run SPEC
  --on NAME --wait` -> results from three hostnames -> status, ssh, resize by --host -> `pb
  cluster down NAME --delete` -> nothing left; then up -> down once more through the ssh
  provider's API on the same machines. Real sshd, munged, slurmctld, slurmd.
* cloud through the CLI: `--dry-run` with a template file prints the plan and the price; bad
  templates and credentials give file, key and fix, never a traceback.
* cloud through the framework (`lifecycle.up`/`down`) with libcloud's dummy driver (the
  provider's driver_factory hook): machines made, recorded even when a create fails half-way,
  reused by the next `up`, destroyed by `down`; and the dummy machines given the namespace
  machines' addresses, so that the SSH setup, slurmctld on the head, a sweep through the
  registered target and down run for real.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import pytest

from pushbutton.clusters import remote_steps as steps
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.remote_conf import Layout

from .conftest import _missing, ip, pb, sshd_machines
from .test_ssh_provider import leftovers

TASKS = '''import socket, time

def where(x, s=0.0):
    time.sleep(s)
    return {"x": x, "node": socket.gethostname()}
'''
NS = ["pbw-n1", "pbw-n2", "pbw-n3"]


def _need_slurm():
    for p in ("munged", "slurmd", "slurmctld", "sinfo", "sbatch"):
        if not any(os.access(f"{d}/{p}", os.X_OK) for d in ("/usr/sbin", "/usr/bin")):
            _missing(f"{p} (Debian packages munge, slurm-wlm)")


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    _need_slurm()
    with sshd_machines(tmp_path_factory.mktemp("pbw-netns"), "pbw", len(NS)) as m:
        yield m


def _experiment(proj: Path, name: str, n: int, s: float) -> None:
    (proj / "pbw_tasks.py").write_text(TASKS)
    (proj / f"{name}.toml").write_text(
        f'name = "{name}"\nfunction = "pbw_tasks:where"\n[space]\n'
        f'grid = {{ x = {list(range(n))}, s = [{s}] }}\n[run]\nbundle_size = 1\n')


def _results(name: str) -> list[dict]:
    text = pb("results", name, "--format", "json", "--all").stdout.strip()
    return json.loads(text) if text.startswith("[") else \
        [json.loads(ln) for ln in text.splitlines() if ln.strip()]


def _status(name: str) -> dict:
    return json.loads(pb("cluster", "status", name, "--json").stdout)


def _cluster_procs(ns_names) -> dict[str, set[str]]:
    """What runs in each machine besides its sshd."""
    out = {}
    for ns in ns_names:
        comms = set()
        for pid in ip("netns", "pids", ns).stdout.split():
            try:
                comms.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass
        out[ns] = comms - {"sshd"}
    return out


def _user_targets() -> str:
    p = Path(os.environ["XDG_CONFIG_HOME"]) / "pushbutton" / "targets.toml"
    return p.read_text() if p.exists() else ""


# -- ssh: the CLI and the provider's API, real machines --------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)  # two up -> run -> down rounds; on a loaded 2-core host ~2-5 min
def test_ssh_cluster_of_three_machines_cli_round_then_provider_round(machines, project,
                                                                     tmp_path):
    """One cluster name on the same three machines, up -> down twice: first through the CLI
    (a setup step fails, `up` resumes; status, list, target, ssh, a sweep over the three
    hostnames, resize by --host, the head's slurmd restarted with the new slurm.conf, down
    --delete leaves nothing), then through the ssh provider's API (check/create/setup/start
    from nothing again, slurmctld on the first, slurmd on all, a second setup changes
    nothing, destroy leaves nothing). The API round runs no sweep and no resize of its own:
    `pb run --on` and `pb cluster resize` call the same provider methods on the same machines
    in the CLI round. Real sshd, munged, slurmctld, slurmd."""
    name = f"pbw-lab-{secrets.token_hex(2)}"
    t_up, t_run = _cli_round(machines, project, tmp_path, name)
    t_api = _provider_round(machines, tmp_path, name)
    print(f"\nssh cluster of 3 namespace machines: through the CLI: up {t_up:.1f}s, 6-task "
          f"sweep {t_run:.1f}s; through the provider: up {t_api:.1f}s")


def _cli_round(machines, project, tmp_path, name) -> tuple[float, float]:
    hosts = [a for h in NS for a in ("--host", h)]
    opts = ["--option", f"ssh_config={machines['ssh_config']}",
            "--option", f"workdir={tmp_path / 'remote'}",
            "--option", f"cluster_dir={tmp_path / 'clusters'}"]
    # the project's file adds a setup step to the built-in ssh template: it fails until the
    # machines have what it checks for, then `up` resumes
    marker = tmp_path / "provisioned"
    (project / "pushbutton-clusters.toml").write_text(
        f'[templates.ssh]\nsetup = [["test", "-e", "{marker}"]]\n')
    t0 = time.time()
    r = pb("cluster", "up", "ssh", name, *hosts, *opts, "--memory", "500", timeout=600,
           check=False)
    out = r.stdout
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "node 'pbw-n1', step 'setup': the command failed (exit status 1)" in \
        r.stderr and f"`pb cluster up {name}` resumes" in r.stderr, r.stderr
    st = _status(name)
    assert st["state"] == "partial" and {n["stage"] for n in st["nodes"]} == {"created"}
    marker.touch()
    r = pb("cluster", "up", name, timeout=600)
    assert "steps done before: prepare, create, controller" in r.stdout, r.stdout
    assert "pbw-n1: setup: ran 1 setup command" in r.stdout, r.stdout
    out += r.stdout
    t_up = time.time() - t0
    assert f"cluster '{name}': template ssh ({project / 'pushbutton-clusters.toml'}), " \
        "provider ssh, 3 node(s)" in out, out
    assert "pbw-n1: munge key: wrote munge key (new)" in out, out
    assert "pbw-n1: slurmctld: started slurmctld" in out, out
    assert f"cluster '{name}' is up (pbw-n1 idle, pbw-n2 idle, pbw-n3 idle)" in out, out
    st = _status(name)
    assert st["state"] == "up" and st["provider"] == "ssh" and st["ready"] == 3
    assert [(n["name"], n["stage"], n["slurm"]) for n in st["nodes"]] == \
        [(h, "running", "idle") for h in NS]
    assert [n["addr"] for n in st["nodes"]] == machines["addrs"]
    assert st["remote"]["head"] == "pbw-n1" and st["remote"]["host"] == "pbw-n1"
    conf = st["remote"]["conf"]
    assert conf == str(tmp_path / "clusters" / name / "slurm.conf")
    human = pb("cluster", "status", name).stdout
    assert "slurmctld on pbw-n1 (ssh pbw-n1)" in human and f"conf: {conf} on pbw-n1" in human
    row = next(x for x in json.loads(pb("cluster", "list", "--json").stdout)
               if x["name"] == name)
    assert (row["state"], row["nodes"], row["ready"], row["target"]) == ("up", 3, 3, name)
    # the target: ssh to the head, SLURM_CONF there (not this host's)
    targets = _user_targets()
    assert f"[targets.{name}]" in targets and 'host = "pbw-n1"' in targets
    assert f'SLURM_CONF = "{conf}"' in targets
    # again: nothing to do
    r = pb("cluster", "up", name)
    assert "nothing to do" in r.stdout, r.stdout
    # a command on a node, and on the head with the cluster's SLURM_CONF
    assert pb("cluster", "ssh", name, "pbw-n2", "--", "hostname").stdout.strip() == "pbw-n2"
    r = pb("cluster", "ssh", name, "-", "--", "sinfo", "-h", "-N", "-o", "%N")
    assert r.stdout.split() == NS, r.stdout + r.stderr
    assert "ssh" in pb("cluster", "ssh", name, "--print").stdout

    # a sweep through the registered target spreads over the three machines
    exp = "spread1"
    _experiment(project, exp, n=6, s=1.5)
    t0 = time.time()
    r = pb("run", f"{exp}.toml", "--on", name, "--wait", timeout=600)
    t_run = time.time() - t0
    assert f"{exp}: 6 done, 0 failed" in r.stdout, r.stdout + r.stderr
    rows = _results(exp)
    assert sorted(x["x"] for x in rows) == list(range(6))
    assert {x["pb_status"] for x in rows} == {"done"}
    assert {x["node"] for x in rows} == set(NS), [x["node"] for x in rows]

    # machines leave and join by --host (the head stays)
    r = pb("cluster", "resize", name, "--host", "pbw-n1", "--host", "pbw-n2", timeout=600)
    assert "removing pbw-n3 (pbw-n3)" in r.stdout and "now has 2 machine(s)" in \
        r.stdout, r.stdout
    st = _status(name)
    assert [(n["name"], n["slurm"]) for n in st["nodes"]] == \
        [("pbw-n1", "idle"), ("pbw-n2", "idle")]
    assert "NodeName=pbw-n3" not in Path(conf).read_text()
    assert _cluster_procs(["pbw-n3"]) == {"pbw-n3": set()}
    lay = _layout(name)
    assert not Path(lay.pidfile("slurmd", "pbw-n3")).exists()
    r = pb("cluster", "resize", name, "+1", check=False)
    assert r.returncode == 2 and "--host pbw-n1 --host pbw-n2 --host NEWHOST" in \
        r.stderr and "Traceback" not in r.stderr
    r = pb("cluster", "resize", name, "--host", "pbw-n2", check=False)
    assert r.returncode == 2 and "pbw-n1 runs slurmctld" in r.stderr
    r = pb("cluster", "resize", name, *hosts, timeout=600)
    assert "adding pbw-n3 (pbw-n3)" in r.stdout, r.stdout
    st = _status(name)
    assert [(n["name"], n["slurm"]) for n in st["nodes"]] == \
        [(h, "idle") for h in NS] and st["state"] == "up"
    # the head's slurmd runs with the new slurm.conf (restarted by setup)
    rec = Path(lay.record("slurmd", "pbw-n1")).read_text().strip()
    assert rec == steps.sha(Path(lay.conf).read_text()) and "NodeName=pbw-n3" in \
        Path(lay.conf).read_text()
    # up with the flags of another set of machines says how to get there
    r = pb("cluster", "up", "ssh", name, "--host", "pbw-n1", *opts, check=False)
    assert r.returncode == 2 and f"pb cluster resize {name} --host pbw-n1" in r.stderr

    r = pb("cluster", "down", name, "--delete", timeout=300)
    assert f"cluster '{name}' is down" in r.stdout and f"and target '{name}'" in r.stdout
    assert _cluster_procs(NS) == {ns: set() for ns in NS}
    assert not (tmp_path / "clusters" / name).exists()
    assert not list((tmp_path / "clusters").glob("*")) if (tmp_path / "clusters").exists() \
        else True
    assert f"[targets.{name}]" not in _user_targets()
    assert name not in pb("cluster", "list").stdout
    assert not list(Path("/tmp").glob(f"pbc-*/{name}*"))
    assert not Path(lay.root).exists() and not Path(lay.run).exists()
    assert leftovers(lay.root, lay.run) == []
    return t_up, t_run


def _layout(name: str):
    """The cluster's folders on its machines, as its head's record holds them."""
    from pushbutton.clusters.cluster import Cluster
    head = next(n for n in Cluster(name).nodes if n.name == "pbw-n1")
    return Layout.from_json(head.extra["pb"]["layout"])


def _provider_round(machines, tmp_path, name) -> float:
    """The ssh provider's API on the machines the CLI round left empty: the cluster starts
    from nothing again (a new munge key, slurmctld started anew)."""
    from pushbutton.clusters import remote_setup as rs

    from .test_ssh_provider import provider
    ssh = {k: machines[k] for k in ("hosts", "ssh_config")}
    p = provider(name, workdir=str(tmp_path / "remote"),
                 cluster_dir=str(tmp_path / "clusters"), **ssh)
    nodes = p.nodes_for_hosts(cpus=1, memory=500)
    p.state.nodes = nodes
    lay = None
    try:
        t0 = time.time()
        p.check()
        p.create(nodes)
        said: list[str] = []
        p.say = said.append
        p.setup(nodes)
        p.say = lambda line: None
        assert any(ln.startswith("pbw-n1") and "munge key: wrote munge key (new)" in ln
                   for ln in said), said
        p.start(nodes)
        t_up = time.time() - t0
        head = nodes[0]
        assert p.controller() == "pbw-n1"
        lay = Layout.from_json(head.extra["pb"]["layout"])
        # each node's address is the one its sshd answered on (SSH_CONNECTION there)
        assert [n.addr for n in nodes] == machines["addrs"]
        states = rs.node_states(head, p.setup_options())
        assert states == {ns: "idle" for ns in NS}, states
        # the second setup changes nothing
        again = rs.setup_nodes(nodes, head, None, None, p.setup_options(conf_nodes=nodes),
                               say=lambda s: None)
        for node, lines in again.items():
            for ln in lines:
                assert "already" in ln or ": ok (" in ln, (node, ln)
        assert any("shared with the head" in ln for ln in again["pbw-n2"])
    finally:
        p.destroy(nodes)
    assert lay is not None
    assert not Path(lay.root).exists() and not Path(lay.run).exists()
    assert leftovers(lay.root, lay.run) == []
    # nothing of the cluster runs in any machine, only its sshd
    assert _cluster_procs(NS) == {ns: set() for ns in NS}
    return t_up


def test_ssh_cli_errors_name_the_fix(project):
    """No machines, --nodes, an unreachable machine: a message with the fix, no traceback; a
    cluster whose create failed is on record and goes with down --delete."""
    r = pb("cluster", "up", "ssh", "pbw-e1", check=False)
    assert r.returncode == 2 and "names no machines" in r.stderr and "Traceback" not in r.stderr
    assert "--host ws1 --host ws2" in r.stderr
    r = pb("cluster", "up", "ssh", "pbw-e1", "--host", "ws1", "--nodes", "3", check=False)
    assert r.returncode == 2 and "one node per machine" in r.stderr
    r = pb("cluster", "up", "netns", "pbw-e1", "--host", "ws1", "--dry-run", check=False)
    assert r.returncode == 2 and "--host is for provider ssh" in r.stderr
    r = pb("cluster", "up", "ssh", "pbw-e1", "--host", "a", "--host", "b", "--dry-run")
    assert "pbw-e1' (template ssh, provider ssh): 2 node(s)" in r.stdout
    assert "a [head (slurmctld) + node (slurmd)] via ssh a" in r.stdout, r.stdout
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "pushbutton" / "clusters" /
                "pbw-e1").exists()
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    r = pb("cluster", "up", "ssh", "pbw-e2", "--host", "127.0.0.1", "--option",
           f'ssh_options=["-p", "{port}", "-o", "StrictHostKeyChecking=no"]',
           "--option", "connect_timeout=3", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "node '127-0-0-1' (ssh 127.0.0.1), step 'reachable'" in r.stderr, r.stderr
    assert "`pb cluster up pbw-e2` resumes" in r.stderr
    st = _status("pbw-e2")
    assert st["state"] == "partial" and [n["stage"] for n in st["nodes"]] == ["planned"]
    r = pb("cluster", "down", "pbw-e2", "--delete")
    assert "no node was up" in r.stdout and "pbw-e2" not in pb("cluster", "list").stdout

    # a cluster whose machine is gone for good: down says so, --delete --force forgets it
    r = pb("cluster", "up", "ssh", "pbw-e3", "--host", "127.0.0.1", "--option",
           f'ssh_options=["-p", "{port}", "-o", "StrictHostKeyChecking=no"]',
           "--option", "connect_timeout=3", check=False)
    from pushbutton.clusters.cluster import Cluster
    cl = Cluster("pbw-e3")
    (n,) = cl.nodes
    n.stage = "running"                   # as if it had been up before its machine died
    cl.update_node(n)
    r = pb("cluster", "down", "pbw-e3", "--delete", check=False)
    assert r.returncode == 2 and "step 'reachable'" in r.stderr, r.stderr
    assert "`pb cluster down pbw-e3 --delete --force` forgets" in r.stderr
    assert "pbw-e3" in pb("cluster", "list").stdout
    r = pb("cluster", "down", "pbw-e3", "--force", check=False)
    assert r.returncode == 2 and "--force goes with --delete" in r.stderr
    r = pb("cluster", "down", "pbw-e3", "--delete", "--force")
    assert "forgetting the cluster anyway" in r.stdout and "127-0-0-1 (ssh 127.0.0.1)" in \
        r.stdout, r.stdout
    assert "pbw-e3" not in pb("cluster", "list").stdout and not cl.dir.exists()


# -- cloud: the CLI ---------------------------------------------------------------------------
PUB = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
       "test@example")


@pytest.fixture
def cloud_home(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))    # no ~/.aws or ~/.ssh of the user
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "GOOGLE_APPLICATION_CREDENTIALS", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "id_test.pub").write_text(PUB + "\n")
    creds = tmp_path / "aws.json"
    creds.write_text(json.dumps({"access_key_id": "AKIDTESTONLY",
                                 "secret_access_key": "not-a-secret"}))
    creds.chmod(0o600)
    return project


def _aws_template(proj: Path, tmp_path: Path, **cloud) -> Path:
    table = {"region": "us-east-1", "image": "ami-0123456789abcdef0", "size": "t3.small",
             "head_size": "t3.large", "credentials": str(tmp_path / "aws.json"),
             "ssh_public_key": str(tmp_path / "id_test.pub"), **cloud}
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items() if v is not None)
    f = proj / "pushbutton-clusters.toml"
    f.write_text(f"[templates.aws.cloud]\n{body}")
    return f


def test_cloud_dry_run_prints_the_plan_and_the_price(cloud_home, tmp_path):
    from libcloud.pricing import get_size_price
    small = get_size_price("compute", "ec2_linux", "t3.small", "us-east-1")
    large = get_size_price("compute", "ec2_linux", "t3.large", "us-east-1")
    f = _aws_template(cloud_home, tmp_path)
    r = pb("cluster", "up", "aws", "pbw-c1", "--nodes", "3", "--dry-run")
    out = r.stdout
    assert "cluster 'pbw-c1' (template aws, provider aws): 4 node(s)" in out, out
    assert "region us-east-1, image ami-0123456789abcdef0" in out
    assert f"credentials: file {tmp_path / 'aws.json'}" in out
    assert f"head (head: slurmctld): 1 x t3.large, ${large:.4f}/h each" in out
    assert f"compute: 3 x t3.small, ${small:.4f}/h each, ${3 * small:.4f}/h" in out
    assert f"total: 4 nodes, ${large + 3 * small:.4f}/h" in out
    assert "head1 [head (slurmctld)] via ssh" in out and "n3 [node (slurmd)] via ssh" in out
    assert "dry run: nothing was made" in out
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "pushbutton" / "clusters").exists()
    # the built-in gce template priced the same way, options from the command line
    r = pb("cluster", "up", "gce", "pbw-c2", "--dry-run", "--option", "zone=us-central1-a",
           "--option", "image=debian-12", "--option", "size=e2-standard-2", check=False)
    assert "compute: 1 x e2-standard-2, $" in r.stdout, r.stdout + r.stderr
    # ... and without credentials: the plan, then what `up` would stop at
    assert r.returncode == 2 and "GOOGLE_APPLICATION_CREDENTIALS" in r.stderr
    assert "dry run: nothing was made, and `up` would stop here" in r.stderr
    assert "Traceback" not in r.stderr
    assert f.exists()


@pytest.mark.parametrize("cloud, expect", [
    ({"machine_type": "t3.small"}, r"\[templates.aws.cloud\] machine_type: unknown key for "
                                   r"provider aws \(did you mean 'size'"),
    ({"image": None}, r"\[templates.aws.cloud\] image: missing"),
    ({"secret_access_key": "abc"}, r"secret_access_key: a secret must never be written"),
    ({"workdir": "relative"}, r"workdir: .*absolute path"),
])
def test_cloud_bad_templates_through_the_cli(cloud_home, tmp_path, cloud, expect):
    import re
    f = _aws_template(cloud_home, tmp_path, **cloud)
    for extra in (["--dry-run"], []):
        r = pb("cluster", "up", "aws", "pbw-c3", *extra, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"error: {f}: [templates.aws.cloud]") or \
            str(f) in r.stderr, r.stderr
        assert re.search(expect, r.stderr) and "fix: " in r.stderr, r.stderr
    assert "pbw-c3" not in pb("cluster", "list").stdout


def test_cloud_bad_credentials_through_the_cli(cloud_home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"access_key_id": "AKIDTESTONLY"}')
    _aws_template(cloud_home, tmp_path, credentials=str(bad))
    r = pb("cluster", "up", "aws", "pbw-c4", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad} has no secret_access_key" in r.stderr and "fix: " in r.stderr, r.stderr
    _aws_template(cloud_home, tmp_path, credentials=str(tmp_path / "nope.json"))
    r = pb("cluster", "up", "aws", "pbw-c4", "--dry-run", check=False)
    assert "compute: 1 x t3.small" in r.stdout and r.returncode == 2
    assert "nope.json does not exist" in r.stderr and "Traceback" not in r.stderr
    assert "pbw-c4" not in pb("cluster", "list").stdout


# -- cloud: the framework with libcloud's dummy driver ---------------------------------------
class Addressed:
    """A NamingDummy (libcloud's DummyNodeDriver keeping names and tags) whose machines get
    the given addresses, in order (instead of 198.51.100.x / 10.1.0.x)."""

    def __new__(cls, addrs, **kw):
        from libcloud.compute.base import Node as LNode

        from .cloud_fakes import NamingDummy

        class D(NamingDummy):
            def create_node(self, name, size, image, **kwargs):
                m = super().create_node(name, size, image, **kwargs)
                a = addrs[(len(self.create_calls) - 1) % len(addrs)]
                fresh = LNode(id=m.id, name=m.name, state=m.state, public_ips=[a],
                              private_ips=[a], driver=self, extra=m.extra)
                self.nl[self.nl.index(m)] = fresh
                return fresh
        return D(**kw)


@pytest.fixture
def dummy_cloud(cloud_home, monkeypatch):
    """AWSProvider builds no driver from credentials but takes the one the test gives."""
    from pushbutton.clusters.providers.cloud import AWSProvider
    box = {}
    monkeypatch.setattr(AWSProvider, "driver_factory", staticmethod(lambda p: box["driver"]),
                        raising=False)
    monkeypatch.setattr(AWSProvider, "poll_interval", 0.01, raising=False)
    return box


def _said(fn, *args, **kw) -> str:
    lines: list[str] = []
    fn(*args, say=lines.append, **kw)
    return "\n".join(lines)


def _mine(drv) -> list[str]:
    return sorted(m.name for m in drv.list_nodes() if m.name.startswith("pb-"))


def test_cloud_create_records_resume_and_destroy_through_the_framework(dummy_cloud, tmp_path):
    """A quota failure at the second machine leaves the first on record; the next `up` reuses
    it and makes the rest; setup then fails at the first SSH step (these machines answer no
    SSH) with the resume hint; `down --delete` destroys exactly this cluster's machines."""
    from pushbutton.clusters import lifecycle
    from pushbutton.clusters.cluster import Cluster
    _aws_template(Path.cwd(), tmp_path, ssh_user="pbw", timeout=5)
    drv = dummy_cloud["driver"] = Addressed(["127.0.0.1"], fail_at=2)
    lines: list[str] = []
    with pytest.raises(ClusterError) as e:
        lifecycle.up("aws", "pbw-d1", nodes=("2",), say=lines.append)
    msg = str(e.value)
    assert "Quota 'INSTANCES' exceeded" in msg and "1 of 3 machines exist" in msg, msg
    assert "`pb cluster up pbw-d1` resumes" in msg
    cl = Cluster("pbw-d1")
    recs = {n.name: n for n in cl.nodes}
    assert list(recs) == ["head1", "n1", "n2"] and recs["head1"].extra["id"]
    assert not recs["n1"].extra.get("id") and _mine(drv) == ["pb-pbw-d1-head1"]

    drv.fail_at = None
    with pytest.raises(ClusterError) as e:   # the machines are made; no SSH answers there
        lifecycle.up("aws", "pbw-d1", say=lines.append)
    assert "step 'reachable'" in str(e.value) and "`pb cluster up pbw-d1` resumes" in \
        str(e.value), str(e.value)
    assert "head1: machine pb-pbw-d1-head1" in "\n".join(lines) and \
        "exists, reusing it" in "\n".join(lines)
    assert len(drv.create_calls) == 4 and _mine(drv) == [
        "pb-pbw-d1-head1", "pb-pbw-d1-n1", "pb-pbw-d1-n2"]
    assert [n.stage for n in Cluster("pbw-d1").nodes] == ["created"] * 3
    assert [n.extra["ssh_host"] for n in Cluster("pbw-d1").nodes] == ["127.0.0.1"] * 3

    lifecycle.down("pbw-d1", delete=True, say=lines.append)
    assert _mine(drv) == [] and {m.name for m in drv.list_nodes()} == {"dummy-1", "dummy-2"}
    assert not Cluster("pbw-d1").dir.exists()


@pytest.mark.slow
def test_cloud_cluster_on_dummy_machines_that_answer_ssh(dummy_cloud, machines, tmp_path):
    """libcloud's dummy driver hands out the namespace machines' addresses: `up` creates
    three machines (head1 runs slurmctld only, n1 and n2 slurmd), sets them up over SSH and
    registers the target; a sweep runs on both compute machines; `down --delete` destroys the
    machines (a dummy machine that is destroyed keeps running: the test stops what ran there
    and checks that the cluster's folders went with the machines' per-cluster files)."""
    from pushbutton.clusters import lifecycle
    from pushbutton.clusters import remote_setup as rs
    from pushbutton.clusters.cluster import Cluster
    from pushbutton.clusters.resize import resize
    from pushbutton.clusters.state import provider_for, template_of
    proj = Path.cwd()
    key = machines["key"]
    _aws_template(proj, tmp_path, ssh_user="root", ssh_public_key=key + ".pub",
                  ssh_private_key=key,
                  workdir=str(tmp_path / "remote"), cluster_dir=str(tmp_path / "clusters"))
    drv = dummy_cloud["driver"] = Addressed(machines["addrs"])
    lines: list[str] = []
    name = "pbw-cloud"
    try:
        t0 = time.time()
        lifecycle.up("aws", name, memory=("compute=500", "head=500"), say=lines.append,
                     timeout=300)
        t_up = time.time() - t0
        out = "\n".join(lines)
        assert "head1: creating pb-pbw-cloud-head1 (t3.large" in out, out
        assert f"cluster '{name}' is up (head1 controller, n1 idle)" in out, out
        st = json.loads(pb("cluster", "status", name, "--json").stdout)
        assert st["state"] == "up" and st["ready"] == 2 and st["cpus"] == 1
        assert [(n["name"], n["slurm"]) for n in st["nodes"]] == \
            [("head1", "controller"), ("n1", "idle")]
        assert _cluster_procs(NS)["pbw-n1"] >= {"slurmctld", "munged"}
        assert "slurmd" not in _cluster_procs(NS)["pbw-n1"]
        assert pb("cluster", "ssh", name, "n1", "--", "hostname").stdout.strip() == "pbw-n2"
        # resize +1: a machine is made and set up, slurm.conf everywhere names it
        t0 = time.time()
        out = _said(resize, name, "+1")     # in this process: the dummy driver is here
        t_resize = time.time() - t0
        assert "n2: creating pb-pbw-cloud-n2" in out and "n2 idle" in out, out
        assert "head1: slurmctld: restarted slurmctld (slurm.conf changed)" in out
        assert [(n["name"], n["slurm"]) for n in _status(name)["nodes"]] == \
            [("head1", "controller"), ("n1", "idle"), ("n2", "idle")]
        _experiment(proj, "burst", n=4, s=1.0)
        r = pb("run", "burst.toml", "--on", name, "--wait", timeout=600)
        assert "burst: 4 done, 0 failed" in r.stdout, r.stdout + r.stderr
        assert {x["node"] for x in _results("burst")} == {"pbw-n2", "pbw-n3"}
        # resize -1: n2 drained, stopped, its machine destroyed, the rest told
        out = _said(resize, name, "-1")
        assert "n2: drained" in out and "n2: destroying pb-pbw-cloud-n2" in out, out
        assert [(n["name"], n["slurm"]) for n in _status(name)["nodes"]] == \
            [("head1", "controller"), ("n1", "idle")]
        assert _mine(drv) == ["pb-pbw-cloud-head1", "pb-pbw-cloud-n1"]
        assert "slurmd" not in _cluster_procs(NS)["pbw-n3"]
        # =0: no compute node; the partition stays, a job waits; +1 and it runs
        _said(resize, name, "=0")
        assert [(n["name"], n["slurm"]) for n in _status(name)["nodes"]] == \
            [("head1", "controller")]
        job = pb("cluster", "ssh", name, "-", "--", "sbatch", "--parsable", "--wrap",
                 "true").stdout.strip()
        assert "JobState=PENDING" in pb("cluster", "ssh", name, "-", "--", "scontrol", "show",
                                        "job", job).stdout
        _said(resize, name, "+1")
        deadline = time.time() + 60
        while "JobState=COMPLETED" not in pb("cluster", "ssh", name, "-", "--", "scontrol",
                                             "show", "job", job).stdout:
            assert time.time() < deadline, "the job queued on zero nodes did not run"
            time.sleep(1)
        with pytest.raises(ClusterError, match="runs slurmctld: it stays"):
            resize(name, "=0", "head")
        print(f"\ncloud (dummy driver) on namespace machines: up {t_up:.1f}s, resize +1 "
              f"{t_resize:.1f}s")
    finally:
        cl = Cluster(name)
        if cl.exists():
            prov = provider_for(cl, template_of(cl))
            compute, head, o = prov.access()
            lifecycle.down(name, delete=True, say=lines.append)
            assert _mine(drv) == []
            rs.stop_all(compute, head, o, say=lambda s: None, remove=True)
    assert _cluster_procs(NS) == {ns: set() for ns in NS}
    assert not (tmp_path / "clusters" / name).exists()
