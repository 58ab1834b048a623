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
@click.option("--wait", is_flag=True, help="On a scheduler target: wait until every result is in.")
@click.option("--grid-timeout", default="60s", show_default=True,
              help="How long the script's top may run while its grid is read, e.g. 30s, 5m.")
def parrun(script, on, workers, message, dry_run, name, timeout, retries, rerun, rerun_failed,
           yes, quiet, wait, grid_timeout):
    """Run SCRIPT.py once per point of the grid named by the for-loops it ends with.

    The loops (possibly nested, inside `with` or `if __name__ == "__main__":`) are the
    parameter space, their values read as the script would compute them; each task runs the
    script once for one point, in a folder of its own (`pb show TASK` names it). The script is
    not modified. Metrics: a dict named `result` (or `metrics`), pushbutton.log(...), or a JSON
    object printed last. Running it again resumes: done points are skipped.
    """
    import time
    from pushbutton.spec.model import parse_seconds
    try:
        grid_s = parse_seconds(grid_timeout)
    except ValueError as e:
        raise click.BadParameter(str(e).split(" \x1f fix: ")[0], param_hint="--grid-timeout")
    t_start = time.time()
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
                                        write=not dry_run, grid_timeout=grid_s)
    exp = Experiment(**args)
    for w in s.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    if dry_run:
        n = len(exp.space)
        click.echo(f"experiment {exp.name}: {n:,} tasks")
        click.echo(f"grid: {P.describe(s)}")
        if P.how_line(s):
            click.echo(P.how_line(s))
        click.echo("first points:")
        for p in exp.space.head(5):
            click.echo("  " + json.dumps(p, ensure_ascii=False))
        click.echo(f"runner: {os.path.relpath(runner)}   (each task runs in a folder of its "
                   f"own holding the files of {exp.root})")
        return
    summary = run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, None,
                                quiet, wait)
    c = summary.get("counts", {})
    if summary.get("submitted") is not None:
        click.echo(summary.get("message", f"submitted {summary['submitted']} tasks"))
        if not wait:
            return
        summary["seconds"] = time.time() - t_start
    from pushbutton.execution.summary import run_lines
    for line in run_lines(exp.name, c, summary["seconds"], summary.get("failures"),
                          exp.resources):
        click.echo(line)
    click.echo(f"results: pb results {exp.name}   (store: {exp.store.dir})")
    click.echo(f"folders: pb show TASK names a task's folder (its files: {exp.store.dir}"
               f"/tasks/{exp.name}/)" if not on or on == "local" else
               f"folders: pb show TASK names a task's folder on '{on}'")
    click.echo(f"report:  pb report {exp.name}")
    if c.get("failed"):
        click.echo(f"failures: pb status {exp.name}; pb logs TASK; "
                   f"pb parrun {script} --rerun-failed")
        sys.exit(1)


COMMANDS = [parrun]
