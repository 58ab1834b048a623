"""CLI: `pb cluster up|down|status|resize|ssh|list|templates` (clusters pushbutton builds; see
clusters/). `start`/`stop` stay as hidden aliases of up/down. Registered by cli/main.py through
COMMANDS."""
from __future__ import annotations

import json
import os
import sys

import click

from pushbutton.cli.tables import print_rows

_SIZE = "N, or GROUP=N for one node group (may repeat)"


@click.group("cluster")
def cluster_group():
    """Build SLURM clusters for your sweeps from templates (local, netns, ssh, gce, aws,
    openstack, or your own in pushbutton-clusters.toml) and run on them with --on NAME."""


def _up(template, name, nodes, cpus, memory, gres, options, dry_run, timeout, hosts=()):
    from pushbutton.clusters.lifecycle import up
    up(template, name, nodes=nodes, cpus=cpus, memory=memory, gres=gres, options=options,
       hosts=hosts, dry_run=dry_run, timeout=timeout, say=click.echo)


@cluster_group.command("up")
@click.argument("template")
@click.argument("name", required=False)
@click.option("--nodes", multiple=True, help=f"Number of nodes: {_SIZE}.")
@click.option("--cpus", multiple=True, help=f"CPUs per node: {_SIZE}.")
@click.option("--memory", multiple=True, help=f"Memory per node in MB: {_SIZE}.")
@click.option("--gres", multiple=True, help="GRES per node, e.g. gpu:1 (or GROUP=gpu:1).")
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="Provider ssh: a machine (SSH destination) of the cluster, one node each; "
              "repeat it (the first runs slurmctld).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A key of the provider's own table (netns subnet; ssh user, head; cloud "
              "region, image, size).")
@click.option("--dry-run", is_flag=True, help="Print what would be built (cloud: machine "
              "types, image, hourly cost) and stop.")
@click.option("--timeout", type=float, default=120, show_default=True,
              help="Seconds to wait for the nodes to take jobs.")
def cluster_up(template, name, nodes, cpus, memory, gres, hosts, options, dry_run, timeout):
    """Build cluster NAME (default: the template's name) from TEMPLATE, or resume it; register
    target NAME. Safe to repeat: a half-built cluster is finished."""
    _up(template, name, nodes, cpus, memory, gres, options, dry_run, timeout, hosts)


@cluster_group.command("start", hidden=True)
@click.argument("name")
@click.option("--template", default="local", show_default=True)
@click.option("--cpus", type=int, default=None)
@click.option("--memory", type=int, default=None)
@click.option("--timeout", type=float, default=120)
def cluster_start(name, template, cpus, memory, timeout):
    """Old form of `pb cluster up TEMPLATE NAME`."""
    _up(template, name, (), (str(cpus),) if cpus else (), (str(memory),) if memory else (),
        (), (), False, timeout)


@cluster_group.command("down")
@click.argument("name")
@click.option("--delete", is_flag=True, help="Also remove its state folder and its target.")
@click.option("--force", is_flag=True, help="With --delete: forget the cluster even when a "
              "machine cannot be reached (what is left there is named).")
def cluster_down(name, delete, force):
    """Stop cluster NAME's daemons and take its nodes away (`up` brings it back)."""
    from pushbutton.clusters.cluster import ClusterError
    from pushbutton.clusters.lifecycle import down
    if force and not delete:
        raise ClusterError("--force goes with --delete (it forgets the cluster)",
                           f"`pb cluster down {name} --delete --force`")
    down(name, delete=delete, say=click.echo, force=force)


@cluster_group.command("stop", hidden=True)
@click.argument("name")
@click.option("--delete", is_flag=True)
def cluster_stop(name, delete):
    """Old form of `pb cluster down`."""
    from pushbutton.clusters.lifecycle import down
    down(name, delete=delete, say=click.echo)


@cluster_group.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cluster_status(name, as_json):
    """Cluster NAME's nodes and their SLURM state (every cluster without NAME)."""
    from pushbutton.clusters.info import list_clusters, status
    if name is None:
        rows = [status(r["name"]) for r in list_clusters() if r["template"] != "?"]
    else:
        rows = [status(name)]
    if as_json:
        click.echo(json.dumps(rows if name is None else rows[0], indent=1))
        return
    if not rows:
        click.echo("no clusters; build one with `pb cluster up netns NAME --nodes 3`")
    for s in rows:
        c, far = s["controller"], s.get("remote")
        where = (f"slurmctld on {far['head']} (ssh {far['host'] or '?'})" if far else
                 "slurmctld " + (f"pid {c['slurmctld_pid']}" if c.get("slurmctld_pid") else
                                 "not running")
                 + (f" at {c.get('addr') or c.get('host')}:{c['ctld_port']}"
                    if c.get("ctld_port") else ""))
        click.echo(f"cluster {s['name']}: {s['state']} (template {s['template']}, provider "
                   f"{s['provider']}; {where})")
        power = any(n["power"] for n in s["nodes"])
        table = [("NODE", "GROUP", "STAGE", "ADDRESS", "SLURM", *(("POWER",) if power else ()),
                  "CPUS", "MEMORY", "GRES")]
        for n in s["nodes"]:
            table.append((n["name"], n["group"], n["stage"] + (" (leaving)" if n["leaving"]
                                                                else ""),
                          n["addr"] or "-", n["slurm"] + (f" ({n['reason']})" if n["reason"]
                                                          else ""),
                          *((n["power"] or "-",) if power else ()),
                          str(n["cpus"]), str(n["memory"]), n["gres"] or "-"))
        if s["nodes"]:
            print_rows(table)
        else:
            click.echo("  no nodes (`pb cluster resize NAME +1` adds one)")
        if s.get("elastic"):
            e = s["elastic"]
            click.echo(f"  elastic: SLURM starts nodes when jobs need them and stops them after "
                       f"{e['suspend_time']}s idle; log: {e['log']}")
        for p in s.get("problems", []):
            click.echo(f"  {p}")
        conf = (far["conf"] or "not set up yet") + f" on {far['head']}" if far else s["conf"]
        click.echo(f"  target: {s['target'] or '-'}   conf: {conf}")


