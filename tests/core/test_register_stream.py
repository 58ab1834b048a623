"""The first task starts at once: registration streams in chunks while tasks run (issue 14,
goals 1 and 9). Facts come from the store (events, task rows, raw Parquet parts), not from
wall-clock thresholds. PB_TEST_* variables are the registration's fault-injection points."""
import json
import shutil
import sqlite3

import pyarrow.parquet as pq

from pushbutton.core import ids

from .conftest import pb, write

SPEC = """
name = "stream"
function = "start_tasks:stamp"
[space]
{space}
[run]
workers = 2
"""
GRID = "grid = {{ i = {{ range = [0, {n}] }} }}"
WHERE = GRID + '\nwhere = "i % 50 == 0"'
UNION = ("[[space.union]]\ngrid = {{ i = {{ range = [0, {h}] }} }}\n"
         "[[space.union]]\ngrid = {{ i = {{ range = [{h}, {n}] }}, j = [1] }}")
SMALL = {"PB_REGISTER_FIRST": "500", "PB_REGISTER_CHUNK": "500"}


def _db(project):
    return sqlite3.connect(project / ".pushbutton" / "state.sqlite")


def _parquet_rows(project, name="stream"):
    """Every row of every Parquet file in the experiment's results folder (not a view)."""
    rows = []
    for f in sorted((project / ".pushbutton" / "results" / name).glob("*.parquet")):
        t = pq.read_table(f)
        rows += list(zip(t.column("pb_task_id").to_pylist(), t.column("t").to_pylist()))
    return rows


def _expected_ids(points):
    return {ids.task_id(p) for p in points}


def _check_complete(project, points, keyed=True):
    want = _expected_ids(points)
    db = _db(project)
    try:
        got = db.execute("SELECT id, idx, state FROM tasks").fetchall()
        n, key, reg = db.execute("SELECT n_tasks, space_key, reg_key FROM experiments"
                                 ).fetchone()
    finally:
        db.close()
    assert len(got) == len(want) and {r[0] for r in got} == want  # each id once, all there
    assert sorted(r[1] for r in got) == sorted(set(r[1] for r in got))  # idx unique
    assert {r[2] for r in got} == {"done"}
    assert n == len(want) and bool(key) == keyed and reg is None  # (no written form: no key)
    rows = _parquet_rows(project)
    assert len(rows) == len(want) and {r[0] for r in rows} == want  # raw parts: once each


def test_first_task_starts_before_the_registration_ends(project):
    write(project / "e.toml", SPEC.format(space=GRID.format(n=6000)))
    pb("run", "e.toml", "--quiet", env=dict(SMALL, PB_TEST_REGISTER_PAUSE="0.3"))
    db = _db(project)
    try:
        (t_reg, data), = db.execute("SELECT t, data FROM events WHERE kind='registered'")
        (t_run,), = db.execute("SELECT t FROM events WHERE kind='run-start'")
    finally:
        db.close()
    first = min(t for _, t in _parquet_rows(project))
    assert json.loads(data)["points"] == 6000
    assert t_run < first < t_reg  # the run started and a task ran before the last chunk
    _check_complete(project, [{"i": i} for i in range(6000)])


def test_kill_during_registration_then_run_again(project):
    """kill -9 mid-registration (the process kills itself after 2 streamed chunks): `pb
    status` says how far registration got, never a partial total; `pb run` resumes it."""
    write(project / "e.toml", SPEC.format(space=GRID.format(n=8000)))
    r = pb("run", "e.toml", "--quiet", check=False,
           env=dict(SMALL, PB_TEST_DIE_AFTER_CHUNKS="2", PB_TEST_REGISTER_PAUSE="0.2"))
    assert r.returncode == -9
    db = _db(project)
    try:
        (n, nxt, total, key), = db.execute("SELECT n_tasks, reg_next, reg_total, space_key "
                                           "FROM experiments")
        (count,), = db.execute("SELECT count(*) FROM tasks")
    finally:
        db.close()
    assert n == count == nxt == 2000 and total == 8000 and key is None
    s = json.loads(pb("status", "--json").stdout)
    assert s["total"] == 8000 and s["registering"]["points"] == 2000
    text = pb("status").stdout
    assert "8,000 tasks, registering: 2,000 of 8,000 points so far" in text
    assert "registration stopped part way" in text and "2,000 tasks" not in text
    pb("run", "e.toml", "--quiet")
    _check_complete(project, [{"i": i} for i in range(8000)])
    assert "registering" not in pb("status").stdout


def test_non_rectangular_spaces_stream_and_resume(project):
    """A where filter (its size unknown until counted) and a union register in chunks too."""
    # (a filter of over 100,000 points is not counted to print the space, nor to register it)
    for space, points in ((WHERE.format(n=200_000),
                           [{"i": i} for i in range(200_000) if i % 50 == 0]),
                          (UNION.format(h=3000, n=6000), [{"i": i} for i in range(3000)]
                           + [{"i": i, "j": 1} for i in range(3000, 6000)])):
        shutil.rmtree(project / ".pushbutton", ignore_errors=True)
        write(project / "e.toml", SPEC.format(space=space))
        r = pb("run", "e.toml", "--quiet", check=False,
               env=dict(SMALL, PB_TEST_DIE_AFTER_CHUNKS="1", PB_TEST_REGISTER_PAUSE="0.2"))
        assert r.returncode == -9
        s = json.loads(pb("status", "--json").stdout)
        assert 0 < s["registering"]["tasks"] < len(points)
        if "where" in space:  # not counted before registering: no total is made up
            assert s["total"] is None and "? tasks" in pb("status").stdout
        else:
            assert s["total"] == len(points)
        pb("run", "e.toml", "--quiet", env=SMALL)
        _check_complete(project, points)


def test_registration_progress_without_a_terminal(project):
    """Without a terminal the registration of a big space is followed by plain lines."""
    write(project / "e.toml", SPEC.format(space=GRID.format(n=60000)))
    r = pb("run", "e.toml", check=False,
           env={"PB_TEST_DIE_AFTER_CHUNKS": "3", "PB_TEST_REGISTER_PAUSE": "0.3",
                "PB_PROGRESS_INTERVAL": "0"})
    assert r.returncode == -9
    assert "registering 60,000 tasks ..." in r.stderr
    seen = [int(line.split()[1].split("/")[0].replace(",", ""))
            for line in r.stderr.splitlines() if line.startswith("registered ")
            and line.split()[1].endswith("/60,000")]
    assert seen and all(0 < k < 60000 for k in seen), r.stderr


def test_python_api_run_streams_too(project, monkeypatch):
    import sys

    import pushbutton
    monkeypatch.syspath_prepend(str(project))
    for k, v in dict(SMALL, PB_TEST_REGISTER_PAUSE="0.3").items():
        monkeypatch.setenv(k, v)
    sys.modules.pop("start_tasks", None)
    import start_tasks
    exp = pushbutton.Experiment("stream", start_tasks.stamp, space=pushbutton.grid(
        i=range(4000)), workers=2, project=project)
    summary = exp.run(quiet=True)
    assert summary["done"] == 4000
    db = _db(project)
    try:
        (t_reg,), = db.execute("SELECT t FROM events WHERE kind='registered'")
    finally:
        db.close()
    assert min(t for _, t in _parquet_rows(project)) < t_reg
    _check_complete(project, [{"i": i} for i in range(4000)], keyed=False)
