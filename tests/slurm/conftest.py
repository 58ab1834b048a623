"""Fixtures for the tests that use the real one-host SLURM cluster and the loopback sshd started
by scripts/setup.d (their settings come from .services/env.sh through the environment).
Without them the tests skip, except under CI=true, where a missing service fails the run."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CI = os.environ.get("CI") == "true"


def _missing(what):
    if CI:
        pytest.fail(f"{what} is not available under CI=true (see scripts/setup.d)")
    pytest.skip(f"{what} is not available; run scripts/test.sh (it starts the services)")


def _slurm_ok() -> bool:
    if not os.environ.get("SLURM_CONF") or not shutil.which("sinfo"):
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and bool(r.stdout.strip())


def node_idle(timeout=30.0):
    """Bring the test node back (RESUME) and wait until it takes jobs."""
    node = os.environ.get("PB_TEST_SLURM_NODE") or os.uname().nodename.split(".")[0]
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True,
                            text=True, timeout=20).stdout.strip()
        if st.startswith(("idle", "mixed", "allocated", "completing")):
            return
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"],
                       capture_output=True, timeout=20)
        time.sleep(0.5)
    pytest.fail(f"SLURM node {node} did not come back")


@pytest.fixture(scope="session")
def slurm():
    if not _slurm_ok():
        _missing("the test SLURM cluster (SLURM_CONF)")
    node_idle()
    return os.environ["SLURM_CONF"]


@pytest.fixture(scope="session")
def ssh_host(slurm):
    cfg, host = os.environ.get("PB_TEST_SSH_CONFIG"), os.environ.get("PB_TEST_SSH_HOST")
    if not (cfg and host and Path(cfg).exists()):
        _missing("the test sshd (PB_TEST_SSH_CONFIG)")
    r = subprocess.run(["ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                        host, "true"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        _missing(f"ssh to {host} ({r.stderr.strip()})")
    return host


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with slurm_tasks.py as the working directory, and no user targets."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(HERE / "slurm_tasks.py", proj / "slurm_tasks.py")
    monkeypatch.chdir(proj)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PUSHBUTTON_TARGETS", raising=False)
    return proj


def add_targets(proj: Path, text: str) -> Path:
    p = proj / "pushbutton-targets.toml"
    p.write_text(text)
    return p


def ssh_target(proj: Path, name="tc", **extra) -> str:
    """A target reaching the test cluster over SSH, with its work folder in the test's tmp."""
    lines = [f"[targets.{name}]", f"host = \"{os.environ['PB_TEST_SSH_HOST']}\"",
             f"ssh_config = \"{os.environ['PB_TEST_SSH_CONFIG']}\"",
             f"workdir = \"{proj.parent / 'remote'}\"", "poll_interval = 0.5"]
    for k, v in extra.items():
        lines.append(f"{k} = {v}")
    p = proj / "pushbutton-targets.toml"
    old = p.read_text() if p.exists() else ""
    p.write_text(old + "\n".join(lines) + "\n\n")
    return name


def pb(*args, check=True, timeout=180, env=None):
    """The real CLI in a subprocess, as a user would run it."""
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def squeue(job: str, fmt: str) -> list[str]:
    r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job, "-o", fmt],
                       capture_output=True, text=True, timeout=20)
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


TIME_LIMIT_START = "tests/slurm/test_slurm_run.py::test_start_time_limit_sweep"
BOTH_CPUS = ("tests/slurm/test_balance.py::",)


def pytest_collection_modifyitems(session, config, items):
    """The time-limit sweep of test_slurm_run.py holds one CPU for the minute SLURM takes to
    end it (whole minutes, checked on a 30-s tick): it starts right after the last test that
    needs both CPUs (test_balance.py), so that the tests of the files between overlap that
    minute too, instead of its check waiting for it at the end."""
    start = next((i for i, it in enumerate(items) if it.nodeid.endswith(TIME_LIMIT_START)),
                 None)
    if start is None:
        return
    both = [i for i, it in enumerate(items) if any(b in it.nodeid for b in BOTH_CPUS)]
    if not both or both[-1] > start:
        return
    item = items.pop(start)
    items.insert(both[-1] + 1, item)
