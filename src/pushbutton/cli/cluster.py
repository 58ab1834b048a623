"""CLI: `pb cluster start|list|stop|resize|ssh` (clusters pushbutton builds; see cluster.py).
Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import json
import os
import sys

import click

from pushbutton.cli.tables import print_rows


@click.group("cluster")
def cluster_group():
    """Build and run SLURM clusters for your sweeps (template: local, a one-host SLURM)."""


@cluster_group.command("start")
@click.argument("name")
@click.option("--template", default="local", show_default=True,
              help="What to build; 'local' is a one-host SLURM on this machine.")
@click.option("--cpus", type=int, default=None, help="CPUs of the node (default: this "
              "machine's).")
@click.option("--memory", type=int, default=None, help="Memory of the node in MB (default: 90% "
              "of this machine's).")
@click.option("--timeout", type=float, default=90, show_default=True,
              help="Seconds to wait for the node to become idle.")
def cluster_start(name, template, cpus, memory, timeout):
    """Start cluster NAME (build it the first time) and register target NAME."""
    from pushbutton.clusters.cluster import start
    start(name, template=template, cpus=cpus, memory=memory, timeout=timeout, say=click.echo)


@cluster_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cluster_list(as_json):
    """Every cluster: name, template, up/down, CPUs, target."""
    from pushbutton.clusters.cluster import list_clusters
    rows = list_clusters()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no clusters; start one with `pb cluster start NAME`")
        return
    table = [("NAME", "TEMPLATE", "STATE", "NODE", "CPUS", "TARGET")]
    for r in rows:
        table.append((r["name"], r["template"], "up" if r["up"] else "down", r["node"],
                      str(r["cpus"] if r["cpus"] is not None else "-"), r["target"]))
    print_rows(table)


@cluster_group.command("stop")
@click.argument("name")
@click.option("--delete", is_flag=True, help="Also remove its state folder and its target.")
def cluster_stop(name, delete):
    """Stop cluster NAME's daemons (by their pid files)."""
    from pushbutton.clusters.cluster import stop
    stop(name, delete=delete, say=click.echo)


@cluster_group.command("resize")
@click.argument("name")
@click.option("--cpus", type=int, required=True, help="The node's new CPU count.")
@click.option("--timeout", type=float, default=90, show_default=True,
              help="Seconds to wait for the node to come back.")
def cluster_resize(name, cpus, timeout):
    """Give cluster NAME's node N CPUs (restarts the SLURM daemons; jobs are kept)."""
    from pushbutton.clusters.cluster import resize
    resize(name, cpus, timeout=timeout, say=click.echo)


@cluster_group.command("ssh")
@click.argument("name")
@click.option("--shell", "shell", is_flag=True, help="Start $SHELL with SLURM_CONF set.")
def cluster_ssh(name, shell):
    """Reach cluster NAME: for the local template, the `export SLURM_CONF=...` line."""
    from pushbutton.clusters.cluster import Cluster, export_line
    line = export_line(name)
    if not shell:
        click.echo(line)
        return
    sh = os.environ.get("SHELL") or "/bin/sh"
    click.echo(f"{line}  # in a new {sh}; exit to leave", err=True)
    env = dict(os.environ, SLURM_CONF=str(Cluster(name).conf))
    sys.stdout.flush()
    os.execvpe(sh, [sh], env)


COMMANDS = [cluster_group]
