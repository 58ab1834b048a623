"""All views agree on the current result of a task (docs/ARCHITECTURE.md): `pb status`,
`pb results`, `pb sql` and `exp.results()` after a failed and after a cancelled --rerun; the
results of earlier runs stay readable apart (`--run N`)."""
import json
import socket
import time

import pytest

import pushbutton

from .conftest import pb, write

TASK = '''
import os
import time


def job(i, **_):
    mode = open("mode").read().strip() if os.path.exists("mode") else "v1"
    if mode == "fail":
        raise RuntimeError("broken on purpose")
    if mode == "v2" and i >= 2:
        time.sleep(60)
    return {"v": i * 10 + (1 if mode == "v1" else 2)}
'''

SPEC = '''
name = "views"
function = "views_task:job"
[space]
grid = { i = [0, 1, 2, 3, 4, 5] }
[run]
workers = 1
'''


def _views(project):
    """{view: {task id: (status, v, run)}} plus the counts of `pb status --json`."""
    def rows(recs):
        return {r["pb_task_id"]: (r["pb_status"], r["v"], r["pb_run_id"], r["pb_node"])
                for r in recs}
    out = {}
    out["pb results"] = rows(json.loads(x) for x in
                             pb("results", "--format", "json").stdout.splitlines())
    out["pb sql"] = rows(json.loads(x) for x in pb(
        "sql", "SELECT pb_task_id, pb_status, v, pb_run_id, pb_node FROM results", "--format",
        "json").stdout.splitlines())
    df = pushbutton.load(project / "experiment.toml").results()
    out["exp.results()"] = rows(df.astype(object).where(df.notna(), None).to_dict("records"))
    counts = json.loads(pb("status", "--json").stdout)["counts"]
    return out, {k: v for k, v in counts.items() if v}


def _agree(project):
    views, counts = _views(project)
    first = views["pb results"]
    for name, v in views.items():
        assert v == first, (name, v, first)
    from collections import Counter
    assert dict(Counter(s for s, *_ in first.values())) == counts
    # every task that ran to an end says where, in every view alike (checked above)
    assert all(n == socket.gethostname() for s, _, _, n in first.values()
               if s in ("done", "failed")), first
    return {t: v[:3] for t, v in first.items()}


def test_failed_rerun_shows_the_failure_everywhere(project):
    write(project / "views_task.py", TASK)
    write(project / "experiment.toml", SPEC)
    pb("run", "experiment.toml")
    cur = _agree(project)
    assert sorted(v for _, v, _ in cur.values()) == [1, 11, 21, 31, 41, 51]
    write(project / "mode", "fail")
    r = pb("run", "experiment.toml", "--rerun", check=False)
    assert r.returncode != 0
    cur = _agree(project)
    assert set(cur.values()) == {("failed", None, 2)}  # the failure's run, not the old success's
    js = [json.loads(x) for x in pb("results", "--format", "json").stdout.splitlines()]
    for row in js:
        assert row["pb_error_kind"] == "exception" and "broken on purpose" in row["pb_error"]
        assert row["pb_duration_s"] < 5 and row["pb_host"] == socket.gethostname()
        assert row["pb_node"] == socket.gethostname()  # a failure's node: from its task row
        assert row["pb_attempts"] == 2  # attempt numbers run on over reruns
    # the results of run 1 stay readable, apart
    old = [json.loads(x) for x in pb("results", "--run", "1", "--format", "json")
           .stdout.splitlines()]
    assert sorted(r["v"] for r in old) == [1, 11, 21, 31, 41, 51]
    assert {r["pb_run_id"] for r in old} == {1} and {r["pb_status"] for r in old} == {"done"}
    exp = pushbutton.load(project / "experiment.toml")
    assert sorted(exp.results(run=1)["v"]) == [1, 11, 21, 31, 41, 51]
    assert exp.results(run=2).empty
    bad = pb("results", "--run", "9", check=False)
    assert bad.returncode != 0 and "no run 9" in bad.stderr and "Traceback" not in bad.stderr
    # fixed and run again: the new results, run 3
    (project / "mode").unlink()
    pb("run", "experiment.toml", "--rerun-failed")
    cur = _agree(project)
    assert {s for s, _, r in cur.values()} == {"done"} and {r for *_, r in cur.values()} == {3}


def test_cancelled_rerun_all_views_agree(project):
    write(project / "views_task.py", TASK)
    write(project / "experiment.toml", SPEC)
    pb("run", "experiment.toml")
    write(project / "mode", "v2")  # i >= 2 now hang: the rerun is cancelled part way
    pb("run", "experiment.toml", "--rerun", "--detach")
    deadline = time.time() + 60
    while time.time() < deadline:
        # wait for the rerun's own results: right after --detach, counts may still be run 1's
        st = [json.loads(x) for x in pb("results", "--format", "json").stdout.splitlines()]
        if sum(r["pb_status"] == "done" and r["v"] % 10 == 2 for r in st) >= 2:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the rerun did not get going: {st}")
    pb("cancel")
    cur = _agree(project)
    done = {v for s, v, r in cur.values() if s == "done"}
    assert done == {2, 12}  # the rerun's values, never run 1's
    assert {r for s, v, r in cur.values() if s == "done"} == {2}
    assert all(v is None for s, v, _ in cur.values() if s != "done")
    assert len(cur) == 6
    old = [json.loads(x) for x in pb("results", "--run", "1", "--format", "json")
           .stdout.splitlines()]
    assert sorted(r["v"] for r in old) == [1, 11, 21, 31, 41, 51]
    new = [json.loads(x) for x in pb("results", "--run", "2", "--format", "json")
           .stdout.splitlines()]
    assert sorted(r["v"] for r in new) == [2, 12]
