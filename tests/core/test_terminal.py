"""What the terminal says (issue 12, items 4 to 9), end to end through the CLI."""
import json
import re
import time

import pytest

from .conftest import HERE, pb, write

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _failed_ids(name=None):
    recs = [json.loads(x) for x in pb("results", *([name] if name else []), "--all",
                                      "--format", "json").stdout.splitlines()]
    return {r["pb_task_id"]: r for r in recs if r["pb_status"] == "failed"}


# -- item 4: a run ends with the top causes of its failures -----------------------------------
CAUSES = """
name = "causes"
function = "terminal_tasks:check"
[space]
grid = { a = { range = [1, 21] }, b = [0] }
"""


def test_run_and_status_name_the_top_causes_with_one_task_each(project):
    write(project / "experiment.toml", CAUSES)
    r = pb("run", "experiment.toml", check=False)
    assert r.returncode == 1
    out = r.stdout
    # 18 ValueErrors with 18 different messages from one line are one cause, not 18
    assert "failures: 20 tasks, 2 causes" in out, out
    assert re.search(r"^  18  ValueError at terminal_tasks\.py:\d+ in check$", out, re.M), out
    assert re.search(r"^   2  ZeroDivisionError at terminal_tasks\.py:\d+ in _divide$", out,
                     re.M), out
    failed = _failed_ids()
    ids = re.findall(r"pb logs ([0-9a-f]{12})\)", out)
    assert len(ids) == 2  # one task per cause, a real failed one, with its message
    for tid in ids:
        full = [t for t in failed if t.startswith(tid)]
        assert len(full) == 1
        assert failed[full[0]]["pb_error"] in out
        assert failed[full[0]]["pb_error"] in pb("logs", tid).stdout
    # pb status says the same
    st = pb("status").stdout
    assert "failures: 20 tasks, 2 causes" in st and "18  ValueError at terminal_tasks.py:" in st
    assert all(f"pb logs {tid}" in st for tid in ids)
    js = json.loads(pb("status", "--json").stdout)
    assert js["failures"] == {"exception": 20} and js["causes"]["n_causes"] == 2
    # --causes 1: the rest is counted, not dropped
    one = pb("status", "--causes", "1").stdout
    assert "... 1 more cause (2 tasks)" in one


def test_api_run_ends_with_the_summary(project, capsys):
    from pushbutton import Experiment, grid
    exp = Experiment("api", function="terminal_tasks:check", space=grid(a=[1, 2, 19], b=[0]))
    s = exp.run()
    err = capsys.readouterr().err
    assert "api: 0 done, 3 failed" in err and "failures: 3 tasks, 2 causes" in err
    assert re.search(r"2  ValueError at terminal_tasks\.py:\d+ in check", err)
    assert s["failures"]["n_causes"] == 2
    exp.run(quiet=True)
    assert capsys.readouterr().err == ""


def test_report_failures_group_by_exception_type_not_message(project):
    from pushbutton import Experiment, grid
    from pushbutton.analysis.stats import failures
    exp = Experiment("rep", function="terminal_tasks:check", space=grid(a=range(1, 7), b=[0]))
    exp.run(quiet=True)
    f = failures(exp.results())
    assert len(f) == 1 and f.loc[0, "count"] == 6 and f.loc[0, "cause"].startswith("ValueError")


# -- item 5: tracebacks show the user's frames, each once --------------------------------------
def test_logs_show_the_users_frames_once(project):
    write(project / "experiment.toml", CAUSES.replace("range = [1, 21]", "range = [19, 20]"))
    pb("run", "experiment.toml", check=False)
    tid = next(iter(_failed_ids()))
    out = pb("logs", tid[:12]).stdout
    assert out.count("Traceback (most recent call last)") == 1, out
    assert "worker.py" not in out and "pushbutton" not in out.split("-- stdout --")[1], out
    assert 'terminal_tasks.py", line' in out and "in _divide" in out and "in check" in out
    assert "ZeroDivisionError: division by zero" in out


