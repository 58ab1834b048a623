"""Preflight (issue 9, item 10): a function or program that cannot run is one spec error, before
anything is registered; `--dry-run`, `pb run` and `exp.run()` alike."""
import os
import sqlite3
import stat

import pytest

from pushbutton import Experiment, grid, load, reps
from pushbutton.core.errors import SpecError

from .conftest import pb, write

SIM = """
def simulate(n, noise=0.0):
    return {"y": n + noise}

def seeded(n, seed):
    return {"y": n + seed}

def anything(**kw):
    return {"k": len(kw)}
"""


def _spec(project, body, name="pf"):
    write(project / "sim.py", SIM)
    return write(project / "e.toml", f'name = "{name}"\n{body}')


def _n_tasks(project) -> int:
    db = project / ".pushbutton" / "state.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        con.close()


CASES = [
    ('function = "nomodule:f"\n[space]\ngrid = {n = [1, 2]}\n',
     ["cannot import 'nomodule'", "key 'function'"]),
    ('function = "sim:simulat"\n[space]\ngrid = {n = [1, 2]}\n',
     ["has no function 'simulat'", "did you mean 'simulate'"]),
    ('function = "sim:simulate"\n[space]\ngrid = {n = [1, 2], nosie = [0.1]}\n',
     ["simulate() takes no parameter 'nosie'", "did you mean 'noise'"]),
    ('function = "sim:seeded"\n[space]\ngrid = {n = [1, 2]}\n',
     ["seeded() needs 'seed'", "reps = N"]),
    ('command = ["no-such-program-pb", "{n}"]\n[space]\ngrid = {n = [1, 2]}\n',
     ["'no-such-program-pb' is not on PATH", "key 'command[0]'"]),
    ('command = ["./tool.sh", "{n}"]\n[space]\ngrid = {n = [1, 2]}\n',
     ["'./tool.sh' does not exist"]),
    ('command = ["python", "mising.py", "{n}"]\n[space]\ngrid = {n = [1, 2]}\n',
     ["the script 'mising.py' does not exist", "key 'command[1]'"]),
]


