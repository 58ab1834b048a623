"""Where things are (issue: a researcher's first hour): which store a spec uses, what a dry run
writes (nothing) and says, and what the code version sees. CLI end to end, as a user types it."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .conftest import HERE, pb, write

SPEC = """
name = "sq"
function = "tasks:square"
[space]
grid = { x = [1, 2, 3] }
"""


def _proj(folder: Path, spec: str = SPEC) -> Path:
    """A project folder with the test tasks and a spec; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "tasks" / "tasks.py", folder / "tasks.py")
    return write(folder / "experiment.toml", spec)


def _snapshot(root: Path) -> dict:
    """Every file and folder under root with what a write would change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    st = root.stat()
    out["."] = (-1, st.st_mtime_ns)
    return out


def _bundles(proj: Path) -> int:
    return len(list((proj / ".pushbutton" / "bundles").iterdir()))


# -- 1. the store of a spec is found from the spec's folder -------------------------------------
def test_run_from_another_folder_uses_the_store_next_to_the_spec(tmp_path):
    spec = _proj(tmp_path / "proj")
    pb("run", "experiment.toml", cwd=tmp_path / "proj")
    n = _bundles(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = pb("run", spec, cwd=elsewhere)
    assert "3 done" in r.stdout
    assert not (elsewhere / ".pushbutton").exists()  # no store made in the shell's folder
    assert _bundles(tmp_path / "proj") == n  # nothing recomputed: the spec's store was used
    assert f"store: {tmp_path / 'proj' / '.pushbutton'}" in r.stderr  # and it is named
    assert "results: pb results ../proj/experiment.toml" in r.stdout  # a command that works
    # the readers find it from the spec the same way, and say which store they read
    st = pb("status", spec, cwd=elsewhere)
    assert "3 tasks, 100.0% finished" in st.stdout
    assert str(tmp_path / "proj" / ".pushbutton") in st.stderr
    rows = pb("results", spec, "--format", "csv", cwd=elsewhere).stdout.splitlines()
    assert len(rows) == 4
    assert not (elsewhere / ".pushbutton").exists()


def test_first_run_from_elsewhere_creates_the_store_next_to_the_spec(tmp_path):
    spec = _proj(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = pb("run", spec, cwd=elsewhere)
    assert "3 done" in r.stdout
    assert (tmp_path / "proj" / ".pushbutton" / "state.sqlite").exists()
    assert not (elsewhere / ".pushbutton").exists()
    assert f"new store: {tmp_path / 'proj' / '.pushbutton'}" in r.stderr
    # from the project's top, a spec in a subfolder keeps one store at the top
    sub = _proj(tmp_path / "top" / "exps", SPEC.replace('"sq"', '"sub"'))
    pb("run", "exps/experiment.toml", cwd=tmp_path / "top")
    assert (tmp_path / "top" / ".pushbutton" / "state.sqlite").exists()
    assert not (sub.parent / ".pushbutton").exists()
    assert "3 tasks" in pb("status", "sub", cwd=sub.parent).stdout  # found upward


def test_reading_never_creates_a_store(tmp_path, monkeypatch):
    spec = _proj(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    import pushbutton
    from pushbutton.core.errors import PushbuttonError
    exp = pushbutton.load(spec)
    for read in (exp.results, exp.status, exp.history, lambda: exp.sql("SELECT 1")):
        with pytest.raises(PushbuttonError, match="has not been run"):
            read()
    for args in (("results", spec), ("status", spec), ("status",), ("history",),
                 ("report", spec)):
        r = pb(*args, cwd=tmp_path, check=False)
        assert r.returncode == 2 and "no pushbutton store" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not list(tmp_path.rglob(".pushbutton"))


def test_a_spec_loaded_from_the_parent_folder_reads_its_own_store(tmp_path, monkeypatch):
    # the parent folder is a project of its own, with an experiment of the same name
    _proj(tmp_path)
    pb("run", "experiment.toml", cwd=tmp_path)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "cube.py", "def cube(x):\n    return {'y': x ** 3}\n")
    write(tmp_path / "sub" / "experiment.toml", SPEC.replace("tasks:square", "cube:cube"))
    pb("init", cwd=tmp_path / "sub")
    pb("run", "experiment.toml", cwd=tmp_path / "sub")
    monkeypatch.chdir(tmp_path)
    import pushbutton
    df = pushbutton.load("sub/experiment.toml").results()
    assert sorted(df["y"]) == [1, 8, 27]  # the cubes of sub/, not the parent's squares
    rows = pb("results", "sub/experiment.toml", "--format", "csv", cwd=tmp_path).stdout
    assert "27" in rows and ",9," not in rows
    # a spec without a store of its own whose name the parent's store knows from another
    # spec file: what is shown is that spec's experiment, and it is said
    _proj(tmp_path / "other")
    with pytest.warns(UserWarning, match="was run from"):
        df = pushbutton.load("other/experiment.toml").results()
    r = pb("results", "other/experiment.toml", cwd=tmp_path)
    assert "was run from" in r.stderr and str(tmp_path / "experiment.toml") in r.stderr
    r = pb("run", "other/experiment.toml", "--dry-run", cwd=tmp_path)
    assert "was run from" in r.stderr and "shares its tasks" in r.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own spec: no warning
        pushbutton.load("experiment.toml").results()


# -- 2. --dry-run writes nothing and says what would run ----------------------------------------
def test_dry_run_writes_nothing(tmp_path):
    spec = _proj(tmp_path / "proj")
    before = _snapshot(tmp_path)
    r = pb("run", spec, "--dry-run", cwd=tmp_path / "proj")
    assert _snapshot(tmp_path) == before  # no store, no __pycache__ from the preflight
    assert "3 tasks: 0 done, 3 to run" in r.stdout
    pb("run", spec, cwd=tmp_path / "proj")
    write(spec, SPEC.replace("[1, 2, 3]", "[1, 2, 3, 4]"))
    before = _snapshot(tmp_path)
    for cwd in (tmp_path / "proj", tmp_path):
        r = pb("run", spec, "--dry-run", cwd=cwd)
        assert "4 tasks: 3 done, 1 to run" in r.stdout
    assert _snapshot(tmp_path) == before  # .pushbutton/ and state.sqlite untouched


def test_dry_run_says_when_a_run_is_going_on(tmp_path):
    spec = _proj(tmp_path)
    pb("run", spec, cwd=tmp_path)
    from pushbutton.store.database import Store
    from pushbutton.store.lock import ExperimentLock
    st = Store(tmp_path, create=False)
    lock = ExperimentLock(st, st.experiment("sq"), "sq").acquire()  # as a driver holds it
    try:
        out = pb("run", spec, "--dry-run", cwd=tmp_path).stdout
    finally:
        lock.release()
        st.close()
    assert "'sq' is being run now (pid" in out and "would refuse" in out


def test_dry_run_counts_done_and_to_run(project):
    spec = write(project / "experiment.toml", """