# -- item 6: the default retry rule ----------------------------------------------------------
def test_default_retries_infrastructure_failures_not_python_exceptions(project):
    write(project / "e.toml", """
name = "kill"
function = "terminal_tasks:kill_once"
[space]
grid = { i = [1, 2] }
[run]
workers = 1
""")
    r = pb("run", "e.toml")  # no [resources] at all: a killed worker is retried
    assert "2 done, 0 failed" in r.stdout
    recs = [json.loads(x) for x in pb("results", "--format", "json").stdout.splitlines()]
    assert [x["pb_attempts"] for x in recs] == [2, 2]
    log = pb("logs", recs[0]["pb_task_id"]).stdout
    assert "attempt 1" in log and ": signal:" in log
    # a Python exception fails the same way again: not retried, even with retries = 3
    write(project / "f.toml", CAUSES.replace('name = "causes"', 'name = "exc"')
          + "[resources]\nretries = 3\n")
    r = pb("run", "f.toml", check=False)
    assert r.returncode == 1
    assert {x["pb_attempts"] for x in _failed_ids("exc").values()} == {1}
    assert "not retried" in r.stdout and "retry_on" in r.stdout
    # unless retry_on names it
    write(project / "g.toml", CAUSES.replace('name = "causes"', 'name = "exc2"')
          .replace("range = [1, 21]", "range = [1, 3]")
          + '[resources]\nretries = 2\nretry_on = ["exception"]\n')
    pb("run", "g.toml", check=False)
    assert {x["pb_attempts"] for x in _failed_ids("exc2").values()} == {3}


# -- item 7: progress -------------------------------------------------------------------------
def test_progress_rate_counts_this_runs_tasks_only(project):
    spec = """
name = "rate"
function = "terminal_tasks:nap"
[space]
union = [{ grid = { i = { range = [0, 300] }, t = [0.0] } }MORE]
[run]
workers = 1
"""
    pb("run", write(project / "e.toml", spec.replace("MORE", "")))
    # 300 tasks were done before; this run adds 4 of 0.4 s each on one worker: ~2.5 tasks/s
    write(project / "e.toml", spec.replace("MORE", ", { grid = { i = { range = [300, 304] }, "
                                                   "t = [0.4] } }"))
    r = pb("run", "e.toml", env={"PB_PROGRESS": "1", "COLUMNS": "120"})
    assert "304 done" in r.stdout
    bar = r.stdout + r.stderr  # (rich's bar writes to stdout)
    rates = [float(x.replace(",", "")) for x in re.findall(r"([\d,.]+) tasks/s", bar)]
    assert rates, bar
    assert rates[-1] < 10, bar  # all 304 over this run's ~1.7 s would read ~180 tasks/s


def test_status_counts_as_running_only_started_tasks(project):
    write(project / "e.toml", """
name = "slow"
function = "terminal_tasks:nap"
[space]
grid = { i = { range = [0, 40] }, t = [0.25] }
[run]
workers = 1
bundle_size = 20
""")
    pb("run", "e.toml", "--detach")
    try:
        deadline, st = time.time() + 30, {}
        while time.time() < deadline:
            st = json.loads(pb("status", "--json").stdout)
            if st.get("started") and st["counts"]["done"] >= 1:
                break
            time.sleep(0.2)
        # one worker: one task is running, the rest of its bundle of 20 waits
        assert st["started"] == 1 and st["queued"] == st["counts"]["running"] - 1 >= 1, st
        text = pb("status").stdout
        assert re.search(r"running 1, queued \d+ \(handed out, not started\)", text), text
    finally:
        pb("cancel")


def test_registering_a_big_space_shows_progress(project):
    write(project / "big.toml", """
name = "big"
function = "terminal_tasks:nap"
[space]
grid = { i = { range = [0, 60000] } }
""")
    r = pb("run", "big.toml", "--detach")
    try:  # the first chunk now; the detached run registers the rest while it runs (issue 14)
        assert "registered 2,000/60,000 tasks; the run registers the rest" in r.stderr
        assert "60,000 tasks" in pb("status").stdout  # the space's size, not the count so far
    finally:
        pb("cancel")


# -- item 8: tables at 80 columns, every column of pb sql, --limit, times ----------------------
WIDE = """
name = "wide"
function = "terminal_tasks:wide"
[space]
grid = { a_long_parameter_name = [1, 2, 3], b = [7, 8] }
"""