@pytest.mark.parametrize("body,expected", CASES, ids=["nomodule", "attr", "param", "seed",
                                                       "program", "path", "script"])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_cli_refuses_before_registering(project, body, expected, dry):
    _spec(project, body)
    r = pb("run", "e.toml", *(["--dry-run"] if dry else []), check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "e.toml" in r.stderr and "fix:" in r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert _n_tasks(project) == 0


def test_python_api_refuses_before_registering(project):
    write(project / "sim.py", SIM)
    exp = Experiment("api", function="sim:simulate", space=grid(n=[1], nosie=[0.5]),
                     root=project)
    with pytest.raises(SpecError, match="takes no parameter 'nosie'"):
        exp.run()
    exp = Experiment("api2", function="sim:seeded", space=grid(n=[1]), root=project)
    with pytest.raises(SpecError, match="needs 'seed'"):
        exp.run()
    assert _n_tasks(project) == 0


def test_import_error_shows_the_users_line(project):
    write(project / "broken.py", "import os\n\nx = 1 / 0\n\ndef f(n):\n    return {}\n")
    write(project / "e.toml", 'name = "b"\nfunction = "broken:f"\n[space]\ngrid = {n = [1]}\n')
    r = pb("run", "e.toml", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ZeroDivisionError: division by zero" in r.stderr
    assert "broken.py, line 3: x = 1 / 0" in r.stderr
    # a module the user's code imports that is not installed: that line too
    write(project / "broken.py", "import numpyy_not_installed\n\ndef f(n):\n    return {}\n")
    r = pb("run", "e.toml", check=False)
    assert "No module named 'numpyy_not_installed'" in r.stderr
    assert "broken.py, line 1: import numpyy_not_installed" in r.stderr
    assert _n_tasks(project) == 0


def test_what_passes_still_runs(project):
    """kwargs, defaults, `rep` dropped for a function without it, seed given by reps, a path
    relative to the spec folder: all accepted, and the tasks run."""
    _spec(project, 'function = "sim:seeded"\n[space]\ngrid = {n = [1, 2]}\nreps = 2\n')
    assert "4 done, 0 failed" in pb("run", "e.toml").stdout
    _spec(project, 'function = "sim:anything"\n[space]\ngrid = {n = [1], whatever = [2]}\n',
          name="kw")
    assert "1 done" in pb("run", "e.toml").stdout
    write(project / "tool.sh", "#!/bin/sh\necho '{\"v\": '$1'}'\n")
    os.chmod(project / "tool.sh", 0o755)
    _spec(project, 'command = ["./tool.sh", "{n}"]\n[space]\ngrid = {n = [3]}\n', name="cmd")
    assert "1 done" in pb("run", "e.toml").stdout
    # a union whose parts differ: the part missing a required parameter is named
    exp = Experiment("u", function="sim:seeded", space=grid(n=[1]) * reps(2) + grid(n=[5]),
                     root=project)
    with pytest.raises(SpecError, match="needs 'seed'"):
        exp.run()


def test_not_executable_program(project):
    write(project / "tool.sh", "#!/bin/sh\necho '{}'\n")
    os.chmod(project / "tool.sh", stat.S_IRUSR | stat.S_IWUSR)
    _spec(project, 'command = ["./tool.sh"]\n[space]\ngrid = {n = [1]}\n')
    r = pb("run", "e.toml", "--dry-run", check=False)
    assert r.returncode == 2 and "is not executable" in r.stderr and "chmod +x" in r.stderr


def test_slow_import_is_a_warning_not_an_error(project):
    write(project / "slowimp.py", "import time\ntime.sleep(5)\ndef f(n):\n    return {'n': n}\n")
    write(project / "e.toml", 'name = "s"\nfunction = "slowimp:f"\n[space]\ngrid = {n = [1]}\n')
    r = pb("run", "e.toml", "--dry-run", env={"PB_PREFLIGHT_TIMEOUT": "0.5"})
    assert "took more than 0.5s" in r.stderr and "1 tasks" in r.stdout


def test_load_then_run_python_api_with_spec_file(project):
    _spec(project, 'function = "sim:simulate"\n[space]\ngrid = {n = [1], nosie = [1]}\n')
    exp = load(project / "e.toml")
    with pytest.raises(SpecError) as e:
        exp.run()
    assert e.value.file.endswith("e.toml") and e.value.key == "function"
    assert "'noise'" in str(e.value)
    assert _n_tasks(project) == 0


def test_remote_target_import_failure_is_a_warning(project):
    """On an SSH/Dask target the function runs in another environment: a module missing here is
    a warning, not an error (a wrong parameter name is still an error)."""
    from pushbutton.execution import preflight
    write(project / "sim.py", SIM)
    exp = Experiment("r", function="onlyonthecluster:f", space=grid(n=[1]), root=project)
    got = preflight.check(exp, remote=True)
    assert len(got) == 1 and "onlyonthecluster" in got[0] and "may work" in got[0]
    exp = Experiment("r", function="sim:simulate", space=grid(n=[1], nosie=[1]), root=project)
    with pytest.raises(SpecError, match="nosie"):
        preflight.check(exp, remote=True)


def test_probe_started_early_is_the_one_checked(project, monkeypatch):
    """`pb run` starts the import check before it imports its own machinery (preflight.start)
    and collects it later: the same clear error, from that one probe, none started twice."""
    from pushbutton.execution import preflight as pf
    write(project / "slowsim.py", "import time\ntime.sleep(0.5)\n" + SIM)
    exp = Experiment("early", function="slowsim:simulate", space=grid(n=[1], nosie=[0.5]),
                     root=project)
    started = pf.start(exp)
    argv, proc, _ = started
    assert proc.poll() is None  # still importing: the caller goes on meanwhile
    monkeypatch.setattr(pf, "_spawn", lambda exp: pytest.fail("a second probe"))
    with pytest.raises(SpecError, match="takes no parameter 'nosie'"):
        pf.check(exp, started=started)
    assert proc.poll() is not None
    assert pf.start(Experiment("cmd", command=["true"], space=grid(n=[1]), root=project)) is None
