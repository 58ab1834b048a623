"""What writing docs/TUTORIAL.md as a first-time user turned up (issue 12, item 14): each
message, table or figure that was confusing or wrong, end to end where it is about output."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from .conftest import pb, write

TASK = '''
import random


def draw(dist, n, rng):
    if dist == "normal":
        return [rng.gauss(0.0, 1.0) for _ in range(n)]
    raise ValueError(f"unknown distribution {dist!r}")


def estimate(n, dist, seed):
    x = draw(dist, n, random.Random(seed))
    return {"err": abs(sum(x) / n), "small": abs(sum(x) / n) < 0.1}
'''
SPEC = '''
name = "robust"
function = "est:estimate"
[space]
grid = { n = [10, 100, 1000], dist = ["normal", "laplace"] }
reps = 2
'''


@pytest.fixture
def failed_sweep(project):
    """6 done tasks (normal) and 6 failed ones (laplace is not implemented)."""
    write(project / "est.py", TASK)
    write(project / "experiment.toml", SPEC)
    r = pb("run", "experiment.toml", check=False)
    assert r.returncode == 1 and "6 done, 6 failed" in r.stdout, r.stdout + r.stderr
    return project


def _failed_id():
    recs = [json.loads(x) for x in pb("results", "--all", "--format", "json").stdout.split("\n")
            if x.strip()]
    return next(r["pb_task_id"] for r in recs if r["pb_status"] == "failed")


def test_a_table_title_is_its_own_line_not_wrapped_inside_a_narrow_table(failed_sweep):
    out = pb("sql", "SELECT pb_status, count(*) AS n FROM tasks GROUP BY ALL ORDER BY ALL",
             env={"COLUMNS": "80"}).stdout
    lines = out.splitlines()
    assert lines[0] == "experiment robust: 2 rows", out  # was "experiment robust: 2" / "rows"
    assert lines[1].startswith("┏")


def test_results_table_names_the_tasks_it_leaves_out_and_how_many_rows_it_shows(failed_sweep):
    out = pb("results", "--limit", "4", env={"COLUMNS": "80"}).stdout
    first = out.splitlines()[0]
    assert first == "robust: 6 rows (done tasks; not shown: 6 failed; --all shows them)", out
    assert "... 2 more rows (the first 4 of 6 shown): --limit 0 for all" in out
    everything = pb("results", "--all", "--limit", "0", env={"COLUMNS": "80"}).stdout
    assert everything.splitlines()[0] == "robust: 12 rows" and "--all shows" not in everything
    # the state of each task is what --all is for: next to the id, never cut for width
    header = everything.splitlines()[2]
    assert re.match(r"┃ pb_task_id ┃ pb_status ┃ +n ┃", header), everything
    assert "failed" in everything


def test_logs_name_the_machine_once_when_node_and_host_agree(failed_sweep):
    import socket
    host = socket.gethostname()
    out = pb("logs", _failed_id()[:10]).stdout
    head = out.splitlines()[0]
    assert head.endswith(f" on {host}"), head  # was "on node vm (host vm)"
    assert f"(host {host})" in out and f"node {host}" not in out


def test_status_of_a_finished_sweep_shows_no_rate_or_eta(failed_sweep):
    out = pb("status").stdout
    assert "done 6, failed 6" in out
    assert "rate" not in out and "ETA" not in out, out  # was "rate 483.9 tasks/s, ETA -"


def test_history_says_how_long_a_short_run_took_in_seconds(failed_sweep):
    rows = pb("history").stdout.splitlines()
    took = rows[1].split()[4]
    assert re.fullmatch(r"\d+\.\ds", took), rows  # was 0m00s
    from pushbutton.cli.tables import duration
    assert (duration(0.42), duration(42.7), duration(725), duration(3 * 3600 + 420)) == \
        ("0.4s", "42s", "12m05s", "3h07m")


def test_dry_run_says_which_failures_the_retries_are_for(failed_sweep):
    out = pb("run", "experiment.toml", "--dry-run").stdout
    assert "retries=1 (on signal, lost, preempted)" in out, out


def test_retry_says_what_it_retries_where_and_names_the_files_that_changed(failed_sweep):
    project = failed_sweep
    write(project / "est.py", TASK.replace('    raise ValueError', '''    if dist == "laplace":
        return [rng.expovariate(1.0) - rng.expovariate(1.0) for _ in range(n)]
    raise ValueError'''))
    write(project / "analyse.py", "print('an analysis script')\n")
    r = pb("retry", "robust")
    assert r.stdout.startswith("retrying 6 failed tasks of robust on local\n"), r.stdout
    assert "robust: 12 done, 0 failed" in r.stdout
    # the done results of the first run are from another code version: said, with the files
    # that changed since (an analysis script cannot change them; the task's module can)
    assert re.search(r"note: 6 results are from an earlier code version \(code:\w+, run 1\)",
                     r.stderr), r.stderr
    assert "changed since: analyse.py (new), est.py" in r.stderr
    assert "pb run experiment.toml --rerun" in r.stderr and "pb run ... --rerun" not in r.stderr
    assert pb("retry", "robust").stdout.strip() == "robust: no failed tasks to retry"


def test_stale_note_names_only_the_files_that_changed(project):
    write(project / "est.py", TASK.replace('"laplace"', '"normal"'))
    write(project / "experiment.toml", SPEC.replace('"normal", "laplace"', '"normal"'))
    pb("run", "experiment.toml")
    write(project / "notes.md", "what I learnt\n")
    write(project / "experiment.toml", SPEC.replace('"normal", "laplace"', '"normal"')
          .replace("reps = 2", "reps = 3"))
    r = pb("run", "experiment.toml")
    assert "changed since: notes.md (new)\n" in r.stderr, r.stderr  # the spec's space is no
    # change of code, and est.py is unchanged


def test_submit_message_says_who_brings_the_results_in():
    from pushbutton.execution.slurm.submit import _message
    bg = _message("robust", "local-slurm", 1, 720, ["3"], harvester=4242)
    assert "720 tasks as 1 bundle (SLURM job 3)" in bg  # was "1 bundles"
    assert "in the background (pid 4242)" in bg and "follow: pb watch robust" in bg
    ssh = _message("robust", "hpc", 2, 300, ["4", "5"], harvester=None)
    assert "as 2 bundles (SLURM jobs 4, 5)" in ssh
    assert "pb harvest robust --wait" in ssh and "auto_harvest is off for 'hpc'" in ssh
    assert "pb watch" not in ssh  # it would return at once: nothing harvests over SSH
    waiting = _message("robust", "hpc", 1, 1, ["6"], background=False)
    assert "1 task as 1 bundle" in waiting and "waiting for the results" in waiting
    assert "pb harvest" not in waiting


def test_status_says_who_brings_results_in_from_slurm(capsys):
    from pushbutton.cli.status import _print_status
    base = {"experiment": "robust", "total": 10, "counts": {"pending": 0, "running": 10,
            "done": 0, "failed": 0, "cancelled": 0}, "progress": 0.0, "active": False,
            "last_run_status": "running", "rate_per_s": None, "eta_s": None, "failures": {},
            "causes": {}, "out_on_slurm": 1, "harvester_down": False, "started": 0,
            "queued": 10}
    _print_status({**base, "harvesting": False})
    out = capsys.readouterr().out
    assert "1 bundle out on SLURM; `pb harvest robust` brings results in" in out, out
    assert "background harvester" not in out
    _print_status({**base, "harvesting": True, "out_on_slurm": 3})
    out = capsys.readouterr().out
    assert "3 bundles out on SLURM; results come in as they finish (follow: pb watch" in out


# -- figures and the report -----------------------------------------------------------------
def _frame():
    rows = []
    for n in (10, 100, 1000):
        for dist in ("normal", "laplace"):
            for rep in range(3):
                failed = dist == "laplace"  # every laplace task failed
                rows.append({"pb_task_id": f"{n}{dist}{rep}", "n": n, "dist": dist,
                             "rep": rep, "err": None if failed else 1 / n + rep / 1e4,
                             "pb_status": "failed" if failed else "done"})
    t = pd.DataFrame(rows)
    t.attrs["params"] = ["n", "dist", "rep"]
    t.attrs["metrics"] = ["err"]
    return t


def test_heatmap_over_decades_draws_cells_of_one_width_on_a_log_axis():
    from pushbutton.analysis import figures as F
    t = _frame()
    fig = F.heatmap(t, "n", "dist", "err")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"  # 10, 100, 1000: 10 was a sliver at the left
    edges = ax.collections[0].get_coordinates()[0, :, 0]
    assert np.allclose(np.diff(np.log10(edges)), 1.0), edges
    lin = F.heatmap(t, "n", "dist", "err", logx=False).axes[0]
    assert lin.get_xscale() == "linear"
    few = t[t.n != 1000]  # 10 and 100: one decade, kept linear
    assert F.heatmap(few, "n", "dist", "err").axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError, match="positive"):
        F.heatmap(t.assign(n=t.n - 10), "n", "dist", "err", logx=True)


def test_heatmap_log_keys_are_part_of_the_spec(tmp_path):
    import pushbutton as pbm
    from pushbutton.core.errors import SpecError
    spec = tmp_path / "e.toml"
    body = ('name = "f"\nfunction = "t:f"\n[space]\ngrid = {x = [1]}\n'
            '[[figures]]\nkind = "heatmap"\nx = "x"\ny = "x"\nvalue = "y"\nlogx = %s\n')
    spec.write_text(body % "true")
    pbm.load(spec, project=tmp_path)
    spec.write_text(body % '"yes"')
    with pytest.raises(SpecError) as e:
        pbm.load(spec, project=tmp_path)
    assert e.value.key == "figures[0].logx"


def test_a_line_plot_names_the_hue_values_it_could_not_draw():
    from pushbutton.analysis import figures as F
    t = _frame()
    notes = " ".join(F.notes(F.line(t, "n", "err", hue="dist")))
    assert "Not drawn: dist = laplace (no value: every task failed" in notes, notes
    one = t.copy()
    one.loc[(one.dist == "normal") & (one.n == 10), ["pb_status", "err"]] = ["failed", None]
    notes = " ".join(F.notes(F.line(one, "n", "err", hue="dist")))
    assert "1 point not drawn: no value there" in notes, notes
    done = t[t.pb_status == "done"].drop(columns="pb_status")  # finished rows only: no claim
    assert "not drawn" not in " ".join(F.notes(F.line(done, "n", "err"))).lower()


def test_report_table_says_which_points_have_no_finished_replicate(tmp_path):
    from pushbutton.report import html as report
    t = _frame()
    html = report.build({"title": "t", "results_df": t, "figures": []}, tmp_path).read_text()
    assert ("3 points of the space have no finished replicate and are not in the table "
            "(n=10, dist=laplace; n=100, dist=laplace; n=1000, dist=laplace)") in html
