"""Providers gce, aws and openstack (clusters/providers/cloud*.py), without any cloud.

What runs here: libcloud's in-process DummyNodeDriver (plain, and NamingDummy: the same driver
keeping names and tags as real clouds do), libcloud's real EC2 driver against EC2Local (a small
imitation of the EC2 API on 127.0.0.1), libcloud's real OpenStack driver against a closed port
and a refusing Keystone on 127.0.0.1, libcloud's GCE key loading, and libcloud's pricing data.
No test reaches the internet. See tests/clusters/cloud_fakes.py and docs/CLUSTERS.md (clouds).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from libcloud.compute.drivers.dummy import DummyNodeDriver   # a test dependency (.[test])
from libcloud.pricing import get_pricing, get_size_price

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.providers.cloud import AWSProvider, GCEProvider, OpenStackProvider

from .cloud_fakes import EC2Local, NamingDummy, closed_port, keystone_401

PUB = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl "
       "test@example")


@dataclass
class Template:                     # what the cluster framework hands a provider
    name: str
    provider: str
    options: dict
    file: str | None = None


@dataclass
class State:                        # the cluster's state: its name and folder
    name: str
    dir: Path | None = None


@dataclass
class Env:
    tmp: Path
    file: str
    pub: Path
    lines: list = field(default_factory=list)

    def make(self, cls, options: dict, cluster="lab", driver=None, **kw):
        opts = {"ssh_public_key": str(self.pub), **options}
        p = cls(State(cluster, self.tmp), Template(kw.get("template", "lab"), cls.name, opts,
                                                   self.file), say=self.lines.append)
        p.poll_interval, p.progress_every = 0.01, 0.0
        if driver is not None:
            p.driver_factory = lambda _p: driver
        return p


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))      # no ~/.aws, ~/.ssh of the user
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "GOOGLE_APPLICATION_CREDENTIALS", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD",
              "OS_PROJECT_NAME", "OS_TENANT_NAME", "OS_REGION_NAME"):
        monkeypatch.delenv(k, raising=False)
    pub = tmp_path / "id_test.pub"
    pub.write_text(PUB + "\n")
    return Env(tmp_path, str(tmp_path / "pushbutton-clusters.toml"), pub)


AWS = {"region": "us-east-1", "image": "ami-0123456789abcdef0", "size": "t3.small",
       "head_size": "t3.large"}


def cluster_nodes(k=2):
    return [Node("head", "head")] + [Node(f"c{i}", "compute") for i in range(1, k + 1)]


def write_aws_creds(env, name="aws.json", **over):
    p = env.tmp / name
    p.write_text(json.dumps({"access_key_id": "AKIDTESTONLY", "secret_access_key": "not-a-secret",
                             **over}))
    p.chmod(0o600)
    return p


# -- libcloud's dummy driver: create -> setup plan -> destroy ----------------------------------
def test_dummy_driver_create_setup_plan_destroy(env):
    drv = DummyNodeDriver(0)                   # libcloud's own, unchanged
    theirs = {m.name for m in drv.list_nodes()}
    p = env.make(AWSProvider, AWS, driver=drv)
    nodes = cluster_nodes(2)
    p.check()
    p.create(nodes)
    assert [n.stage for n in nodes] == ["created"] * 3
    assert len({n.extra["id"] for n in nodes}) == 3 and all(n.addr for n in nodes)
    assert len(drv.list_nodes()) == 5 and p.controller() == "head"
    assert any("importing SSH key" in s for s in env.lines)

    before = len(drv.list_nodes())
    p.create(nodes)                            # again: every machine is reused
    assert len(drv.list_nodes()) == before
    assert sum("reusing it" in s for s in env.lines) == 3

    plan = "\n".join(p.plan(nodes))
    assert "head (head: slurmctld): 1 x t3.large" in plan and "compute: 2 x t3.small" in plan
    # the SSH steps' plan: the head runs slurmctld only, the others slurmd
    assert "head [head (slurmctld)] via ssh " in plan and "c2 [node (slurmd)] via ssh " in plan
    assert "munge key: " in plan and "slurm.conf: " in plan

    p.destroy(nodes)
    assert {m.name for m in drv.list_nodes()} == theirs
    assert all(n.stage == "planned" and "id" not in n.extra and n.addr is None for n in nodes)
    p.destroy(nodes)                           # again: nothing left, nothing else touched
    assert {m.name for m in drv.list_nodes()} == theirs


def test_create_finds_its_machines_by_name_and_tag_when_the_records_are_lost(env):
    drv = NamingDummy()
    env.make(AWSProvider, AWS, driver=drv).create(cluster_nodes(2))
    assert len(drv.create_calls) == 3
    assert drv.create_calls[0]["ex_metadata"] == {"pushbutton-cluster": "lab",
                                                  "pushbutton-node": "head"}
    fresh = cluster_nodes(2)                  # no ids recorded (state file lost)
    env.make(AWSProvider, AWS, driver=drv).create(fresh)
    assert len(drv.create_calls) == 3
    assert [n.extra["instance"] for n in fresh] == ["pb-lab-head", "pb-lab-c1", "pb-lab-c2"]


def test_a_stopped_machine_is_started_not_replaced(env):
    from libcloud.compute.types import NodeState
    drv = NamingDummy()
    p = env.make(AWSProvider, AWS, driver=drv)
    nodes = cluster_nodes(1)
    p.create(nodes)
    m = next(m for m in drv.list_nodes() if m.name == "pb-lab-c1")
    m.state, nodes[1].stage = NodeState.STOPPED, "running"
    p.create(nodes)
    assert m.state == NodeState.RUNNING and len(drv.create_calls) == 2
    assert nodes[1].stage == "stopped"        # its slurmd went with the machine
    assert "c1: starting stopped machine pb-lab-c1" in env.lines


def test_partial_failure_keeps_the_records_and_a_rerun_continues(env):
    drv = NamingDummy(fail_at=3)
    p = env.make(AWSProvider, AWS, driver=drv)
    nodes = cluster_nodes(2)
    with pytest.raises(ClusterError) as e:
        p.create(nodes)
    msg = str(e.value)
    assert "Quota 'INSTANCES' exceeded" in msg and "2 of 3 machines exist" in msg
    assert "higher quota" in msg and "pb cluster up lab lab" in msg and "pb cluster down lab" in msg
    assert [bool(n.extra.get("id")) for n in nodes] == [True, True, False]
    ids = [n.extra["id"] for n in nodes[:2]]
    drv.fail_at = None
    p2 = env.make(AWSProvider, AWS, driver=drv)
    p2.create(nodes)                          # the same records, as the state file keeps them
    assert len(drv.create_calls) == 4        # 3 tries before, 1 now
    assert [n.extra["id"] for n in nodes[:2]] == ids
    assert all(n.stage == "created" for n in nodes)


def test_destroy_removes_only_this_clusters_machines(env):
    drv = NamingDummy()
    lab, other = cluster_nodes(1), cluster_nodes(1)
    env.make(AWSProvider, AWS, driver=drv).create(lab)
    env.make(AWSProvider, AWS, cluster="other", driver=drv).create(other)
    # someone else's machine that happens to bear our name, without our tag
    drv.create_node("pb-lab-c1", None, None, ex_metadata={"owner": "someone"})
    # and one of another cluster whose name maps to the same machine names
    drv.create_node("pb-lab-c1", None, None, ex_metadata={"pushbutton-cluster": "lab-x"})
    p = env.make(AWSProvider, AWS, driver=drv)
    p.destroy(cluster_nodes(1))              # records lost: found by name and tag only
    left = sorted((m.name, (m.extra.get("tags") or {}).get("pushbutton-cluster", ""))
                  for m in drv.list_nodes())
    assert left == [("dummy-1", ""), ("dummy-2", ""), ("pb-lab-c1", ""),
                    ("pb-lab-c1", "lab-x"), ("pb-other-c1", "other"), ("pb-other-head", "other")]


def test_broken_machines_are_replaced_and_all_of_them_destroyed(env):
    drv = NamingDummy()
    drv.broken.add("pb-lab-c1")               # the cloud fails c1's boot
    p = env.make(AWSProvider, AWS, driver=drv)
    nodes = cluster_nodes(1)
    with pytest.raises(ClusterError, match=r"c1: machine pb-lab-c1 \(m-\d+\) went to state "
                                           r"error while starting") as e:
        p.create(nodes)
    assert "pb cluster down lab" in str(e.value)
    broken = nodes[1].extra["id"]
    drv.broken.clear()
    p.create(nodes)                           # the broken one is not reused: a new one
    assert nodes[1].extra["id"] != broken and nodes[1].stage == "created"
    assert sum(m.name == "pb-lab-c1" for m in drv.list_nodes()) == 2
    p.destroy(nodes)                          # both of c1's machines go, the broken one too
    assert {m.name for m in drv.list_nodes()} == {"dummy-1", "dummy-2"}
    assert any(f"({broken}, error)" in s for s in env.lines)


def test_waits_with_progress_and_times_out(env):
    drv = NamingDummy(pending_polls=3)
    p = env.make(AWSProvider, AWS, driver=drv)
    nodes = cluster_nodes(1)
    p.create(nodes)
    assert any(s.startswith("waiting for 2 machine(s) to run") for s in env.lines)
    assert any(s.startswith("still waiting for head, c1 to run") for s in env.lines)
    assert all(n.stage == "created" for n in nodes)

    drv2 = NamingDummy(pending_polls=10 ** 6)
    p = env.make(AWSProvider, dict(AWS, timeout=0.2), cluster="slow", driver=drv2)
    nodes = cluster_nodes(1)
    with pytest.raises(ClusterError, match=r"did not run within 0.2s \(head PENDING, c1 PENDING"):
        p.create(nodes)
    assert all(n.extra.get("id") for n in nodes)     # recorded: the next `up` waits again


# -- libcloud's real EC2 driver against EC2Local on 127.0.0.1 ----------------------------------
@pytest.fixture
def ec2():
    e = EC2Local(pending_polls=1)
    yield e
    e.close()


def ec2_provider(env, ec2, creds, **over):
    p = env.make(AWSProvider, dict(AWS, credentials=str(creds), **over))

    def local(prov):                          # the provider's own driver, sent to 127.0.0.1
        cls, args, kwargs = prov.driver_args()
        return cls(*args, **dict(kwargs, timeout=5), host="127.0.0.1", port=ec2.port,
                   secure=False)
    p.driver_factory = local
    p.creds()                                 # read like without the factory
    return p


def test_ec2_driver_create_reuse_destroy(env, ec2):
    p = ec2_provider(env, ec2, write_aws_creds(env), network="subnet-0abc",
                     security_groups=["sg-0123"])
    nodes = cluster_nodes(2)
    p.create(nodes)
    assert len(ec2.live()) == 3 and len(ec2.keys) == 1
    head = next(i for i in ec2.instances.values() if i["tags"]["Name"] == "pb-lab-head")
    assert head["type"] == "t3.large" and head["key"] == next(iter(ec2.keys))
    assert head["tags"]["pushbutton-cluster"] == "lab" and head["token"]
    assert head["params"]["NetworkInterface.1.SubnetId"] == "subnet-0abc"
    assert nodes[0].addr.startswith("10.0.0.") and nodes[0].extra["ssh_host"].startswith("203.")
    p2 = ec2_provider(env, ec2, write_aws_creds(env))
    p2.create(nodes)
    assert len(ec2.instances) == 3 and ec2.calls.count("ImportKeyPair") == 1
    p2.destroy(nodes)
    assert ec2.live() == [] and any("machine(s) to go away" in s for s in env.lines)
    assert all(n.stage == "planned" for n in nodes)


def test_ec2_lost_answer_then_rerun_makes_no_duplicate(env, ec2):
    ec2.fail["RunInstances"], ec2.fail_after["RunInstances"] = "lose-answer", 1
    p = ec2_provider(env, ec2, write_aws_creds(env))
    nodes = cluster_nodes(2)
    with pytest.raises(ClusterError, match=r"cannot reach AWS EC2 while creating pb-lab-c1"):
        p.create(nodes)
    assert len(ec2.instances) == 2          # the cloud made c1, its answer was lost
    assert "id" not in nodes[1].extra and nodes[1].extra["client_token"]
    del ec2.fail["RunInstances"]
    ec2_provider(env, ec2, write_aws_creds(env)).create(nodes)
    assert len(ec2.instances) == 3 and all(n.stage == "created" for n in nodes)


def test_ec2_refused_credentials_and_quota(env, ec2):
    creds = write_aws_creds(env)
    ec2.auth_fail = True
    with pytest.raises(ClusterError) as e:
        ec2_provider(env, ec2, creds).create(cluster_nodes(1))
    assert f"AWS EC2 refused the credentials from file {creds}" in str(e.value)
    assert "AuthFailure" in str(e.value) and "fix:" in str(e.value)
    ec2.auth_fail = False
    ec2.fail["RunInstances"] = ("InstanceLimitExceeded", "You have requested more instances "
                                "(21) than your current instance limit of 20 allows")
    with pytest.raises(ClusterError) as e:
        ec2_provider(env, ec2, creds).create(cluster_nodes(1))
    assert "InstanceLimitExceeded" in str(e.value) and "higher quota" in str(e.value)


# -- credentials -------------------------------------------------------------------------------
def test_aws_credentials_file_env_and_profile(env, monkeypatch):
    p = env.make(AWSProvider, dict(AWS, credentials=str(env.tmp / "nope.json")))
    with pytest.raises(ClusterError, match=r"\[templates.lab.cloud\] credentials: the file .*"
                                           r"nope.json does not exist"):
        p.check()
    bad = env.tmp / "bad.json"
    bad.write_text('{"access_key_id": "AKIDTESTONLY"}')
    with pytest.raises(ClusterError, match=r"bad.json has no secret_access_key"):
        env.make(AWSProvider, dict(AWS, credentials=str(bad))).check()
    ini = env.tmp / "credentials"
    ini.write_text("[work]\naws_access_key_id = AKIDTESTONLY\naws_secret_access_key = x\n")
    with pytest.raises(ClusterError, match=r"no \[default\] section") as e:
        env.make(AWSProvider, dict(AWS, credentials=str(ini))).check()
    assert 'profile = "..." to one of work' in str(e.value)
    p = env.make(AWSProvider, dict(AWS, credentials=str(ini), profile="work"))
    p.check()                                  # builds libcloud's EC2 driver (no request)
    assert p.driver().region_name == "us-east-1"
    assert any("readable by others" in s for s in env.lines)   # written 0644
    with pytest.raises(ClusterError, match="no AWS credentials") as e:
        env.make(AWSProvider, AWS).check()
    assert "AWS_ACCESS_KEY_ID" in str(e.value) and env.file in str(e.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTONLY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    p = env.make(AWSProvider, AWS)
    p.check()
    assert "environment" in p.creds().source


def test_aws_unknown_region_is_a_clear_error(env):
    p = env.make(AWSProvider, dict(AWS, region="moon-1", credentials=str(write_aws_creds(env))))
    with pytest.raises(ClusterError, match=r"AWS EC2: connecting failed: ValueError: Invalid "
                                           r"region: moon-1"):
        p.check()


def test_gce_service_account_key(env):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    opts = {"zone": "us-central1-a", "image": "debian-12", "size": "e2-standard-2"}
    f = env.tmp / "gce.json"
    f.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    with pytest.raises(ClusterError, match="is not a service account key"):
        env.make(GCEProvider, dict(opts, credentials=str(f))).check()
    sa = {"type": "service_account", "client_email": "pb@proj.iam.gserviceaccount.com",
          "project_id": "proj", "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n"
                                                "-----END PRIVATE KEY-----\n"}
    f.write_text(json.dumps(sa))
    with pytest.raises(ClusterError) as e:
        env.make(GCEProvider, dict(opts, credentials=str(f))).check()
    assert "Google Compute Engine refused the credentials from file" in str(e.value)
    assert "PEM key" in str(e.value)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa["private_key"] = key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode()
    f.write_text(json.dumps(sa))
    p = env.make(GCEProvider, dict(opts, credentials=str(f)))
    p.check()                                  # the key loads; no token is fetched
    assert p.creds().values["project"] == "proj"
    with pytest.raises(ClusterError, match="GOOGLE_APPLICATION_CREDENTIALS not set"):
        env.make(GCEProvider, opts).check()


def test_openstack_unreachable_and_refused(env, monkeypatch):
    f = env.tmp / "os.json"
    opts = {"image": "Ubuntu 22.04", "size": "m1.small", "credentials": str(f)}
    base = {"username": "u", "password": "p", "project_name": "proj"}
    f.write_text(json.dumps(dict(base, auth_url=f"http://127.0.0.1:{closed_port()}/v3")))
    p = env.make(OpenStackProvider, opts)
    p.check()                                  # builds libcloud's driver; no request yet
    with pytest.raises(ClusterError, match=r"cannot reach OpenStack while listing machines"):
        p.create(cluster_nodes(1))
    ks = keystone_401()
    try:
        f.write_text(json.dumps(dict(base, auth_url=f"http://127.0.0.1:{ks.port}/v3")))
        with pytest.raises(ClusterError, match=rf"OpenStack refused the credentials from file "
                                               rf"{f} while listing machines"):
            env.make(OpenStackProvider, opts).create(cluster_nodes(1))
    finally:
        ks.close()
    f.write_text(json.dumps({"auth_url": "http://127.0.0.1:1", "username": "u"}))
    with pytest.raises(ClusterError, match="lacks password, project_name"):
        env.make(OpenStackProvider, opts).check()
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:1/v3")
    with pytest.raises(ClusterError, match="lacks OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME"):
        env.make(OpenStackProvider, {"image": "i", "size": "s"}).check()


def test_no_libcloud_gives_the_install_command(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "libcloud", None)     # as if it were not installed
    with pytest.raises(ClusterError, match="Apache Libcloud is not installed") as e:
        env.make(AWSProvider, AWS).check()
    assert "pip install apache-libcloud" in str(e.value)


# -- bad templates -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls, options, expect", [
    (AWSProvider, dict(AWS, machine_type="t3.small"),
     r"\[templates.lab.cloud\] machine_type: unknown key for provider aws \(did you mean 'size'"),
    (AWSProvider, {k: v for k, v in AWS.items() if k != "image"},
     r"\[templates.lab.cloud\] image: missing .*\n  fix: image = \"ami-"),
    (GCEProvider, {"region": "us-central1", "image": "debian-12", "size": "e2-small"},
     r"region: unknown key for provider gce \(did you mean 'zone'"),
    (AWSProvider, dict(AWS, secret_access_key="abc"),
     r"\[templates.lab.cloud\] secret_access_key: a secret must never be written in a template"),
    (AWSProvider, dict(AWS, sizes={"gpu": "AKIAABCDEFGHIJKLMNOP"}),
     r"sizes.gpu: a secret must never be written"),
    (GCEProvider, {"zone": "z", "image": "i", "size": "s",
                   "project": "-----BEGIN RSA PRIVATE KEY-----\nabc"},
     r"project: a secret must never be written"),
    (AWSProvider, dict(AWS, ssh_public_key=PUB), r"ssh_public_key: .*path of the public key"),
    (AWSProvider, dict(AWS, security_groups=["sg-1"]), r"need network = \"subnet-"),
    (AWSProvider, dict(AWS, timeout=0), r"timeout: Input should be greater than 0"),
])
def test_bad_templates_name_file_key_and_fix(env, cls, options, expect):
    p = cls(State("lab"), Template("lab", cls.name, options, env.file))
    with pytest.raises(ClusterError, match=expect) as e:
        p.check()
    assert str(e.value).startswith(env.file + ": [templates.lab.cloud]")
    assert "\n  fix: " in str(e.value)
    with pytest.raises(ClusterError):         # --dry-run stops at a bad template as well
        p.plan(cluster_nodes(1))


def test_template_without_a_file_still_says_where(env):
    p = AWSProvider(State("lab"), Template("aws", "aws", {}))     # the built-in template
    with pytest.raises(ClusterError) as e:
        p.check()
    text = str(e.value)
    assert text.startswith("[templates.aws.cloud] ") and "pushbutton-clusters.toml" in text
    assert "region" in text and "image" in text and "size" in text


def test_missing_ssh_key_and_unknown_flavor(env):
    p = AWSProvider(State("lab"), Template("lab", "aws", AWS), say=env.lines.append)
    p.driver_factory = lambda _p: NamingDummy()
    with pytest.raises(ClusterError, match="no SSH public key") as e:
        p.check()
    assert "ssh-keygen" in str(e.value)
    p = env.make(OpenStackProvider, {"image": "Ubuntu 9.10", "size": "m1.huge"},
                 driver=DummyNodeDriver(0))
    with pytest.raises(ClusterError, match=r"size: the cloud has no flavor 'm1.huge' \(it has: "
                                           r"Big, Medium, Small, XXL Big\)"):
        p.create(cluster_nodes(1))


# -- plan and prices ---------------------------------------------------------------------------
def test_plan_prices_from_libcloud_data(env):
    known = get_size_price("compute", "ec2_linux", "t3.small", "us-east-1")
    head = get_size_price("compute", "ec2_linux", "t3.large", "us-east-1")
    assert known and head
    p = env.make(AWSProvider, dict(AWS, credentials=str(write_aws_creds(env))))
    plan = p.plan(cluster_nodes(2))
    text = "\n".join(plan)
    assert plan[0].startswith("provider aws (AWS EC2, Apache Libcloud ")
    assert "region us-east-1, image ami-0123456789abcdef0" in plan[0]
    assert f"compute: 2 x t3.small, ${known:.4f}/h each, ${2 * known:.4f}/h" in text
    assert f"total: 3 nodes, ${head + 2 * known:.4f}/h" in text and "credentials: file" in text

    p = env.make(AWSProvider, dict(AWS, sizes={"compute": "t9.imaginary"}))
    text = "\n".join(p.plan(cluster_nodes(2)))
    assert "compute: 2 x t9.imaginary, price unknown (libcloud has no price" in text
    assert f"total: 3 nodes, ${head:.4f}/h for the 1 priced ones; 2 of unknown price" in text
    assert "credentials: NOT READY: " in text


def test_plan_gce_price_per_cpu_and_memory(env):
    p = env.make(GCEProvider, {"zone": "us-central1-a", "image": "debian-12",
                               "size": "e2-standard-2", "head_size": "zz-custom"})
    e2 = get_pricing("compute", "gce_instances")["e2"]
    want = (2 * e2["cpu"]["on_demand"]["us-central1"]["price"]
            + 8 * e2["ram"]["on_demand"]["us-central1"]["price"])
    text = "\n".join(p.plan(cluster_nodes(1)))
    assert f"compute: 1 x e2-standard-2, ${want:.4f}/h each" in text
    assert "head (head: slurmctld): 1 x zz-custom, price unknown" in text


def test_plan_openstack_unknown_and_driver_size_price(env):
    p = env.make(OpenStackProvider, {"image": "Ubuntu 22.04", "size": "m1.small"})
    text = "\n".join(p.plan(cluster_nodes(1)))
    assert "hourly cost unknown" in text and "price unknown" in text
    p = env.make(OpenStackProvider, {"image": "Ubuntu 9.10", "size": "Small"},
                 driver=DummyNodeDriver(0))      # its sizes carry a price
    text = "\n".join(p.plan(cluster_nodes(1)))
    assert "1 x Small, $4.0000/h each" in text and "driver: given by driver_factory" in text


# -- the other clouds through the dummy driver; shell -----------------------------------------
def test_gce_and_openstack_create_with_the_dummy_driver(env):
    drv = NamingDummy(tags_key="labels")
    p = env.make(GCEProvider, {"zone": "europe-west1-b", "image": "debian-12",
                               "size": "e2-small", "network_tags": ["pb"]}, driver=drv)
    p.check()
    p.create(cluster_nodes(1))
    kw = drv.create_calls[0]
    assert kw["location"] == "europe-west1-b" and kw["ex_tags"] == ["pb"]
    assert kw["ex_metadata"] == {"ssh-keys": f"pushbutton:{PUB}"}
    assert kw["ex_labels"]["pushbutton-cluster"] == "lab"
    p.destroy(cluster_nodes(1))               # by name and label
    assert {m.name for m in drv.list_nodes()} == {"dummy-1", "dummy-2"}

    drv = DummyNodeDriver(0)
    p = env.make(OpenStackProvider, {"image": "Ubuntu 9.10", "size": "Small"}, driver=drv)
    nodes = cluster_nodes(1)
    p.create(nodes)
    assert all(n.stage == "created" for n in nodes) and len(drv.list_nodes()) == 4
    argv = p.shell(None)
    assert argv[0] == "ssh" and argv[-1] == f"ubuntu@{nodes[0].extra['ssh_host']}"
    assert f"UserKnownHostsFile={env.tmp / 'known_hosts'}" in argv
    p.destroy(nodes)
    assert len(drv.list_nodes()) == 2


def test_names_are_valid_for_every_cloud(env):
    p = env.make(GCEProvider, {"zone": "z-1-a", "image": "i", "size": "s"},
                 cluster="My_Lab.2024")
    name = p.instance_name(Node("C_1" * 30, "compute"))
    assert len(name) <= 63 and name.startswith("pb-my-lab-2024-c-1")
    assert name == name.lower() and set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert p.tags(Node("n1", "compute"))["pushbutton-cluster"] == "my-lab-2024"