@pytest.fixture(scope="module")
def _wide_store(tmp_path_factory):
    """A project whose store holds experiment wide, run once by the CLI; the tests that use it
    only read it."""
    import shutil
    root = tmp_path_factory.mktemp("wide")
    for f in (HERE / "tasks").iterdir():
        if f.suffix == ".py":
            shutil.copy(f, root / f.name)
    write(root / "e.toml", WIDE)
    pb("run", "e.toml", cwd=root)
    return root


@pytest.fixture
def wide_project(_wide_store, monkeypatch):
    monkeypatch.chdir(_wide_store)
    return _wide_store


def test_results_table_reads_at_80_columns(wide_project):
    env = {"COLUMNS": "80"}
    out = pb("results", env=env).stdout
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, out
    for value in ("1.23457e+06", "2.46914e+06", "3.7037e+06", "411523", "1.23457e+06"):
        assert value in out, (value, out)  # whole, never wrapped mid-value
    for hidden in ("pb_host", "pb_run_id", "pb_finished_at", "pb_attempts", "pb_duration_s"):
        assert hidden not in out.split("not shown")[0], out  # bookkeeping: hidden by default
    assert "more columns not shown at this width" in out and "label" in out  # named in a note
    full = pb("results", "--all-columns", env={"COLUMNS": "400"}).stdout
    assert "pb_host" in full and "pb_finished_at" in full and ISO.search(full), full
    assert not re.search(r"\b1\.8\d{8}e\+09\b", full)  # no epoch floats


def test_sql_shows_every_selected_column_and_its_experiment(wide_project):
    out = pb("sql", "SELECT pb_task_id, pb_host, pb_finished_at, pb_run_id FROM results",
             env={"COLUMNS": "80"}).stdout
    header = "\n".join(out.splitlines()[:4])
    for col in ("pb_host", "pb_finished_at", "pb_run_id"):
        assert col in header, out
    assert "experiment wide: 6 rows" in out and ISO.search(out)
    csv = pb("sql", "SELECT pb_finished_at FROM results", "--format", "csv").stdout.splitlines()
    assert ISO.fullmatch(csv[1]), csv


def test_limit_applies_to_every_format_and_times_are_iso(wide_project, tmp_path):
    assert len(pb("results", "--format", "csv", "--limit", "2").stdout.splitlines()) == 3
    js = pb("results", "--format", "json", "--limit", "4").stdout.splitlines()
    assert len(js) == 4 and ISO.fullmatch(json.loads(js[0])["pb_finished_at"])
    assert len(pb("results", "--format", "csv").stdout.splitlines()) == 7  # default: all
    pb("results", "--format", "parquet", "-o", tmp_path / "r.parquet", "--limit", "5")
    import pandas as pd
    df = pd.read_parquet(tmp_path / "r.parquet")
    assert len(df) == 5 and str(df["pb_finished_at"].dtype).startswith("datetime64")
    assert len(pb("sql", "SELECT * FROM results", "--format", "csv", "--limit", "3")
               .stdout.splitlines()) == 4
    table = pb("results", "--limit", "1", env={"COLUMNS": "80"}).stdout
    assert "more rows" in table


# -- item 9: history, show, --help, a command as a string ------------------------------------
def test_history_has_a_header_and_numbers_runs_per_experiment(project):
    write(project / "a.toml", WIDE.replace('"wide"', '"first"'))
    write(project / "b.toml", WIDE.replace('"wide"', '"second"'))
    pb("run", "a.toml")
    pb("run", "a.toml", "--rerun")
    pb("run", "b.toml", "-m", "the other one")
    out = pb("history").stdout.splitlines()
    assert out[0].split() == ["experiment", "run", "started", "(UTC)", "status", "took",
                              "target", "code", "version", "message"], out
    rows = [line.split() for line in out[1:]]
    assert [(r[0], r[1]) for r in rows] == [("first", "1"), ("first", "2"), ("second", "1")]
    assert all(ISO.fullmatch(r[2]) for r in rows) and out[3].endswith("the other one")
    # the same numbers in the results and for --run
    recs = [json.loads(x) for x in pb("results", "second", "--format", "json").stdout.splitlines()]
    assert {x["pb_run_id"] for x in recs} == {1}
    assert len(pb("results", "second", "--run", "1", "--format", "csv").stdout.splitlines()) == 7
    assert {json.loads(x)["pb_run_id"] for x in pb("results", "first", "--format", "json")
            .stdout.splitlines()} == {2}
    bad = pb("results", "second", "--run", "3", check=False)
    assert bad.returncode == 2 and "its runs are: 1" in bad.stderr


