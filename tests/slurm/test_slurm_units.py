"""Targets, remote quoting, sbatch flags and SLURM state mapping: no cluster needed."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pushbutton.execution import targets as T
from pushbutton.execution.backends.base import FAILED, FINISHED, QUEUED, RUNNING, BundleRef
from pushbutton.execution.slurm.backend import SlurmBackend
from pushbutton.execution.slurm.options import parse_config, partition_of, resource_flags, time_limit
from pushbutton.execution.slurm.status import state_of
from pushbutton.core.errors import SpecError
from pushbutton.execution.remote import LocalShell, Result, SSHShell, script_for

from .conftest import pb


# -- targets ---------------------------------------------------------------------------------
def test_builtins_and_project_file(project):
    assert T.get("local").scheduler == "local"
    ls = T.get("local-slurm")
    assert ls.scheduler == "slurm" and ls.host is None and ls.python == sys.executable
    (project / "pushbutton-targets.toml").write_text(
        '[targets.hpc]\nhost = "login.example.org"\nsetup = "module load python"\n'
        'sbatch = "--partition=short --account=\'my acct\'"\n\n'
        '[targets.local-slurm]\nsbatch = ["--comment=x"]\n')
    hpc = T.get("hpc")
    assert hpc.setup == ["module load python"]
    assert hpc.sbatch == ["--partition=short", "--account=my acct"]
    assert hpc.remote_workdir == "~/.pushbutton-remote" and hpc.file.endswith(T.PROJECT_FILE)
    ls = T.get("local-slurm")  # a project may add defaults to a built-in
    assert ls.sbatch == ["--comment=x"] and ls.python == sys.executable


@pytest.mark.parametrize("body, key, words", [
    ('[targets.a]\nhots = "x"\n', "targets.a.hots", "did you mean 'host'"),
    ('[targets.a]\nscheduler = "pbs"\n', "targets.a.scheduler", "slurm, local, dask"),
    ('[a]\nhost = "x"\n', "a", "[targets.a]"),
    ('[targets.a]\npoll_interval = -1\n', "targets.a.poll_interval", "> 0"),
    ('[targets.a]\nsbatch = "--x=\'unclosed"\n', "targets.a.sbatch", "cannot split"),
])
def test_bad_target_files_name_file_key_and_fix(project, body, key, words):
    (project / "pushbutton-targets.toml").write_text(body)
    with pytest.raises(SpecError) as e:
        T.load_all()
    assert e.value.key == key and e.value.file.endswith(T.PROJECT_FILE)
    assert words in str(e.value)


def test_unknown_target_suggests(project):
    with pytest.raises(SpecError) as e:
        T.get("local-slrum")
    assert "did you mean 'local-slurm'" in str(e.value) and "pb targets add" in str(e.value)


def test_add_show_list_replace_via_cli(project):
    r = pb("targets", "add", "hpc", "--host", "login.example.org", "--workdir", "/scratch/me",
           "--setup", "module load python/3.11", "--setup", "source ~/venv/bin/activate",
           "--sbatch", "--partition=short")
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "pushbutton" / "targets.toml"
    assert str(user) in r.stdout and user.exists()
    t = T.parse(T._read(user), str(user))["hpc"]
    assert t.setup == ["module load python/3.11", "source ~/venv/bin/activate"]
    assert t.workdir == "/scratch/me" and t.sbatch == ["--partition=short"]
    r = pb("targets", "add", "hpc", "--host", "other", check=False)
    assert r.returncode == 2 and "already exists" in r.stderr and "--replace" in r.stderr
    pb("targets", "add", "hpc", "--host", "other", "--replace")
    pb("targets", "add", "mine", "--project", "--host", "h2")
    r = pb("targets", "list")
    assert "hpc" in r.stdout and "other" in r.stdout and "mine" in r.stdout
    assert "local-slurm" in r.stdout and "built-in" in r.stdout
    r = pb("targets", "show", "hpc")
    assert 'host = "other"' in r.stdout
    assert T.get("mine").file.endswith(T.PROJECT_FILE)


def test_to_toml_round_trip():
    t = T.validate("x", {"host": "h", "setup": ["a 'b' \"c\""], "env": {"K": "v w"},
                         "sbatch": ["--mem=1G"], "poll_interval": 0.5})
    import tomllib
    back = T.parse(tomllib.loads(t.to_toml()))["x"]
    assert back.model_dump(exclude={"file"}) == t.model_dump(exclude={"file"})


# -- quoting --------------------------------------------------------------------------------
NASTY = ["a b", "$(touch /tmp/pb-pwned)", "`id`", "x;y", "'q'", '"dq"', "*", "~", "\\n", ""]


def test_local_shell_passes_values_literally(tmp_path):
    sh = LocalShell()
    r = sh.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                *NASTY], setup=["export PB_X='set up'"], cwd=str(tmp_path), env={"Y": "$(id)"})
    import json
    assert json.loads(r.stdout) == NASTY
    assert not Path("/tmp/pb-pwned").exists()


def test_ssh_command_line_is_quoted_for_the_remote_shell(monkeypatch):
    """What ssh would hand to the remote shell, run by a local shell, gives back argv exactly."""
    sh = SSHShell("somehost", ssh_config="/nonexistent/cfg")
    seen = {}

    def fake(argv, input, timeout):
        seen["argv"] = argv
        return Result(argv, 0, "", "")
    monkeypatch.setattr(sh, "_exec", fake)
    argv = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *NASTY]
    sh.run(argv)
    a = seen["argv"]
    assert a[:3] == ["ssh", "-F", "/nonexistent/cfg"] and "BatchMode=yes" in a
    assert any(x.startswith("ControlPath=") and len(x) < 90 for x in a)
    remote_cmd = a[a.index("--") + 1]
    r = subprocess.run(["sh", "-c", remote_cmd], capture_output=True, text=True)
    import json
    assert json.loads(r.stdout) == NASTY
    sh.run(argv, setup=["true"], cwd="~/w d", env={"K": "a b"})
    remote_cmd = seen["argv"][seen["argv"].index("--") + 1]
    assert shlex.split(remote_cmd)[:2] == ["bash", "-lc"]  # setup lines: a login shell
    assert 'cd "$HOME"/\'w d\'' in shlex.split(remote_cmd)[2]


def test_script_for_quotes_home_relative_paths():
    s = script_for(["echo", "hi there"], setup=["module load x"], cwd="~/a b", env={"A": "1 2"})
    assert s.splitlines() == ["module load x", "cd \"$HOME\"/'a b' || exit 96",
                              "export A='1 2'", "exec echo 'hi there'"]


def test_connection_errors_say_what_to_fix():
    sh = SSHShell("nohost.invalid", name="hpc")
    e = sh.connection_error("ssh: Could not resolve hostname nohost.invalid: Name or service "
                            "not known")
    assert "target 'hpc'" in str(e) and "fix:" in str(e) and not e.connection
    e = sh.connection_error("root@h: Permission denied (publickey).")
    assert "ssh-copy-id" in e.fix
    e = sh.connection_error("ssh: connect to host h port 22: Connection refused")
    assert e.connection  # may be transient: retried


# -- sbatch flags and states ---------------------------------------------------------------
def test_time_limits_and_resource_flags():
    assert time_limit(1) == "00:01:00" and time_limit(61) == "00:02:00"
    assert time_limit(3600 * 30) == "1-06:00:00"
    ref = BundleRef("b", Path("."), 10, timeout=60, memory_mb=2048, cpus=4)
    flags = resource_flags(ref, 10, gpus=1)
    assert "--cpus-per-task=4" in flags and "--mem=2048M" in flags and "--gres=gpu:1" in flags
    assert "--time=00:13:00" in flags  # 10 x 60 s x 1.1 + 2 min
    assert resource_flags(BundleRef("b", Path("."), 3)) == []


def test_partition_from_options():
    assert partition_of(["--partition=gpu,cpu"]) == "gpu"
    assert partition_of(["-p", "short"]) == "short" and partition_of(["-pshort"]) == "short"
    assert partition_of(["--mem=1G"]) is None


def test_parse_config():
    c = parse_config("Configuration data as of x\nMaxArraySize            = 1001\n"
                     "MaxJobCount             = 10000\nSchedulerParameters     = a=1,b=2\n")
    assert c["MaxArraySize"] == "1001" and c["SchedulerParameters"] == "a=1,b=2"


@pytest.mark.parametrize("st, extra, state, kind, words", [
    ("PENDING", {}, QUEUED, None, None),
    ("RUNNING", {}, RUNNING, None, None),
    ("COMPLETING", {}, RUNNING, None, None),
    ("COMPLETED", {"done": True}, FINISHED, None, None),
    ("COMPLETED", {}, FAILED, "lost", "without writing its outcome"),
    ("TIMEOUT", {}, FAILED, "timeout", "time limit"),
    ("OUT_OF_MEMORY", {}, FAILED, "memory", "memory"),
    ("NODE_FAIL", {"reason": "NodeDown"}, FAILED, "lost", "node failed (NODE_FAIL, NodeDown)"),
    ("PREEMPTED", {}, FAILED, "preempted", "preempted"),
    ("CANCELLED by 0", {}, FAILED, "lost", "scancel"),
    ("FAILED", {"exit_info": {"rc": 137}}, FAILED, "signal", "SIGKILL"),
    ("FAILED", {"exit_info": {"rc": 3}}, FAILED, "exit", "status 3"),
    (None, {}, FAILED, "lost", "left SLURM's queue"),
    (None, {"done": True}, FINISHED, None, None),
])
def test_state_mapping(st, extra, state, kind, words):
    b = state_of(st, **extra)
    assert b.state == state and b.kind == kind
    if words:
        assert words in b.cause


class FakeShell:
    remote = False

    def __init__(self, out):
        self.out, self.scripts = out, []

    def run_script(self, text, **kw):
        self.scripts.append(text)
        return Result(["bash"], 0, self.out, "")

    def close(self):
        pass


def test_poll_is_one_query_and_a_vanished_job_fails_at_once(tmp_path):
    out = ("@@squeue\n41_0|RUNNING|None\n41_1|PENDING|Resources\n@@rc=0\n@@files\n@@end\n")
    sh = FakeShell(out)
    be = SlurmBackend(T.get("local-slurm"), tmp_path, shell=sh)
    for b in ("b0", "b1", "b2", "b3"):
        (tmp_path / "bundles" / b).mkdir(parents=True)
    (tmp_path / "bundles" / "b3" / "done.json").write_text("{}")
    st = be.poll(["41_0:b0", "41_1:b1", "41_2:b2", "41_3:b3"])
    assert len(sh.scripts) == 1 and "squeue" in sh.scripts[0]
    assert [st[h].state for h in ("41_0:b0", "41_1:b1", "41_2:b2", "41_3:b3")] == \
        [RUNNING, QUEUED, FAILED, FINISHED]
    assert "left SLURM's queue" in st["41_2:b2"].cause
    sh.out = "@@squeue\nslurm_load_jobs error: Socket timed out\n@@rc=1\n@@files\n@@end\n"
    assert be.poll(["41_0:b0"]) == {} and "squeue failed" in be.last_poll_error  # no verdicts


def test_job_script_is_valid_bash(tmp_path):
    t = T.validate("x", {"setup": ["module load python || true"], "env": {"A": "b c"},
                         "python": "python3 -X utf8"})
    be = SlurmBackend(t, tmp_path, shell=FakeShell(""))
    text = be.job_script("/w/jobs/l.list")
    assert "module load python || true" in text and "export A='b c'" in text
    assert "python3 -X utf8 " in text and "exit.json" in text
    r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_poll_reads_sacct_for_jobs_squeue_forgot(tmp_path):
    out = ("@@squeue\nslurm_load_jobs error: Invalid job id specified\n@@rc=1\n@@sacct\n7_0|COMPLETED|0:0\n7_1|FAILED|0:9\n7_2|TIMEOUT|0:15\n"
           "@@files\n@@end\n")
    sh = FakeShell(out)
    be = SlurmBackend(T.get("local-slurm"), tmp_path, shell=sh)
    be._limits = {"accounting": True}
    st = be.poll(["7_0:a", "7_1:b", "7_2:c"])
    assert "sacct" in sh.scripts[0]
    assert st["7_0:a"].kind == "lost" and "COMPLETED" in st["7_0:a"].cause  # no done.json
    assert st["7_1:b"].kind == "signal" and "SIGKILL" in st["7_1:b"].cause
    assert st["7_2:c"].kind == "timeout"  # SLURM's verdict, not the SIGTERM it sent


@pytest.mark.parametrize("opt", ["--array=0-9", "-a", "--wrap=x", "--output=x.log", "-ofile"])
def test_options_pushbutton_owns_are_refused(tmp_path, opt):
    with pytest.raises(SpecError) as e:
        SlurmBackend(T.get("local-slurm"), tmp_path, shell=FakeShell(""), sbatch=[opt])
    assert "set by pushbutton" in str(e.value) and "fix:" in str(e.value)
    SlurmBackend(T.get("local-slurm"), tmp_path, shell=FakeShell(""),
                 sbatch=["--account=abc", "-p", "short", "--mem=1G", "--time=10"])