@cluster_group.command("resize", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("change", required=False)
@click.option("--group", default=None, help="The node group to resize (default: the only one, "
              "or 'compute').")
@click.option("--timeout", type=float, default=120, show_default=True,
              help="Seconds to wait for new nodes to take jobs.")
@click.option("--drain-timeout", type=float, default=600, show_default=True,
              help="Seconds to wait for jobs on leaving nodes to end.")
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="Provider ssh: the machines the cluster should have, all of them (repeat "
              "it); hosts left out leave, new ones join.")
@click.option("--cpus", hidden=True, default=None)
def cluster_resize(name, change, group, timeout, drain_timeout, hosts, cpus):
    """Add or remove nodes: CHANGE is +K, -K or =K (0 is a legal size); an ssh cluster's
    machines are named with --host. SLURM sees new nodes at once; leaving nodes are drained
    first."""
    from pushbutton.clusters.cluster import ClusterError
    from pushbutton.clusters.resize import resize
    if cpus is not None:  # the old one-node form
        raise ClusterError("resize changes the number of nodes; a node's CPUs are set when the "
                           "cluster is built",
                           f"`pb cluster down {name} --delete`, then `pb cluster up TEMPLATE "
                           f"{name} --cpus {cpus}`")
    resize(name, change, group, hosts=hosts, timeout=timeout, drain_timeout=drain_timeout,
           say=click.echo)


@cluster_group.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("node", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--print", "print_only", is_flag=True,
              help="Print the `export SLURM_CONF=...` line (ssh, clouds: the ssh command) "
              "instead of starting a shell.")
def cluster_ssh(name, node, command, print_only):
    """A shell on cluster NAME (this host, with its SLURM_CONF), or inside NODE (netns: the
    node's namespace and hostname; ssh and clouds: over SSH to NODE, else to the head node).
    `pb cluster ssh NAME NODE -- CMD ARGS` runs a command instead (NODE '-': this host, or
    the head)."""
    import shlex
    from pushbutton.clusters.info import export_line, shell
    if node == "-":
        node = None
    if print_only and not _remote(name):
        click.echo(export_line(name))
        return
    argv, env = shell(name, node, command)
    if print_only:
        click.echo(shlex.join(argv))
        return
    if not command:
        where = f"ssh {argv[argv.index('-t') + 1] if '-t' in argv else argv[-1]}" \
            if _remote(name) else f"{export_line(name)}  # in {argv[-1]}"
        click.echo(f"{where}; exit to leave", err=True)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def _remote(name: str) -> bool:
    from pushbutton.clusters.state import existing, provider_for, template_of
    cl = existing(name)
    return provider_for(cl, template_of(cl)).controller() is not None


@cluster_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cluster_list(as_json):
    """Every cluster: name, template, provider, state, nodes ready, CPUs, target."""
    from pushbutton.clusters.info import list_clusters
    rows = list_clusters()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no clusters; build one with `pb cluster up netns NAME --nodes 3`")
        return
    table = [("NAME", "TEMPLATE", "PROVIDER", "STATE", "NODES", "CPUS", "TARGET")]
    for r in rows:
        table.append((r["name"], r["template"], r["provider"], r["state"],
                      f"{r['ready']}/{r['nodes']}", str(r["cpus"]), r["target"] or "-"))
    print_rows(table)


@cluster_group.command("templates")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cluster_templates(as_json):
    """The templates `pb cluster up` knows (built-in and from files) and where each is
    defined."""
    from pushbutton.clusters.info import templates
    from pushbutton.clusters.templates import files
    rows = templates()
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [("TEMPLATE", "PROVIDER", "NODES", "DEFINED IN")]
    for r in rows:
        table.append((r["name"], r["provider"], r["nodes"], r["defined"]))
    print_rows(table)
    click.echo("files read (later ones win): " + ", ".join(str(p) for p in files()))


@cluster_group.command("_power", hidden=True)
@click.argument("action", type=click.Choice(["resume", "suspend", "resume-fail"]))
@click.argument("hostlist")
@click.option("--dir", "folder", required=True, help="The cluster's state folder.")
def cluster_power(action, hostlist, folder):
    """What SLURM's power programs run (ResumeProgram, SuspendProgram, ResumeFailProgram of an
    elastic cluster): start or stop the nodes HOSTLIST names. Logs to the cluster's
    log/power.log."""
    from pushbutton.clusters.elastic import run as power
    sys.exit(power(action, folder, hostlist))


COMMANDS = [cluster_group]
