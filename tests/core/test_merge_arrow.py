"""Parts merged by Arrow, batch by batch (store/arrowmerge.py): the driver of a run never loads
DuckDB's engine (its code and allocator were the merge's share of the run's peak RSS), and a
merged file has the rows and types DuckDB's union_by_name merge gives; where rows may repeat
(a `pb repair` file) or types do not unify, DuckDB still merges."""
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from pushbutton.store import partset

RUN = '''
import json, sys
from pushbutton.experiment import load
exp = load("spec.toml")
s = exp.run(yes=True, quiet=True)
import os
print(json.dumps({"duckdb": "duckdb" in sys.modules, "pandas": "pandas" in sys.modules,
                  "done": s["counts"]["done"],
                  "parts": sorted(os.listdir(".pushbutton/results/merged"))}))
'''

SPEC = '''
name = "merged"
function = "merge_task:f"
[space]
grid = { a = { range = [0, 60] }, b = { range = [0, 50] } }
[run]
bundle_size = 100
'''

TASK = '''
def f(a, b):
    return {"y": a * b if b % 2 else a * b + 0.5, "s": "t%d" % a}
'''


def test_a_run_merges_its_parts_without_duckdb(project):
    (project / "spec.toml").write_text(SPEC)
    (project / "merge_task.py").write_text(TASK)
    out = subprocess.run([sys.executable, "-c", RUN], cwd=project, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["done"] == 3000
    assert not got["duckdb"] and not got["pandas"]
    files = [p for p in got["parts"] if p.endswith(".parquet")]
    assert len(files) == 1 and files[0].startswith("compact-"), files  # 30 parts merged
    from pushbutton.experiment import load
    df = load(project / "spec.toml").results()
    assert len(df) == 3000 and df["pb_task_id"].is_unique
    exp = df["a"] * df["b"] + (df["b"] % 2 == 0) * 0.5
    assert (df["y"] == exp).all() and (df["s"] == "t" + df["a"].astype(str)).all()
    # the bookkeeping columns unique per row are stored plain (core/names.UNIQUE): a
    # dictionary of them only costs; the parameters and metrics keep theirs
    md = pq.ParquetFile(project / ".pushbutton/results/merged" / files[0]).metadata
    enc = {md.schema.column(i).name: set(md.row_group(0).column(i).encodings)
           for i in range(md.num_columns)}
    for c in ("pb_task_id", "pb_duration_s", "pb_finished_at"):
        assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & enc[c], (c, enc[c])
    for c in ("a", "b", "s", "pb_bundle"):
        assert {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & enc[c], (c, enc[c])


def _part(folder, name, **cols):
    meta = {"params": ["a"], "metrics": [c for c in cols if c != "a" and not c.startswith("pb_")]}
    t = pa.table(cols).replace_schema_metadata({"pushbutton": json.dumps(meta)})
    pq.write_table(t, folder / name)


def _duck(folder, names):
    import duckdb
    lst = ", ".join(f"'{folder / n}'" for n in names)
    got = duckdb.sql(f"SELECT * FROM read_parquet([{lst}], union_by_name=true) "
                     "ORDER BY pb_task_id").arrow()
    return got.read_all() if hasattr(got, "read_all") else got  # (a reader in DuckDB 2)


def test_arrow_merge_equals_duckdb_union(tmp_path):
    _part(tmp_path, "b1-000000000000.parquet", pb_task_id=["t1", "t2"], pb_bundle=["b1"] * 2,
          pb_finished_at=[1.0, 2.0], a=[1, 2], y=pa.array([1, 2], pa.int64()))
    _part(tmp_path, "b2-000000000000.parquet", pb_task_id=["t3"], pb_bundle=["b2"],
          pb_finished_at=[3.0], a=[3], y=pa.array([2.5]), z=["new"])
    _part(tmp_path, "b3-000000000000.parquet", pb_task_id=["t4"], pb_bundle=["b3"],
          pb_finished_at=[4.0], a=[4], y=pa.nulls(1))
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    want = _duck(tmp_path, names)
    out = partset.merge(tmp_path, names, 1)
    got = pq.read_table(tmp_path / out).sort_by("pb_task_id")
    assert got.column_names == want.column_names
    assert got.schema.types == want.schema.types  # y: int and float -> double, as DuckDB
    assert got.to_pylist() == want.to_pylist()
    md = json.loads(pq.read_schema(tmp_path / out).metadata[b"pushbutton"])
    assert md == {"params": ["a"], "metrics": ["y", "z"]}


def test_repair_files_and_mixed_types_go_to_duckdb(tmp_path, monkeypatch):
    from pushbutton.store import arrowmerge
    _part(tmp_path, "b1-000000000000.parquet", pb_task_id=["t1"], pb_bundle=["b1"],
          pb_finished_at=[1.0], a=[1], y=[1.0])
    _part(tmp_path, "repair-b1-1.parquet", pb_task_id=["t1"], pb_bundle=["b1"],
          pb_finished_at=[2.0], a=[1], y=[5.0])
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert not arrowmerge.merge(tmp_path, names, tmp_path / "x.parquet", None)
    out = partset.merge(tmp_path, names, 1)  # DuckDB: one row per (task, bundle), the newest
    assert pq.read_table(tmp_path / out).column("y").to_pylist() == [5.0]
    _part(tmp_path, "b2-000000000000.parquet", pb_task_id=["t2"], pb_bundle=["b2"],
          pb_finished_at=[1.0], a=[2], y=["text"])
    mixed = ["b1-000000000000.parquet", "b2-000000000000.parquet"]
    assert not arrowmerge.merge(tmp_path, mixed, tmp_path / "x.parquet", None)
    out = partset.merge(tmp_path, mixed, 1)
    assert sorted(pq.read_table(tmp_path / out).column("y").to_pylist()) == ["1.0", "text"]
