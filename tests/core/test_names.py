"""The user's parameter and metric names round-trip unchanged in every view; pushbutton's own
columns carry the pb_ prefix (docs/ARCHITECTURE.md, "Names are the user's")."""
import csv
import io
import json
import os
import socket

import pytest

from pushbutton import Experiment, grid
from pushbutton.core.errors import SpecError

from .conftest import pb, write

TASK = '''
import pushbutton


def clash(n, host, status, task_id, seed, **_):
    pushbutton.log(step=0, error=n * 1.0)
    return {"error": n * 0.5, "duration_s": 100.0 + n, "n": n}  # "n" echoes the parameter


def differs(n, **_):
    return {"n": n + 1}


def reserved(n, **_):
    return {"pb_status": "mine"}
'''

SPEC = '''
name = "names"
function = "names_task:clash"
[space]
grid = { n = [1, 2, 3], host = ["alpha", "beta"], status = ["on"], task_id = [7] }
reps = 2
'''

USER = ["n", "host", "status", "task_id", "rep", "seed", "error", "duration_s"]


def _check_rows(rows):
    assert len(rows) == 12
    for r in rows:
        n = int(r["n"])
        assert r["host"] in ("alpha", "beta") and r["host"] != socket.gethostname()
        assert r["status"] == "on" and int(r["task_id"]) == 7
        assert float(r["error"]) == n * 0.5 and float(r["duration_s"]) == 100.0 + n
        assert r["pb_status"] == "done" and len(r["pb_task_id"]) == 20
        assert float(r["pb_duration_s"]) < 60 and r["pb_host"] == socket.gethostname()
        # a local run's node is the host (the SLURM node's name when this runs in a SLURM job)
        assert r["pb_node"] == (os.environ.get("SLURMD_NODENAME") or socket.gethostname())


def test_user_names_round_trip_in_every_view(project):
    write(project / "names_task.py", TASK)
    write(project / "experiment.toml", SPEC)
    pb("run", "experiment.toml", "-j", "2")
    # CSV and JSON
    rows = list(csv.DictReader(io.StringIO(pb("results", "--format", "csv").stdout)))
    header = list(rows[0])
    assert header[0] == "pb_task_id" and header[1:len(USER) + 1] == USER, header
    assert not any(c.startswith("result_") or c.endswith("_1") for c in header)
    assert header[len(USER) + 1:] == ["pb_status", "pb_error_kind", "pb_error", "pb_attempts",
                                  "pb_duration_s", "pb_host", "pb_node", "pb_run_id",
                                  "pb_finished_at"]
    _check_rows(rows)
    js = [json.loads(x) for x in pb("results", "--format", "json").stdout.splitlines()]
    _check_rows(js)
    # --where over a user column named like a bookkeeping one
    sub = pb("results", "--format", "json", "--where", "status = 'on' AND host = 'beta' AND "
             "duration_s > 101").stdout.splitlines()
    assert len(sub) == 4
    # pb sql, the README's query
    q = pb("sql", "SELECT n, avg(error) AS e, avg(duration_s) AS d FROM results GROUP BY n "
           "ORDER BY n", "--format", "csv").stdout.splitlines()
    assert q == ["n,e,d", "1,0.5,101.0", "2,1.0,102.0", "3,1.5,103.0"]
    q = pb("sql", "SELECT DISTINCT host, status FROM results ORDER BY host",
           "--format", "csv").stdout.splitlines()
    assert q == ["host,status", "alpha,on", "beta,on"]
    s = pb("sql", "SELECT * FROM series LIMIT 1", "--format", "json").stdout
    assert set(json.loads(s)) == {"pb_task_id", "pb_step", "pb_time", "error"}
    # the report: the user's columns, aggregated; no bookkeeping value in their place
    pb("report")
    html = (project / ".pushbutton" / "reports" / "names" / "report.html").read_text()
    agg = (project / ".pushbutton" / "reports" / "names" / "aggregated.csv").read_text().splitlines()
    assert agg[0].startswith("n,host,status,task_id,pb_n,error_count,error_mean")
    assert "1,alpha,on,7,2,2,0.5" in agg[1]
    import re
    heads = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', html)
    assert heads[:5] == ["n", "host", "status", "task_id", "replicates"], heads
    assert "error: mean ± s.e.m." in heads and "duration_s: mean ± s.e.m." in heads
    assert "alpha" in html and "could not be drawn" not in html


