"""`pb parrun SCRIPT.py`: sweep a script's leading for-loops (see pushbutton.spec.parrun).
Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from pushbutton.cli.progress import run_with_progress


@click.command()
@click.argument("script", type=click.Path(dir_okay=False))
@click.option("--on", "on", default=None, help="Target: local (default) or a named target.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes.")
@click.option("-m", "--message", default=None, help="What this run is for (kept in history).")
@click.option("--dry-run", is_flag=True, help="Show the grid, first points and the runner; "
              "run nothing.")
@click.option("--name", default=None, help="Experiment name (default: parrun-<script stem>).")
@click.option("--timeout", default=None, help="Per task, e.g. 30s, 10m, 2h.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Retries of a task whose failure is not its own (signal, lost node); "
              "default 1.")
@click.option("--rerun", is_flag=True, help="Run every point again, done ones included.")
@click.option("--rerun-failed", is_flag=True, help="Run failed points again.")
@click.option("--yes", is_flag=True, help="Confirm a grid larger than run.max_tasks.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def parrun(script, on, workers, message, dry_run, name, timeout, retries, rerun, rerun_failed,
           yes, quiet):
    """Run SCRIPT.py once per point of the grid named by its leading for-loops.

    The loops (literal lists or range(), possibly nested) are the parameter space; each task runs
    the script's preamble and the innermost loop body once, for one point. The script is not
    modified. Metrics: a dict named `result` (or `metrics`), pushbutton.log(...), or a JSON
    object printed last. Running it again resumes: done points are skipped.
    """
    from pushbutton.spec import parrun as P
    from pushbutton.experiment import Experiment
    from pushbutton.store import location
    # the script's store: at or above its folder (a run creates one; a dry run writes nothing)
    project, exists = location.root_for(Path(script).resolve().parent)
    note = location.note(project, new=not exists)
    if note:
        click.echo(note, err=True)
    args, s, runner = P.experiment_args(script, project=project, name=name, timeout=timeout,
                                        retries=retries, workers=workers, target=on,
                                        write=not dry_run)
    exp = Experiment(**args)
    for w in s.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    if dry_run:
        n = len(exp.space)
        click.echo(f"experiment {exp.name}: {n:,} tasks")
        click.echo(f"grid: {P.describe(s)}")
        click.echo("first points:")
        for p in exp.space.head(5):
            click.echo("  " + json.dumps(p, ensure_ascii=False))
        click.echo(f"runner: {os.path.relpath(runner)}   (in {exp.root})")
        return
    summary = run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, None,
                                quiet)
    c = summary.get("counts", {})
    if summary.get("submitted") is not None:
        click.echo(summary.get("message", f"submitted {summary['submitted']} tasks"))
        return
    from pushbutton.execution.summary import run_lines
    for line in run_lines(exp.name, c, summary["seconds"], summary.get("failures"),
                          exp.resources):
        click.echo(line)
    click.echo(f"results: pb results {exp.name}   (store: {exp.store.dir})")
    if c.get("failed"):
        click.echo(f"failures: pb status {exp.name}; pb logs TASK; "
                   f"pb parrun {script} --rerun-failed")
        sys.exit(1)


COMMANDS = [parrun]
