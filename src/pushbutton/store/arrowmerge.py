"""Merging Parquet parts with Arrow, batch by batch, in the driver's own allocator.

DuckDB's merge (partset.merge) needs its engine in the driver: its code pages and its allocator,
which keeps what a merge freed (+30-80 MB of a run's peak RSS, measured). Where no row can be
there twice the merge is a plain concatenation, which Arrow streams: each input's record batches,
cast to the union of the inputs' schemas (columns in order of first appearance, as DuckDB's
union_by_name), written to one file. `merge` returns None where that does not apply (a file
`pb repair` wrote, whose rows may repeat stored ones; column types Arrow cannot unify); the
caller then merges with DuckDB.

Why no row repeats otherwise: an ingest part is named by its bundle and the outcome offset it
starts at, holds each task's end once, and is re-written under the same name after a crash;
only committed parts are merged, and a merged file replaces its inputs in the manifest in one
step (partset.py). So the rows of the listed files are unique per (task, bundle).
"""
from __future__ import annotations

import json
from pathlib import Path

from pushbutton.core import names as N

BATCH = 16_384      # rows read at a time
ROW_GROUP = 32_768  # rows per row group written (a row group is held whole until written)


def _schema(paths):
    """The union of the files' schemas, or None where a column's types do not unify."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    schemas = [pq.read_schema(p) for p in paths]
    try:
        u = pa.unify_schemas([s.remove_metadata() for s in schemas],
                             promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    for f in u:  # permissive promotion may turn mixed columns into what readers never saw
        kinds = {_kind(s.field(f.name).type) for s in schemas if f.name in s.names}
        kinds.discard("null")
        if len(kinds) > 1 and kinds != {"int", "float"}:
            return None
    return u


def _kind(t) -> str:
    import pyarrow as pa
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return str(t)


def merge(folder, names, out_path: Path, meta: dict | None) -> bool:
    """Write the rows of `names` (in folder) to out_path; False (nothing written) where the
    DuckDB merge must do it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder = Path(folder)
    if any(n.startswith("repair-") for n in names):
        return False
    paths = [folder / n for n in names]
    schema = _schema(paths)
    if schema is None:
        return False
    if meta is not None:
        schema = schema.with_metadata({"pushbutton": json.dumps(meta)})
    writer = pq.ParquetWriter(out_path, schema, compression="zstd",
                              use_dictionary=N.dictionary_columns(schema.names))
    held, n = [], 0

    def flush():
        nonlocal held, n
        if held:
            writer.write_table(pa.Table.from_batches(held, schema=schema),
                               row_group_size=ROW_GROUP)
        held, n = [], 0
    try:
        for p in paths:
            f = pq.ParquetFile(p)
            try:
                for batch in f.iter_batches(batch_size=BATCH):
                    cols = []
                    for field in schema:
                        i = batch.schema.get_field_index(field.name)
                        col = batch.column(i) if i >= 0 else pa.nulls(len(batch), field.type)
                        cols.append(col if col.type == field.type else col.cast(field.type))
                    held.append(pa.RecordBatch.from_arrays(cols, schema=schema))
                    n += len(batch)
                    if n >= ROW_GROUP:  # row groups of DuckDB's size, not one per small part
                        flush()
            finally:
                f.close()
        flush()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False  # a value the cast refuses: DuckDB's merge writes the file over
    finally:
        writer.close()
    return True