name = "cnt"
function = "tasks:faulty"
[space]
grid = { kind = ["ok", "raise"], i = { range = [0, 6] } }
""")
    r = pb("run", spec, check=False)
    assert r.returncode == 1  # 6 done, 6 failed
    write(spec, spec.read_text().replace("range = [0, 6]", "range = [0, 10]"))
    out = pb("run", spec, "--dry-run").stdout
    assert "20 tasks: 6 done, 8 to run; 6 failed, kept (--rerun-failed" in out
    assert "20 tasks: 6 done, 14 to run" in pb("run", spec, "--dry-run", "--rerun-failed").stdout
    assert "20 tasks: 6 done, 20 to run" in pb("run", spec, "--dry-run", "--rerun").stdout
    assert "8 bundles of 1" not in out and "bundles of" in out


def test_dry_run_says_that_a_big_space_needs_yes(project):
    write(project / "experiment.toml", SPEC.replace("[1, 2, 3]", "{ range = [0, 30] }")
          + "[run]\nmax_tasks = 20\n")
    out = pb("run", "experiment.toml", "--dry-run").stdout
    assert "30 tasks: 0 done, 30 to run" in out
    assert "more than run.max_tasks = 20: the run needs --yes" in out
    assert "--yes confirms it" in pb("run", "experiment.toml", "--dry-run", "--yes").stdout


def test_parrun_finds_the_store_from_the_script_and_its_dry_run_writes_nothing(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    write(proj / "sweep.py", "for n in [1, 2]:\n    result = {'y': n * n}\n")
    before = _snapshot(tmp_path)
    r = pb("parrun", proj / "sweep.py", "--dry-run", cwd=tmp_path)
    assert "2 tasks" in r.stdout
    assert _snapshot(tmp_path) == before
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = pb("parrun", proj / "sweep.py", "--quiet", cwd=elsewhere)
    assert "2 done" in r.stdout
    assert (proj / ".pushbutton" / "state.sqlite").exists()
    assert not (elsewhere / ".pushbutton").exists()
    assert f"new store: {proj / '.pushbutton'}" in r.stderr


def _fake_ssh(tmp_path: Path) -> tuple[dict, Path]:
    """PATH with an `ssh` that only records that it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "ssh-called"
    for tool in ("ssh", "rsync", "scp"):
        write(bin_dir / tool, f"#!/bin/sh\necho \"$@\" >> {mark}\nexit 255\n").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "XDG_CACHE_HOME": str(tmp_path / "cache")}, mark


TARGETS = """
[targets.hpc]
host = "login.hpc.invalid"
scheduler = "slurm"
sbatch = "--partition=short"
"""


