"""CLI commands for targets and schedulers: `pb targets list|add|show|check`, `pb harvest`.
Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import json
import sys

import click

from pushbutton.cli.tables import print_rows


@click.group("targets")
def targets_group():
    """Named places to run (SSH hosts, SLURM clusters): list, add, show, check."""


@targets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets_list(as_json):
    """Every target: built-ins, ~/.config/pushbutton/targets.toml, pushbutton-targets.toml."""
    from pushbutton.execution import targets as T
    all_ = T.load_all()
    if as_json:
        click.echo(json.dumps({n: t.model_dump() for n, t in all_.items()}, default=str))
        return
    rows = [("NAME", "SCHEDULER", "WHERE", "WORKDIR", "DEFINED IN")]
    for n, t in sorted(all_.items()):
        where = t.host or "this machine"
        rows.append((n, t.scheduler, where, t.remote_workdir if t.host else "-",
                     t.file or "built-in"))
    print_rows(rows)


@targets_group.command("add")
@click.argument("name")
@click.option("--host", default=None, help="SSH host or ~/.ssh/config alias (none: this machine).")
@click.option("--scheduler", type=click.Choice(["slurm", "local", "dask"]), default="slurm",
              help="What runs the bundles there.")
@click.option("--workdir", default=None, help="Work folder on the target (default "
              "~/.pushbutton-remote).")
@click.option("--python", "python", default=None, help="Python on the target (default python3).")
@click.option("--setup", multiple=True, help="A shell line run first, e.g. 'module load "
              "python/3.11' (repeatable).")
@click.option("--sbatch", default=None, help="Default sbatch options, e.g. \"--partition=short\".")
@click.option("--ssh-config", default=None, help="An ssh config file to use (ssh -F).")
@click.option("--project", "to_project", is_flag=True,
              help="Write to ./pushbutton-targets.toml instead of the user file.")
@click.option("--replace", is_flag=True, help="Overwrite a target of the same name.")
@click.option("--check/--no-check", default=False, help="Run `pb targets check` after adding.")
def targets_add(name, host, scheduler, workdir, python, setup, sbatch, ssh_config, to_project,
                replace, check):
    """Add (or --replace) a target."""
    from pushbutton.execution import targets as T
    body = {"scheduler": scheduler}
    for k, v in (("host", host), ("workdir", workdir), ("python", python),
                 ("ssh_config", ssh_config), ("sbatch", sbatch)):
        if v is not None:
            body[k] = v
    if setup:
        body["setup"] = list(setup)
    path = T.project_file() if to_project else T.user_file()
    t = T.validate(name, body, str(path))
    written = T.add(t, path, replace=replace)
    click.echo(f"target '{name}' written to {written}")
    if check:
        _report_check(name)


@targets_group.command("show")
@click.argument("name")
def targets_show(name):
    """A target as TOML."""
    from pushbutton.execution import targets as T
    t = T.get(name)
    click.echo(f"# {t.file or 'built-in'}")
    click.echo(t.to_toml(), nl=False)


@targets_group.command("check")
@click.argument("name")
def targets_check(name):
    """Verify SSH, the remote Python (>= 3.8), sbatch and a writable work folder."""
    _report_check(name)


def _report_check(name):
    from pushbutton.execution import targets as T
    t = T.get(name)
    click.echo(f"checking target '{name}' ({t.host or 'this machine'}, {t.scheduler}) ...")
    problems = T.check(t)
    if not problems:
        click.secho(f"target '{name}' is ready", fg="green")
        return
    for p in problems:
        click.secho(f"problem: {p.what}", fg="red")
        click.echo(f"  fix: {p.fix}")
    sys.exit(1)


@click.command("harvest")
@click.argument("experiment", required=False)
@click.option("--wait", is_flag=True, help="Keep harvesting until every task is done or failed.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this many "
              "seconds (the jobs keep running).")
def harvest_cmd(experiment, wait, timeout):
    """Pull finished results of runs on SLURM targets into the store (checksummed, resumable)."""
    from pushbutton.execution.slurm.sync import harvest
    from pushbutton.store.database import Store, find_root
    root = find_root()
    if root is None:
        raise click.ClickException("no pushbutton project here (no .pushbutton folder above)")
    store = Store(root, create=False)
    out = harvest(store, experiment, wait=wait, timeout=timeout)
    if not wait:  # a background harvester that died while bundles are out starts again
        from pushbutton.execution.slurm.runs import restart_harvester
        for name in out:
            pid = restart_harvester(store, store.experiment(name), name)
            if pid:
                click.echo(f"{name}: background harvester restarted (pid {pid})")
    if not out:
        click.echo("nothing to harvest: no bundles are out on a scheduler")
        return
    from pushbutton.execution.summary import failure_lines
    from pushbutton.store.failures import top_causes
    for name, s in out.items():
        c = s.get("counts", {})
        n = s.get("bundles_ingested", 0)
        click.echo(f"{name}: {s['status']}; {c.get('done', 0)} done, {c.get('failed', 0)} "
                   f"failed, {c.get('running', 0)} out, {c.get('pending', 0)} pending "
                   f"({n} bundle{'s' * (n != 1)} ingested this time)")
        for w in s.get("warnings") or []:
            click.secho(f"  warning: {w}", fg="yellow")
        if c.get("failed", 0):  # the top causes, one task each, as `pb run` ends
            for line in failure_lines(top_causes(store, store.experiment(name)), name,
                                      more_hint=f"pb status {name} --causes 0"):
                click.echo("  " + line)
            click.echo(f"  next: pb logs ID (a task above); fix, then pb retry {name}")


COMMANDS = [targets_group, harvest_cmd]
