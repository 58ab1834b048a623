"""Names that become paths are validated before anything is written (issue 9, item 13)."""
import pytest

from pushbutton.core import pathnames as names
from pushbutton.core.errors import SpecError

from .conftest import pb, write


@pytest.fixture
def home(tmp_path):
    """User config and state folders inside the test folder."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    (tmp_path / "state" / "pushbutton" / "clusters").mkdir(parents=True)
    return env


def _victim(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precious.txt").write_text("keep me")
    return folder


def test_cluster_stop_delete_cannot_leave_the_clusters_folder(project, home, tmp_path):
    # clusters live in state/pushbutton/clusters: ../../victim is state/victim
    victim = _victim(tmp_path / "state" / "victim")
    r = pb("cluster", "stop", "../../victim", "--delete", check=False, env=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad cluster name '../../victim'" in r.stderr and "fix:" in r.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    for cmd in (["resize", "../../victim", "+1"], ["ssh", "../../victim"],
                ["down", "../../victim", "--delete"], ["status", "../../victim"]):
        r = pb("cluster", *cmd, check=False, env=home)
        assert r.returncode == 2 and "bad cluster name" in r.stderr
    assert victim.exists()


def test_parrun_name_is_checked_before_the_runner_is_written(project, tmp_path):
    write(project / "loop.py", "for i in [1, 2]:\n    result = {'y': i}\n")
    before = sorted(p for p in tmp_path.rglob("*") if ".pushbutton" not in p.parts)
    r = pb("parrun", "loop.py", "--name", "../../x", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad experiment name '../../x'" in r.stderr and "--name" in r.stderr
    after = sorted(p for p in tmp_path.rglob("*") if ".pushbutton" not in p.parts)
    assert after == before  # nothing written outside the store ...
    assert not list(tmp_path.parent.glob("x-*.py"))
    assert not list((project / ".pushbutton").rglob("*.py"))  # ... nor inside it


def test_targets_add_refuses_a_path_name_and_targets_keep_working(project, home, tmp_path):
    r = pb("targets", "add", "../../x", "--scheduler", "local", check=False, env=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad target name '../../x'" in r.stderr
    assert not (tmp_path / "cfg" / "pushbutton" / "targets.toml").exists()
    r = pb("targets", "add", "../../x", "--scheduler", "local", "--project", check=False,
           env=home)
    assert r.returncode == 2 and not (project / "pushbutton-targets.toml").exists()
    assert "local" in pb("targets", "list", env=home).stdout
    pb("targets", "add", "ok-1", "--scheduler", "local", env=home)
    assert "ok-1" in pb("targets", "list", env=home).stdout


@pytest.mark.parametrize("bad", ["../../x", "..", ".hidden", "a/b", "a..b", "", "x" * 101,
                                 "-flag", "a b"])
def test_one_rule(bad):
    assert names.problem(bad) is not None
    with pytest.raises(SpecError):
        names.check(bad, "experiment name")


def test_figure_name_cannot_leave_the_report_folder(project):
    write(project / "e.toml", 'name = "f"\nfunction = "tasks:square"\n[space]\ngrid = {x = [1]}\n'
                              '[[figures]]\nkind = "line"\nx = "x"\ny = "y"\nname = ".."\n')
    from pushbutton.analysis import figure_specs
    from pushbutton.spec.model import read_toml
    with pytest.raises(SpecError, match="figure name '..'"):
        figure_specs.validate(read_toml(project / "e.toml")["figures"], None, file="e.toml",
                              check_columns=False)
