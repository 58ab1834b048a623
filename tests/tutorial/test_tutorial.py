"""docs/TUTORIAL.md, run as a reader follows it: every fenced block of the page, in order, in a
fresh project folder (tests/tutorial/steps.py says how blocks become steps). The outputs the
page shows are checked against what the commands print; a few facts the page only tells are
checked on the store itself.

The page's `pip install -e .` is not run (it would need the network for its build backend, and
the package is installed already): the test checks instead that the checkout declares the `pb`
command that the rest of the page runs. The SLURM part runs against the suite's one-host
cluster, the SSH target against its loopback sshd (the page's host and work folder are
replaced by those); without them it is skipped, under CI=true it fails."""
from __future__ import annotations

import csv
import os
import shlex
import sqlite3
import sys
from pathlib import Path

import pytest

from .steps import FENCE, Session, parse, run, session_env

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "TUTORIAL.md"
_DONE = {}  # the session after the first part, for the SLURM part


def _pip_install(step, s):
    """The page's install line: what it installs is checked, not installed again."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    assert shlex.split(step.command) == ["pip", "install", "-e", "."], step.command
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["pb"] == "pushbutton.cli:main"
    import pushbutton
    assert Path(pushbutton.__file__).resolve().is_relative_to(ROOT / "src"), \
        "the tests must run this checkout's pushbutton"
    return ""


def _session(tmp: Path) -> Session:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    py = shlex.quote(sys.executable)
    for name, line in (("pb", f'exec {py} -m pushbutton "$@"'), ("python", f'exec {py} "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    s = Session(cwd=tmp, env=session_env(bin_dir, tmp))
    s.hooks["pip install"] = _pip_install
    return s


def _first_part(tmp_path_factory) -> Session:
    if "session" not in _DONE:
        steps = parse(PAGE.read_text(encoding="utf-8"))
        s = _session(tmp_path_factory.mktemp("tutorial"))
        for step in (st for st in steps if st.part == "main"):
            run(step, s)
        _DONE["session"] = s
    return _DONE["session"]


def _counts(project: Path) -> dict:
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        return dict(db.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall())
    finally:
        db.close()


def test_every_block_of_the_page_is_a_step_the_test_runs():
    text = PAGE.read_text(encoding="utf-8")
    steps = parse(text)  # raises on a block it could not run
    assert {st.part for st in steps} == {"main", "slurm"}
    blocks = list(FENCE.finditer(text))
    assert text.count("```") == 2 * len(blocks), "a fence the parser does not see as a block"
    for b in blocks:  # and each block gives at least one step
        line = text.count("\n", 0, b.start()) + 1
        assert any(line <= st.line <= line + b.group(0).count("\n") for st in steps), line
    commands = [st.command for st in steps if st.kind == "command"]
    for needed in ("pb run experiment.toml", "pb status", "pb results", "pb sql", "pb report",
                   "pb logs", "pb retry", "--on local-slurm", "--on hpc"):
        assert any(needed in c for c in commands), needed
    assert "docs/TUTORIAL.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_tutorial_from_install_to_a_rerun_of_the_failed_tasks(tmp_path_factory):
    s = _first_part(tmp_path_factory)
    project = s.cwd
    assert project.name == "robust"
    # what the page tells, on the store and the files themselves
    assert _counts(project) == {"done": 180}
    with open(project / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 120 and {r["pb_status"] for r in rows} == {"done"}
    assert {r["dist"] for r in rows} == {"normal", "cauchy"}
    report = project / ".pushbutton" / "reports" / "robust"
    assert (report / "report.html").stat().st_size > 10_000
    assert (project / "err_median.png").read_bytes()[:4] == b"\x89PNG"
    # the retry ran the 60 failed tasks once more, each as its attempt 2
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    try:
        attempts = db.execute("SELECT attempts, count(*) FROM tasks GROUP BY attempts").fetchall()
    finally:
        db.close()
    assert sorted(attempts) == [(1, 120), (2, 60)]


@pytest.mark.slurm
def test_tutorial_the_same_sweep_on_slurm(slurm, ssh_host, tmp_path_factory):
    s = _first_part(tmp_path_factory)
    remote = s.cwd.parent / "remote"
    s.subs = [("--host login.cluster.example.org",
               f"--host {ssh_host} --ssh-config {os.environ['PB_TEST_SSH_CONFIG']}"),
              ("/scratch/me/pb", str(remote))]
    s.back = [(f"({ssh_host},", "(login.cluster.example.org,")]
    for step in (st for st in parse(PAGE.read_text(encoding="utf-8")) if st.part == "slurm"):
        run(step, s)
    assert _counts(s.cwd) == {"done": 1200}
    import pushbutton as pbm
    df = pbm.load(s.cwd / "experiment.toml").results()
    node = os.environ.get("PB_TEST_SLURM_NODE")
    by_run = df.groupby("pb_run_id").pb_node.unique().to_dict()
    assert sorted(by_run) == [1, 3, 4, 5]
    if node:  # the SLURM runs ran on the cluster's node, as SLURM names it
        assert list(by_run[4]) == [node] and list(by_run[5]) == [node]
    assert list(remote.glob("*/code/estimators.py")), "the project was not shipped over SSH"
    assert (df[df.n == 10000].groupby("dist").size() == 100).all()
    # what the page's last paragraph says of the numbers
    mean = df.groupby(["dist", "n"])[["err_mean", "median_wins"]].mean()
    assert mean.loc["cauchy", "err_mean"].between(2, 6).all()
    assert mean.loc["laplace", "median_wins"].between(0.6, 0.7).all()
    assert mean.loc["normal", "median_wins"].between(0.35, 0.45).all()
