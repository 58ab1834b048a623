"""pb_node, the node a task ran on: worker.py's rule (the SLURM node's name over the host name),
every view that has pb_host, `pb logs` / `pb show`, the report's tasks-per-node table, and
stores written before pb_node existed (parts without the column, outcome lines without the
field, SQLite tables without the node column) still read, with the node null.
The run on the real SLURM cluster is tests/slurm/test_slurm_run.py::test_node_is_the_slurm_node_name."""
import csv
import io
import json
import re
import socket
import sqlite3
from html import unescape

import pyarrow.parquet as pq

import pushbutton
from pushbutton.store import parts, partset

from .conftest import pb, write
from .test_store_errors import READ_ONLY, _in_namespace, needs_unshare

TASK = '''
def job(i, node="", **_):
    if i == 3:
        raise ValueError("three is bad")
    return {"v": i * 10}
'''

SPEC = '''
name = "where"
function = "where_task:job"
[space]
grid = { i = [0, 1, 2, 3, 4, 5], node = ["mine"] }  # a parameter named like pb_node
[run]
workers = 2
'''


def report_nodes(html: str) -> dict:
    """{node: (tasks, failures)} from the report's tasks-per-node table."""
    m = re.search(r'<table class="sortable nodes">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert m, "no tasks-per-node table in the report"
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S):
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        out[cells[0]] = (int(cells[1]), int(cells[4]))
    return out


def expected_nodes(rows, missing="(not recorded)") -> dict:
    """The same counts from the results table: finished tasks per pb_node."""
    out = {}
    for r in rows:
        if r["pb_status"] not in ("done", "failed"):
            continue
        node = r["pb_node"] if r["pb_node"] not in (None, "") else missing
        n, f = out.get(node, (0, 0))
        out[node] = (n + 1, f + (r["pb_status"] == "failed"))
    return out


def test_slurm_node_name_wins_over_the_host_name(project):
    """SLURMD_NODENAME (what slurmd puts in a job's environment) is the node, whatever the host
    is called; failures carry it too (from the task row), and pb logs / pb show name it."""
    write(project / "where_task.py", TASK)
    write(project / "experiment.toml", SPEC)
    env = {"SLURMD_NODENAME": "pbn-7"}
    r = pb("run", "experiment.toml", env=env, check=False)
    assert r.returncode != 0 and "1 failed" in r.stdout + r.stderr, r.stdout + r.stderr
    rows = list(csv.DictReader(io.StringIO(pb("results", "--format", "csv").stdout)))
    assert len(rows) == 6
    assert {r["pb_node"] for r in rows} == {"pbn-7"} and {r["node"] for r in rows} == {"mine"}
    assert {r["pb_host"] for r in rows} == {socket.gethostname()}
    assert [r["pb_status"] for r in rows].count("failed") == 1
    q = pb("sql", "SELECT pb_status, pb_node, count(*) AS n FROM results GROUP BY ALL "
           "ORDER BY pb_status", "--format", "csv").stdout.splitlines()
    assert q == ["pb_status,pb_node,n", "done,pbn-7,5", "failed,pbn-7,1"]
    t = pb("sql", "SELECT DISTINCT pb_node FROM tasks WHERE pb_status = 'failed'",
           "--format", "csv").stdout.splitlines()
    assert t == ["pb_node", "pbn-7"]
    pb("results", "--format", "parquet", "-o", "out.parquet")
    exported = pq.read_table(project / "out.parquet").to_pydict()
    assert set(exported["pb_node"]) == {"pbn-7"} and set(exported["node"]) == {"mine"}
    # hidden in the table, like pb_host
    table = pb("results", "--all").stdout
    assert "pbn-7" not in table and "three is bad" not in table and "pb_status" in table
    failed = next(r["pb_task_id"] for r in rows if r["pb_status"] == "failed")
    done = next(r["pb_task_id"] for r in rows if r["pb_status"] == "done")
    lg = pb("logs", failed).stdout
    assert f"(host {socket.gethostname()}, node pbn-7)" in lg, lg
    for tid in (failed, done):
        shown = json.loads(pb("show", tid, "--json").stdout)
        assert shown["node"] == "pbn-7" and shown["host"] == socket.gethostname(), shown
    # with the bundle folders cleaned, pb show reads where a done task ran from its stored row
    pb("clean", "where", "--bundles")
    assert not list((project / ".pushbutton" / "bundles").glob("*/outcomes.jsonl"))
    shown = json.loads(pb("show", done, "--json").stdout)
    assert shown["node"] == "pbn-7" and shown["host"] == socket.gethostname(), shown
    # the report counts what the results table counts
    pb("report")
    html = (project / ".pushbutton" / "reports" / "where" / "report.html").read_text()
    assert report_nodes(html) == expected_nodes(rows) == {"pbn-7": (6, 1)}