def test_python_api_views(project):
    write(project / "names_task.py", TASK)
    exp = Experiment("names-py", function="names_task:clash",
                     space=grid(n=[1, 2, 3], host=["alpha", "beta"], status=["on"],
                                task_id=[7]).reps(2), workers=2)
    exp.run()
    df = exp.results()
    assert list(df.columns[1:len(USER) + 1]) == USER and df.columns[0] == "pb_task_id"
    _check_rows(df.to_dict("records"))
    assert df.attrs["metrics"] == ["error", "duration_s"]
    assert len(exp.results(where="host = 'alpha' AND n = 2")) == 2
    assert exp.sql("SELECT n, avg(error) AS e FROM results GROUP BY n ORDER BY n")["e"] \
        .tolist() == [0.5, 1.0, 1.5]
    agg = exp.aggregate()
    assert list(agg.columns[:5]) == ["n", "host", "status", "task_id", "pb_n"]
    assert agg["pb_n"].tolist() == [2] * 6 and agg["error_mean"].tolist() == [
        0.5, 0.5, 1.0, 1.0, 1.5, 1.5]
    sr = exp.success_rate(success="error < 1")
    assert list(sr.columns[-5:]) == ["pb_n", "pb_successes", "pb_rate", "pb_ci_low",
                                     "pb_ci_high"]
    assert sr["pb_rate"].tolist() == [1, 1, 0, 0, 0, 0]
    fig = exp.plot("line", x="n", y="duration_s", hue="host")
    assert fig.axes[0].get_ylabel() == "duration s"
    ser = exp.series()
    assert {"pb_task_id", "pb_step", "pb_time", "error", "n", "host"} <= set(ser.columns)
    assert sorted(set(ser["error"])) == [1.0, 2.0, 3.0]  # the per-step values, not the result's
    assert set(ser["host"]) == {"alpha", "beta"}


def test_metric_clashes_fail_the_task_clearly(project):
    write(project / "names_task.py", TASK)
    exp = Experiment("clash", function="names_task:differs", space=grid(n=[5]))
    exp.run()
    row = exp.results().iloc[0]
    assert row["pb_status"] == "failed" and row["pb_error_kind"] == "metric"
    assert row["pb_error"] == "metric 'n' = 6 differs from parameter n = 5; rename the metric"
    exp = Experiment("resv", function="names_task:reserved", space=grid(n=[5]))
    exp.run()
    row = exp.results().iloc[0]
    assert row["pb_error_kind"] == "metric" and "'pb_status'" in row["pb_error"] \
        and "reserved" in row["pb_error"]


def test_pb_parameter_names_are_refused_in_the_spec(project):
    with pytest.raises(SpecError) as e:
        Experiment("bad", function="names_task:clash", space=grid(pb_x=[1]))
    assert e.value.key == "space" and "pb_x" in str(e.value) and "rename" in str(e.value)
    write(project / "experiment.toml", SPEC.replace("task_id = [7]", "pb_run = [1]"))
    r = pb("run", "experiment.toml", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "pb_run" in r.stderr and "experiment.toml" in r.stderr and "space" in r.stderr


def test_readme_example_and_ci_coverage_names(project):
    """The README's Python example (a parameter n, a metric error) end to end."""
    write(project / "sim.py", '''
import pushbutton as pb


def simulate(n, noise, seed):
    return {"error": noise / n, "converged": n > 100}


if __name__ == "__main__":
    exp = pb.Experiment("noise-sweep", function=simulate,
                        space=pb.grid(n=[100, 1000], noise=[0.1, 0.5]).reps(2), timeout="5m")
    exp.run()
    df = exp.results()
    q = exp.sql("SELECT n, avg(error) AS e FROM results GROUP BY n ORDER BY n")
    print(q.to_csv(index=False))
    print(exp.aggregate()[["n", "noise", "pb_n", "error_mean"]].to_csv(index=False))
    exp.plot("line", x="n", y="error", hue="noise")
    print(exp.report())
''')
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "sim.py"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "n,e\n100,0.003\n1000,0.0003" in r.stdout
    assert "100,0.1,2,0.001" in r.stdout and "report.html" in r.stdout


def test_report_headers_never_read_as_a_user_column(tmp_path):
    """A parameter named like the report's friendly count label gets the plain pb_n header;
    an aggregate statistic named like a user column is an error, not an overwrite."""
    import re

    import pandas as pd

    from pushbutton.analysis import stats as A
    from pushbutton.report import html as report
    df = pd.DataFrame({"pb_task_id": list("abcd"), "replicates": [1, 1, 2, 2],
                       "error": [0.1, 0.2, 0.3, 0.4], "pb_status": ["done"] * 4})
    df.attrs.update(params=["replicates"], metrics=["error"])
    html = report.build({"title": "t", "results_df": df, "figures": []}, tmp_path).read_text()
    heads = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', html)
    assert heads[:2] == ["replicates", "pb_n"], heads
    clash = df.assign(error_mean=[9.0] * 4)
    clash.attrs.update(params=["replicates"], metrics=["error", "error_mean"])
    with pytest.raises(ValueError, match="'error_mean'.*would have the name of your column"):
        A.aggregate(clash)
    assert A.aggregate(clash, metrics=["error_mean"])["error_mean_mean"].tolist() == [9.0, 9.0]