def test_show_task_has_metrics_duration_host_and_attempts(project):
    import socket
    write(project / "e.toml", WIDE)
    pb("run", "e.toml")
    rec = json.loads(pb("results", "--format", "json").stdout.splitlines()[0])
    out = pb("show", rec["pb_task_id"][:12]).stdout
    assert f"task {rec['pb_task_id']} of wide: done" in out
    assert "a_long_parameter_name=1" in out and "first_metric=1.23457e+06" in out
    assert "label=v7" in out
    assert "1 attempt" in out and re.search(r"took [\d.]+ ms", out)
    assert f"on {socket.gethostname()}" in out and ISO.search(out) and "run 1" in out
    js = json.loads(pb("show", rec["pb_task_id"], "--json").stdout)
    assert js["metrics"]["first_metric"] == pytest.approx(1234567.891)
    assert js["host"] == socket.gethostname() and js["attempts"] == 1
    # a failed task: its error and every failed attempt
    write(project / "f.toml", CAUSES.replace("range = [1, 21]", "range = [1, 2]"))
    pb("run", "f.toml", check=False)
    tid = next(iter(_failed_ids("causes")))
    out = pb("show", tid).stdout
    assert "failed" in out and "error       exception: ValueError: bad a=1" in out
    assert "attempt 1 failed: exception: ValueError: bad a=1" in out


def _commands():
    import click
    from pushbutton.cli.main import cli

    def walk(group, path):
        for name, cmd in sorted(group.commands.items()):
            if cmd.hidden:  # an old name kept as an alias is not listed
                continue
            yield f"{path} {name}".strip(), cmd
            if isinstance(cmd, click.Group):
                yield from walk(cmd, f"{path} {name}".strip())
    return list(walk(cli, ""))


def _option_entries(help_text):
    """The Options section of a help text: {first line: whole entry as one line}."""
    body = help_text.split("Options:\n", 1)[1].split("\n\n", 1)[0]
    entries, cur = {}, None
    for line in body.splitlines():
        if line.startswith("  -"):
            cur = line
            entries[cur] = line
        elif cur:
            entries[cur] += " " + line.strip()
    return entries


def test_every_help_has_an_example_shows_defaults_and_cuts_nothing():
    import click
    from click.testing import CliRunner
    from pushbutton.cli.main import cli
    top = pb("--help").stdout
    assert "..." not in top.split("Commands:")[1] and max(map(len, top.splitlines())) <= 80
    for path, cmd in _commands():
        # the whole first sentence of each command is in its group's list
        listed = " ".join(CliRunner().invoke(cli, path.split()[:-1] + ["--help"]).output.split())
        assert " ".join(cmd.help.split("\n\n")[0].split()).split(". ")[0] in listed, path
        out = CliRunner().invoke(cli, path.split() + ["--help"]).output
        assert "Example:\n" in out and f"\n    pb {path}" in out, (path, out)
        assert max(map(len, out.splitlines())) <= 80, (path, out)
        entries = _option_entries(out)
        for opt in cmd.params:
            if not isinstance(opt, click.Option) or opt.hidden:
                continue
            assert opt.help, (path, opt.opts)  # every option says what it does
            entry = next(v for k, v in entries.items() if opt.opts[-1] in k.split())
            has_default = opt.default not in (None, False) and "UNSET" not in repr(opt.default)
            if has_default and not opt.required and not (opt.is_flag and not opt.secondary_opts):
                assert "[default:" in entry, (path, entry)
    run_help = pb("run", "--help").stdout
    assert "Example:\n    pb run experiment.toml" in run_help


def test_a_command_given_as_a_string_is_explained(project):
    write(project / "e.toml", 'name = "s"\ncommand = "python script.py file {v} | tee out"\n'
                              '[space]\ngrid = { v = ["x"] }\n')
    r = pb("run", "e.toml", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "key 'command'" in r.stderr and "argv list" in r.stderr
    assert "nothing goes through a shell" in r.stderr
    assert 'command = ["python", "script.py", "file", "{v}", "|", "tee", "out"]' in r.stderr
