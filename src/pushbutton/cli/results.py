"""Reading what was computed: `pb results`, `pb sql`, `pb logs`."""
from __future__ import annotations

import json
import sys

import click

from pushbutton.cli.project import experiment_named, open_store
from pushbutton.cli.tables import print_frame


@click.command()
@click.argument("experiment", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "parquet", "json"]),
              default="table", help="Output format.")
@click.option("--where", default=None,
              help="One SQL expression, e.g. \"n > 100 AND pb_status='done'\".")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
@click.option("--all", "all_tasks", is_flag=True, help="Include tasks not done.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Rows to give, in every format (0: all)  [default: 50 in a table, all "
                   "otherwise]")
@click.option("--all-columns", is_flag=True,
              help="A table with every bookkeeping column (pb_error, pb_host, ...).")
@click.option("--run", "run", type=int, default=None,
              help="The rows run N produced (see pb history), e.g. before a --rerun.")
def results(experiment, fmt, where, output, all_tasks, limit, all_columns, run):
    """The results table: pb_task_id, the parameters, the metrics, then the bookkeeping
    columns (pb_status, pb_error, pb_attempts, pb_host and more).

    A table leaves bookkeeping columns out (--all-columns shows them) and the columns that do
    not fit the terminal (named in a note); --format csv|json|parquet have every column.
    Times are UTC ISO timestamps."""
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    if fmt == "table":
        return _results_table(store, eid, name, where, all_tasks, 50 if limit is None else limit,
                              run, all_columns)
    from pushbutton.store.export import export  # DuckDB's COPY: no frame of 10^7 rows
    n = export(store, eid, name, fmt, output, where=where, run=run, limit=limit or None)
    if output:
        click.echo(f"wrote {n:,} rows to {output}", err=True)


def _results_table(store, eid, name, where, all_tasks, limit, run, all_columns):
    """Only the rows shown are built: instant even at 10^6 tasks."""
    from pushbutton.store.views import results as res
    df = res(store, eid, name, where=where, all_tasks=all_tasks,
             limit=(limit + 1) if limit else None, run=run, frame=False)
    from pushbutton.store.integrity import state_counts  # kept counts, checked
    c = state_counts(store, eid)
    total = sum(c.values()) if all_tasks else c["done"]
    if where or run:  # how many rows match is not counted (only the rows shown are read)
        total = None
        title = (f"{name}: rows" + (f" of run {run}" if run else "")
                 + (f" where {where}" if where else ""))
    else:
        title = f"{name}: {total:,} row{'s' * (total != 1)}"
        left = [f"{v:,} {k}" for k, v in c.items() if k != "done" and v]
        if left and not all_tasks:  # the tasks a table of done ones leaves out are named
            title += f" (done tasks; not shown: {', '.join(left)}; --all shows them)"
    print_frame(df.head(limit) if limit else df, 0, title=title, all_columns=all_columns)
    if limit and len(df) > limit:
        more = f"{total - limit:,} more rows (the first {limit:,} of {total:,} shown)" \
            if total is not None else "more rows"
        click.echo(f"... {more}: --limit 0 for all, or --format csv")


@click.command()
@click.argument("query")
@click.option("-e", "--experiment", default=None,
              help="The experiment whose views are queried (default: the latest one).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              help="Output format.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Rows to give, in every format (0: all)  [default: 200 in a table, all "
                   "otherwise]")
def sql(query, experiment, fmt, limit):
    """One read-only DuckDB query over the views results, tasks and series of one experiment
    (every column it selects is shown; times as UTC ISO timestamps)."""
    from pushbutton.cli.tables import times_as_timestamps
    from pushbutton.store.views import sql as q
    store = open_store(experiment)
    _, name = experiment_named(store, experiment)
    df = q(store, query, experiment=name)
    if fmt == "table":
        limit = 200 if limit is None else limit
        n = len(df)
        print_frame(df, limit, title=f"experiment {name}: {n:,} row{'s' * (n != 1)}")
        return
    if experiment is None and len(store.experiments()) > 1:
        click.echo(f"(experiment {name}; -e NAME for another)", err=True)
    if limit:
        df = df.head(limit)
    if fmt == "csv":
        times_as_timestamps(df).to_csv(sys.stdout, index=False)
    else:
        click.echo(times_as_timestamps(df).to_json(orient="records", lines=True,
                                                   force_ascii=False), nl=False)


@click.command()
@click.argument("task")
@click.option("-e", "--experiment", default=None,
              help="The experiment the task belongs to (default: any).")
def logs(task, experiment):
    """A task's stdout, stderr and failed attempts (TASK = id or a unique prefix)."""
    from pushbutton.execution.operations import logs as lg
    store = open_store(experiment)
    eid = experiment_named(store, experiment)[0] if experiment else None
    out = lg(store, eid, task)
    click.echo(f"task {out['task']} [{out['state']}] "
               f"{json.dumps(out['params'], ensure_ascii=False)}"
               + (f" on {_where(out)}" if out.get("node") or out.get("host") else ""))
    for a in out["attempts"]:
        where = f"host {a['host']}" + (f", node {a['node']}" if a.get("node") and
                                       a["node"] != a["host"] else "")
        click.echo(f"-- attempt {a['n']} (bundle {a['bundle']}): {a['kind']}: {a['error']} "
                   f"({where})")
        tb = (a["traceback"] or "").strip()
        if tb and tb in out["stderr"]:  # each traceback once: where it was printed
            click.echo("   (its traceback is in stderr below)")
        elif tb:
            click.echo(tb)
    click.echo("-- stdout --")
    click.echo(out["stdout"].rstrip())
    click.echo("-- stderr --")
    click.echo(out["stderr"].rstrip())


def _where(d: dict) -> str:
    """Where a task ran: the node, and the host only where it differs (as `pb show`)."""
    node, host = d.get("node"), d.get("host")
    if node and host and node != host:
        return f"node {node} (host {host})"
    return f"{node or host}"


COMMANDS = [results, sql, logs]
