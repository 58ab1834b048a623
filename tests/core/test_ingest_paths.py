"""The Arrow fast path of ingest and the line-by-line path store the same table."""
import pandas as pd

from pushbutton import Experiment, grid
from pushbutton.harvest import arrow as ingest_arrow


def _run(name, project):
    exp = Experiment(name, function="tasks:mixed", space=grid(i=range(1500), tag=["x"]),
                     workers=1, bundle_size=1500)
    s = exp.run()
    df = exp.results().drop(columns=["pb_task_id", "pb_finished_at", "pb_duration_s", "pb_host", "pb_run_id"])
    return s, df.sort_values("i").reset_index(drop=True)


def test_fast_and_slow_ingest_agree(project, monkeypatch):
    monkeypatch.setenv("PB_SMALL_RUN", "0")  # 1,500 tasks: a small run would not use Arrow
    calls = []
    real = ingest_arrow.parse

    def spy(*a, **k):
        out = real(*a, **k)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(ingest_arrow, "parse", spy)
    s_fast, fast = _run("fast", project)
    assert any(calls), "the fast path was not taken"
    monkeypatch.setattr(ingest_arrow, "parse", lambda *a, **k: None)
    s_slow, slow = _run("slow", project)
    assert s_fast["counts"] == s_slow["counts"]
    assert s_fast["counts"]["failed"] == len([i for i in range(1500) if i % 97 == 5])
    assert list(fast.columns) == list(slow.columns)
    assert "pb_node" in fast.columns and fast["pb_node"].notna().all()  # both paths record it
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
    row = fast.set_index("i").loc[8]
    assert row["vec"] == "[8, 9]" and row["cfg"] == '{"a": 8}' and bool(row["ok"])
    assert row["sometimes"] == 8
