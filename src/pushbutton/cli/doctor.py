"""`pb doctor` and `pb repair`: check the store, fix what can be fixed. Registered by cli/main.py
through COMMANDS."""
from __future__ import annotations

import sys

import click


def _root():
    from pushbutton.core.errors import PushbuttonError
    from pushbutton.store.database import find_root
    root = find_root()
    if root is None:
        raise PushbuttonError("no pushbutton project here or above")
    return root


@click.command()
def doctor():
    """Check the store: SQLite's integrity, every Parquet part, result rows against the task
    states, outcomes on disk not ingested. Exits 1 when something is damaged."""
    from pushbutton.store.integrity import doctor as run_doctor
    rep = run_doctor(_root())
    for p in rep["problems"]:
        click.secho(f"damaged: {p['what']}", fg="red")
        click.echo(f"  fix: {p['fix']}")
    for n in rep["notes"]:
        click.echo(f"note: {n}")
    if rep["ok"]:
        click.echo("store ok: state database, results files and rows agree")
    else:
        sys.exit(1)


@click.command()
@click.argument("experiment", required=False)
def repair(experiment):
    """Fix what `pb doctor` finds (safe to repeat; refuses while a run is going): damaged
    parts are moved to .pushbutton/quarantine/, lost rows re-ingested from outcomes still on
    disk, the rest marked pending so that the next `pb run` recomputes them."""
    from pushbutton.harvest.repair import repair as run_repair
    r = run_repair(_root(), experiment)
    if r["reindexed"]:
        click.echo("rebuilt the indexes of state.sqlite")
    for q in r["quarantined"]:
        click.echo(f"moved aside: {q}")
    click.echo(f"repaired {', '.join(r['experiments']) or 'nothing'}: "
               f"{len(r['quarantined'])} damaged file(s) moved aside, "
               f"{r['manifests_rebuilt']} manifest(s) rebuilt, "
               f"{r['leftovers_removed']} leftover file(s) removed, "
               f"{r['restored']} result row(s) re-ingested from outcomes on disk, "
               f"{r['pending']} task(s) marked pending")
    if r["pending"]:
        click.echo("run the experiment again (`pb run SPEC`) to recompute the pending tasks")


COMMANDS = [doctor, repair]
