"""Ingest reads a bundle's outcome lines at most CHUNK_BYTES at a time (harvest/ingest.py), so
what a read holds is bounded whatever the bundle's size; the store ends the same."""
import pandas as pd

from pushbutton import Experiment, grid
from pushbutton.harvest import ingest


def _run(name):
    exp = Experiment(name, function="tasks:mixed", space=grid(i=range(1500), tag=["x"]),
                     workers=1, bundle_size=1500)
    s = exp.run()
    df = exp.results().drop(columns=["pb_task_id", "pb_finished_at", "pb_duration_s",
                                     "pb_host", "pb_run_id"])
    return s, df.sort_values("i").reset_index(drop=True)


def test_a_big_bundle_is_read_in_bounded_chunks(project, monkeypatch):
    s_whole, whole = _run("whole")
    sizes = []
    real = ingest.Ingestor._parse_fast

    def spy(self, b, chunk, batch):
        sizes.append(len(chunk))
        return real(self, b, chunk, batch)
    monkeypatch.setattr(ingest.Ingestor, "_parse_fast", spy)
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 40_000, raising=False)
    s_chunked, chunked = _run("chunked")
    assert len(sizes) > 5 and max(sizes) <= 40_000, sizes
    assert s_chunked["counts"] == s_whole["counts"]
    assert s_whole["counts"]["failed"] == len([i for i in range(1500) if i % 97 == 5])
    pd.testing.assert_frame_equal(whole, chunked, check_dtype=False)
