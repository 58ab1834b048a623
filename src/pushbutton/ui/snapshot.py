"""Writing one experiment's results table to a Parquet file, in a process of its own:

    python -m pushbutton.ui.snapshot STORE_ROOT EXPERIMENT OUT.parquet

The table is `store.views.connect`'s `results` view (the one definition of a task's current
result), streamed to the file in record batches, in space order. `pb ui` runs this in a child
process so that reading 10^6 task rows out of SQLite (Python objects by the million) never
grows the server: the server only scans the file (ui/results.py). Writes OUT.parquet.tmp and
renames it, so a reader sees a whole file or the previous one."""
from __future__ import annotations

import os
import sys

BATCH = 100_000


def write(store_root, name: str, out: str) -> int:
    import pyarrow.parquet as pq

    from pushbutton.store.database import Store
    from pushbutton.store.views import connect
    store = Store(store_root, create=False)
    try:
        con = connect(store, name)
        cur = con.execute("SELECT * FROM results")
        reader = (cur.to_arrow_reader(BATCH) if hasattr(cur, "to_arrow_reader")
                  else cur.fetch_record_batch(BATCH))  # duckdb < 1.4
        tmp = out + ".tmp"
        n = 0
        with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as w:
            for batch in reader:
                w.write_batch(batch)
                n += batch.num_rows
        os.replace(tmp, out)
        return n
    finally:
        store.close()


def main(argv=None) -> None:
    root, name, out = (argv or sys.argv[1:])[:3]
    try:
        write(root, name, out)
    except Exception as e:  # noqa: BLE001 - the server shows this message on the page
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
