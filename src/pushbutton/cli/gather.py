"""`pb gather FILE [EXPERIMENT]`: one table of FILE from every done task's folder (see
pushbutton.harvest.gather). Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import json
import sys

import click

from pushbutton.cli.project import experiment_named, open_store

SHOWN_PROBLEMS = 20


@click.command()
@click.argument("file")
@click.argument("experiment", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", help="Output format.")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
@click.option("--header/--no-header", "header", default=None,
              help="Whether the first line of a CSV/TSV file names its columns  [default: "
                   "sniffed per file]")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Rows to show in a table (0: all)  [default: 50]")
@click.option("--problems", "all_problems", is_flag=True,
              help=f"List every task whose file is missing or unreadable (default: the first "
                   f"{SHOWN_PROBLEMS}).")
def gather(file, experiment, fmt, output, header, limit, all_problems):
    """Collect FILE (a path inside each task's folder, e.g. results.csv) from every done task
    into one table: pb_task_id, the parameters, the file's columns, pb_row.

    CSV/TSV (with or without a header), JSON, JSON lines and plain numbers are read. Only the
    files of tasks done since the last gather (or changed) are read again; the table is kept in
    the store, as the `pb sql` view named after the file (results.csv -> results_csv). A done
    task whose file is missing or unreadable is listed (exit status 1), never left out in
    silence. After a --rerun a task's rows are those of its new run only."""
    from pushbutton.cli.tables import print_frame, write_frame
    from pushbutton.harvest.gather import gather as run
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    g = run(store, eid, name, file, header=header)
    df = g.frame
    if fmt == "table":
        n = len(df)
        limit = 50 if limit is None else limit
        print_frame(df, limit, title=f"{name}: {g.file}: {n:,} row{'s' * (n != 1)} from "
                    f"{g.with_rows:,} task{'s' * (g.with_rows != 1)}", all_columns=False)
    else:
        write_frame(df, fmt, output)
    _report(g, name, all_problems)
    if g.problems:
        sys.exit(1)


def _report(g, name, all_problems):
    """What the table leaves out, on stderr: tasks not done yet, and each done task without a
    readable file (task id, parameters, why)."""
    out = []
    read = f"{g.read:,} file{'s' * (g.read != 1)} read now"
    out.append(f"{g.file}: {g.with_rows:,} of {g.done:,} done tasks gathered ({read}; the "
               f"table is `pb sql` view {g.view})")
    if g.not_done:
        out.append(f"{g.not_done:,} task{'s' * (g.not_done != 1)} not done yet: `pb gather "
                   f"{g.file} {name}` again later adds them")
    if g.problems:
        out.append(f"{len(g.problems):,} done task{'s' * (len(g.problems) != 1)} without a "
                   f"readable {g.file}:")
        shown = g.problems if all_problems else g.problems[:SHOWN_PROBLEMS]
        for tid, params, why in shown:
            out.append(f"  {tid[:12]} {json.dumps(params, ensure_ascii=False)}: {why}")
        if len(shown) < len(g.problems):
            out.append(f"  ... {len(g.problems) - len(shown):,} more (--problems lists all)")
    for tid, note in g.notes[:SHOWN_PROBLEMS]:
        out.append(f"note: {tid[:12]}: {note}")
    for line in out:
        click.echo(line, err=True)


COMMANDS = [gather]