def test_dry_run_on_a_slurm_target_plans_for_slurm_without_contacting_it(project, tmp_path):
    write(project / "experiment.toml", SPEC.replace("[1, 2, 3]", "{ range = [0, 75] }"))
    write(project / "pushbutton-targets.toml", TARGETS)
    env, mark = _fake_ssh(tmp_path)
    before = _snapshot(project)
    out = pb("run", "experiment.toml", "--dry-run", "--on", "hpc", env=env).stdout
    assert "bundling on 'hpc' (SLURM via ssh to login.hpc.invalid)" in out
    assert "bundling on local" not in out
    assert "a dry run does not contact it" in out and "login.hpc.invalid" in out
    assert "sbatch options: --partition=short" in out
    assert not mark.exists()  # nothing was asked over ssh
    assert _snapshot(project) == before
    # with the site limits an earlier run cached, the plan is the one a run would submit
    from pushbutton.execution import targets
    from pushbutton.execution.slurm.backend import SlurmBackend
    t = targets.get("hpc", project)
    key = SlurmBackend(t, project / ".pushbutton")._key()
    cache = tmp_path / "cache" / "pushbutton" / "limits-hpc.json"
    cache.parent.mkdir(parents=True)
    import time
    cache.write_text(json.dumps({"t": time.time(), "key": key, "limits": {
        "max_array": 10, "max_jobs": 10000, "cpus": 8, "accounting": False,
        "min_job_age": 300}}))
    out = pb("run", "experiment.toml", "--dry-run", "--on", "hpc", env=env).stdout
    assert "75 tasks: 0 done, 75 to run" in out
    assert "bundling on 'hpc' (SLURM via ssh to login.hpc.invalid): 8 bundles of 10 tasks " \
           "(the last 5) as 1 job array (site limits cached by an earlier run: " \
           "MaxArraySize 10, 8 CPUs in the partition)" in out, out
    assert not mark.exists()


def test_dry_run_on_a_local_target_uses_its_workers(project):
    write(project / "experiment.toml", SPEC.replace("[1, 2, 3]", "{ range = [0, 30] }"))
    write(project / "pushbutton-targets.toml", "[targets.box]\nscheduler = \"local\"\n"
                                               "workers = 3\n")
    out = pb("run", "experiment.toml", "--dry-run", "--on", "box").stdout
    assert "bundling on 'box' (3 workers)" in out
    r = pb("run", "experiment.toml", "--dry-run", "--on", "nosuch", check=False)
    assert r.returncode == 2 and "no target named 'nosuch'" in r.stderr


# -- 3. the code version: every file that is not data; not the figures ---------------------------
AWK_SPEC = """
name = "aw"
command = ["awk", "-v", "x={x}", "-f", "score.awk"]
[space]
grid = { x = [1, 2, 3] }
[[figures]]
kind = "line"
x = "x"
y = "y"
"""


def _versions(spec: Path) -> list:
    out = subprocess.run([sys.executable, "-c", "import pushbutton, sys, json; print(json.dumps("
                          "[r['code_version'] for r in pushbutton.load(sys.argv[1]).history()]))",
                          str(spec)], capture_output=True, text=True, check=True,
                         cwd=spec.parent)
    return json.loads(out.stdout)


def _awk_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "score.awk", 'BEGIN { printf "{\\"y\\": %d}\\n", x * 2 }\n')
    write(folder / "data.bin", "\0\1\2 weights")
    return write(folder / "experiment.toml", AWK_SPEC)


def _edit_figures(spec: Path) -> None:
    write(spec, spec.read_text().replace('kind = "line"', 'kind = "line"\ntitle = "2x"'))


def _run(spec):
    return pb("run", spec, cwd=spec.parent)


@pytest.mark.skipif(shutil.which("awk") is None, reason="needs awk")
def test_code_version_outside_git_sees_every_text_file_but_not_figures_or_data(tmp_path):
    spec = _awk_project(tmp_path / "p")
    _run(spec)
    _edit_figures(spec)
    (spec.parent / "data.bin").write_bytes(b"\0\1\2 other weights")
    r = _run(spec)
    assert "--rerun" not in r.stderr  # figures and binary data are not code
    write(spec.parent / "score.awk", 'BEGIN { printf "{\\"y\\": %d}\\n", x * 3 }\n')
    r = _run(spec)
    assert "3 results are from an earlier code version" in r.stderr and "--rerun" in r.stderr
    assert "changed since: score.awk\n" in r.stderr  # not the spec, whose figures changed
    v = _versions(spec)
    assert v[0] == v[1] != v[2] and all(x.startswith("code:") for x in v)


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("awk") is None,
                    reason="needs git and awk")
def test_code_version_in_git_sees_each_edit_but_not_figures(tmp_path):
    spec = _awk_project(tmp_path / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    cwd = spec.parent
    subprocess.run(["git", "init", "-q"], cwd=cwd, check=True)
    subprocess.run([*git, "add", "."], cwd=cwd, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=cwd, check=True)
    # already dirty: a first edit of the script, then a run
    write(cwd / "score.awk", 'BEGIN { printf "{\\"y\\": %d}\\n", x * 3 }\n')
    _run(spec)
    _edit_figures(spec)  # the figures only (committed, even): not a new code version
    subprocess.run([*git, "commit", "-qam", "figures"], cwd=cwd, check=True)
    r = _run(spec)
    assert "--rerun" not in r.stderr
    # a second edit of the tracked .awk is seen, though the tree was dirty before it
    write(cwd / "score.awk", 'BEGIN { printf "{\\"y\\": %d}\\n", x * 4 }\n')
    r = _run(spec)
    assert "3 results are from an earlier code version" in r.stderr
    v = _versions(spec)
    assert v[0] == v[1] != v[2]