def _exp(n):
    return pushbutton.Experiment("old", function="where_task:job",
                                 space=pushbutton.grid(i=list(range(n))), workers=1)


def _old_store(project):
    """A store as an earlier version wrote it: one merged part without pb_node, outcome lines
    without "node" (blanked in place, so byte offsets stay), SQLite tables without the node
    column. -> (results folder, host name)"""
    write(project / "where_task.py", TASK.replace('raise ValueError("three is bad")', "pass"))
    exp = _exp(6)
    exp.run()
    sd = project / ".pushbutton"
    folder = sd / "results" / "old"
    parts.compact(folder, min_parts=2)  # one merged file, as a long run leaves
    (name,) = partset.current(folder)
    t = pq.read_table(folder / name)
    assert "pb_node" in t.column_names
    pq.write_table(t.drop_columns(["pb_node"]), folder / name)
    host = socket.gethostname()
    field = f', "node": "{host}"'.encode()
    for p in (sd / "bundles").glob("*/outcomes.jsonl"):
        data = p.read_bytes()
        assert field in data
        p.write_bytes(data.replace(field, b" " * len(field)))
    exp.store.close()
    db = sqlite3.connect(sd / "state.sqlite")
    db.execute("ALTER TABLE tasks DROP COLUMN node")
    db.execute("ALTER TABLE attempts DROP COLUMN node")
    db.commit()
    db.close()
    return folder, host


@needs_unshare
def test_read_only_old_store_reads_without_the_node_column(project, monkeypatch):
    """Read-only, an old store's tables cannot be given the node column: readers do without."""
    monkeypatch.setenv("PB_KEEP_BUNDLES", "1")  # old outcome lines are edited in place
    _old_store(project)
    r, _ = _in_namespace(READ_ONLY, project, "results", "old", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 6 and all(x["pb_node"] is None and x["pb_host"] for x in rows)
    r, _ = _in_namespace(READ_ONLY, project, "sql", "SELECT count(*) AS n FROM tasks WHERE "
                         "pb_node IS NULL", "--format", "csv")
    assert r.returncode == 0 and r.stdout.split() == ["n", "6"], r.stderr
    r, _ = _in_namespace(READ_ONLY, project, "show", rows[0]["pb_task_id"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["node"] is None  # its outcome line has none
    db = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    assert "node" not in {c[1] for c in db.execute("PRAGMA table_info(tasks)")}
    db.close()


def test_stores_written_before_pb_node_still_read(project, monkeypatch):
    monkeypatch.setenv("PB_KEEP_BUNDLES", "1")  # old outcome lines are edited in place
    folder, host = _old_store(project)
    exp = _exp(6)
    df = exp.results()
    assert len(df) == 6 and df["pb_node"].isna().all() and (df["pb_host"] == host).all()
    assert list(df.columns[-4:]) == ["pb_host", "pb_node", "pb_run_id", "pb_finished_at"]
    assert len(exp.results(run=1)) == 6 and exp.results(run=1)["pb_node"].isna().all()
    assert exp.sql("SELECT count(*) AS n FROM results WHERE pb_node IS NULL")["n"][0] == 6
    cols = {r[1] for r in exp.store.db.execute("PRAGMA table_info(tasks)")}
    assert "node" in cols  # opened for writing, the tables got their column back

    # the space grows: parts with pb_node next to the old file without it
    exp = _exp(10)
    exp.run()

    def check(df):
        assert len(df) == 10 and (df["pb_status"] == "done").all()
        new = df["i"] >= 6
        assert (df.loc[new, "pb_node"] == host).all() and df.loc[~new, "pb_node"].isna().all()
        assert sorted(df["v"]) == list(range(0, 100, 10))
    assert len(partset.current(folder)) > 1
    check(exp.results())
    q = pb("sql", "SELECT pb_node IS NULL AS old, count(*) AS n FROM results GROUP BY ALL "
           "ORDER BY old", "--format", "csv").stdout.splitlines()
    assert q == ["old,n", "False,4", "True,6"]
    # merged into one file: the union keeps the column, null for the old rows
    parts.compact(folder, min_parts=2)
    (name,) = partset.current(folder)
    assert "pb_node" in pq.read_schema(folder / name).names
    check(exp.results())
    pb("report", "old")
    html = (project / ".pushbutton" / "reports" / "old" / "report.html").read_text()
    df = exp.results()
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    assert report_nodes(html) == expected_nodes(rows) == {host: (4, 0), "(not recorded)": (6, 0)}

    # old outcome lines ingested again (pb repair rebuilds lost rows from them): node null
    partset.write_manifest(folder, [])
    (folder / name).unlink()
    exp.store.close()
    r = pb("repair")
    assert "10" in r.stdout, r.stdout
    check(_exp(10).results())
