"""Acting on an experiment after its run: `pb retry`, `pb cancel`, `pb clean`."""
from __future__ import annotations

from pathlib import Path

import click

from pushbutton.cli.progress import run_with_progress
from pushbutton.cli.project import experiment_named, open_store


@click.command()
@click.argument("experiment", required=False)
@click.option("--run/--no-run", "do_run", default=True, help="Run them now (needs the spec).")
@click.option("--on", "on", default=None,
              help="Target to run them on  [default: the target of the last run]")
def retry(experiment, do_run, on):
    """Run the failed tasks again (where the last run ran: a sweep run on a cluster is retried
    there)."""
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    spec = next(e["spec"] for e in store.experiments() if e["id"] == eid)
    spec_file = spec.get("_spec_file")
    if do_run and spec_file and Path(spec_file).exists():
        from pushbutton.experiment import load
        exp = load(spec_file, project=store.root)
        n = store.counts(eid)["failed"]
        if not n:
            click.echo(f"{name}: no failed tasks to retry")
            return
        runs = store.runs(eid)
        target = on or (runs[-1]["target"] if runs else None) or "local"
        click.echo(f"retrying {n:,} failed task{'s' * (n != 1)} of {name} on {target}")
        summary = run_with_progress(exp, None if target == "local" else target, None,
                                    "retry failed", False, True, False, None, False)
        if summary.get("submitted") is not None:  # a scheduler: submitted, harvested later
            click.echo(summary.get("message", f"submitted {summary['submitted']} tasks"))
            return
        from pushbutton.execution.summary import run_lines
        for line in run_lines(name, summary.get("counts", {}), summary.get("seconds"),
                              summary.get("failures"), exp.resources):
            click.echo(line)
        from pushbutton.cli.run import stale_notes  # the fix may have changed what is done
        stale_notes(exp, summary)
        return
    with store.tx(), store.counted(eid):
        n = store.db.execute("UPDATE tasks SET state='pending', attempt0=attempts WHERE "
                             "exp=? AND state='failed' AND state != 'done'", (eid,)).rowcount
    click.echo(f"{n} failed tasks of {name} marked pending; run the experiment again to run them")


@click.command()
@click.argument("experiment", required=False)
def cancel(experiment):
    """Stop a running experiment; what is not done is marked cancelled (resumable)."""
    from pushbutton.execution.operations import cancel as cc
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    r = cc(store, eid, name)
    click.echo(f"{name}: {r['cancelled']} tasks cancelled" +
               (f", {r['slurm_bundles']} bundles cancelled on SLURM" if r["slurm_bundles"]
                else "") +
               (f", driver {r['stopped_driver']} stopped" if r["stopped_driver"] else ""))


@click.command()
@click.argument("experiment", required=False)
@click.option("--bundles", "bundles_only", is_flag=True,
              help="Only delete the folders and kept logs of finished bundles (the tasks' "
                   "output goes).")
@click.option("--yes", is_flag=True, help="Do not ask.")
def clean(experiment, bundles_only, yes):
    """Delete an experiment's data from the store (or only its finished bundle folders)."""
    from pushbutton.execution.operations import clean as cl
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    if not bundles_only and not yes:
        click.confirm(f"delete every task, result and log of '{name}'?", abort=True)
    n = cl(store, eid, name, bundles_only=bundles_only, progress=_clean_progress())
    if bundles_only:
        click.echo(f"removed {n} bundle folders and logs of {name}")
        return
    click.echo(f"deleted experiment {name}")


def _clean_progress():
    """Each step of `pb clean` on stderr: one line updated in place in a terminal, a line per
    step (and per 10% of a long one) otherwise."""
    import sys
    import time
    tty = sys.stderr.isatty()
    state = {"step": None, "shown": -1, "t": time.time()}

    def progress(step, done=None, total=None):
        count = f" {done:,}/{total:,}" if total else ""
        if tty:
            end = "\n" if total is None or done == total else ""
            click.echo(f"\r\033[K{step}{count}", err=True, nl=False)
            if end:
                click.echo("", err=True)
            return
        tenth = (10 * done // total) if total else None
        if step != state["step"] or tenth != state["shown"]:
            state["step"], state["shown"] = step, tenth
            click.echo(f"{step}{count} ({time.time() - state['t']:.1f}s)", err=True)
    return progress


COMMANDS = [retry, cancel, clean]
