"""Parquet parts written without pyarrow (store/parquet_plain.py) read back, with pyarrow and
DuckDB, as the columns pyarrow's writer makes of the same values (parts._typed)."""
import math

import duckdb
import pyarrow.parquet as pq
import pytest

from pushbutton.store import parquet_plain as pp
from pushbutton.store import parts

CASES = [[1, 2, None], [1.5, 2, None], [True, None, False], ["a", None, "é"], [None, None],
         [2**63 - 1, -2**63], [2**64, 1], [1, "a"], [True, 1], [[1], None], [{"a": 1}, "x"],
         [float("nan"), float("inf"), -float("inf"), None], list(range(20)) + [None],
         [""] * 3, ["x" * 300] * 20, [True] * 17, [None] * 9 + [1],
         [[1, {"b": [2]}], {"z": 1, "a": 2}], [0.1] * 8]


def _same(x, y):
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x)
                      and math.isnan(y))


@pytest.mark.parametrize("values", CASES, ids=range(len(CASES)))
def test_plain_part_reads_back_as_pyarrow_writes_it(tmp_path, values):
    want = parts._typed(values)
    typ, conv = pp.typed(values)
    path = tmp_path / "p.parquet"
    pp.write(path, [("c", typ, conv), ("n", pp.INT, list(range(len(values))))], {"k": "v"})
    table = pq.read_table(path)
    assert table.column("c").type == want.type
    got = table.column("c").to_pylist()
    assert len(got) == len(values) and all(map(_same, got, want.to_pylist())), got
    assert table.column("n").to_pylist() == list(range(len(values)))
    assert pq.read_schema(path).metadata[b"k"] == b"v"
    rows = duckdb.sql(f"SELECT c, n FROM read_parquet('{path}') ORDER BY n").fetchall()
    assert [r[1] for r in rows] == list(range(len(values)))
    assert all(_same(a, b) for (a, _), b in zip(rows, got))


def test_many_columns_and_rows_and_a_mix_with_pyarrow_parts(tmp_path):
    """More than 15 list entries (the Thrift list header's long form), thousands of rows, and
    a plain part read in one union with a part pyarrow wrote."""
    cols = [(f"c{i}", pp.INT, list(range(3000))) for i in range(40)]
    cols.append(("s", pp.TEXT, [None if i % 7 == 0 else f"r{i}" for i in range(3000)]))
    pp.write(tmp_path / "a.parquet", cols)
    t = pq.read_table(tmp_path / "a.parquet")
    assert t.num_rows == 3000 and t.num_columns == 41
    assert t.column("c39").to_pylist() == list(range(3000))
    assert t.column("s").null_count == 429
    pq.write_table(t.slice(0, 10), tmp_path / "b.parquet", compression="zstd")
    n, total = duckdb.sql(f"SELECT count(*), sum(c39) FROM read_parquet("
                          f"['{tmp_path}/a.parquet', '{tmp_path}/b.parquet'], "
                          f"union_by_name=true)").fetchall()[0]
    assert n == 3010 and total == sum(range(3000)) + sum(range(10))


def test_write_part_plain_matches_pyarrow_part(tmp_path):
    rows = [{"task_id": f"t{i}", "bundle": "b", "run_id": 1, "attempts": 1, "duration_s": 0.5,
             "host": "h", "node": None, "finished_at": 1.0 + i,
             "params": {"i": i, "x": "a" if i else None},
             "metrics": {"m": i / 2, "v": [i], "pb_x": 1}} for i in range(5)]
    parts.write_part(tmp_path / "plain.parquet", rows, ["i"], plain=True)
    parts.write_part(tmp_path / "arrow.parquet", rows, ["i"])
    a, b = pq.read_table(tmp_path / "plain.parquet"), pq.read_table(tmp_path / "arrow.parquet")
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    assert a.schema.metadata[b"pushbutton"] == b.schema.metadata[b"pushbutton"]
    assert a.to_pylist() == b.to_pylist()
    series = [{"task_id": "t", "step": s, "time": 1.0, "m": {"loss": 1 / (s + 1)}}
              for s in range(3)]
    parts.write_series(tmp_path / "s1.parquet", series, plain=True)
    parts.write_series(tmp_path / "s2.parquet", series)
    assert pq.read_table(tmp_path / "s1.parquet").to_pylist() == \
        pq.read_table(tmp_path / "s2.parquet").to_pylist()


def test_few_plain_parts_are_not_merged_for_their_bytes(tmp_path):
    """A small run's parts are uncompressed: the end of its run merges them by their number
    only (a merge would import pyarrow), while a run's ordinary parts over 1 MB are merged."""
    from pushbutton.store import partset

    def parts_of(folder):
        folder.mkdir()
        names = []
        for k in range(5):  # 5 parts, ~1.5 MB together
            rows = [{"task_id": f"{k}-{i}", "bundle": f"b{k}", "run_id": 1, "attempts": 1,
                     "duration_s": 0.1, "host": "h", "node": "h", "finished_at": 1.0,
                     "params": {"i": i}, "metrics": {"s": "x" * 60}} for i in range(3000)]
            name = f"e1-r1-{k:06d}-000000000000.parquet"
            parts.write_part(folder / name, rows, ["i"], plain=True)
            names.append(name)
        partset.publish(folder, names)
        return names
    few = tmp_path / "small"
    names = parts_of(few)
    assert sum((few / n).stat().st_size for n in names) > 1 << 20
    assert parts.compact(few, full=True, by_size=False) == 0
    assert sorted(partset.current(few)) == sorted(names)
    big = tmp_path / "ordinary"
    parts_of(big)
    assert parts.compact(big, full=True) == 5
    (merged,) = partset.current(big)
    assert pq.read_table(big / merged).num_rows == 15000
