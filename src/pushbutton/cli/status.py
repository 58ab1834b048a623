"""Following experiments: `pb status`, `pb watch`, `pb history`, `pb show`."""
from __future__ import annotations

import json
import time

import click

from pushbutton.cli.progress import follow
from pushbutton.cli.project import experiment_named, open_store
from pushbutton.cli.tables import duration


@click.command()
@click.argument("experiment", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--causes", type=click.IntRange(min=0), default=5,
              help="Top causes of failures shown (0: all).")
def status(experiment, as_json, causes):
    """Counts per state, rate, ETA and the top causes of failures."""
    from pushbutton.execution.operations import status as st
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    s = st(store, eid, name, causes=causes)
    if as_json:
        click.echo(json.dumps(s, default=str))
        return
    _print_status(s)


def _print_status(s):
    c = s["counts"]
    parts = []
    for k, v in c.items():
        if k == "running" and v:  # running: what workers are inside of; the rest waits
            started, queued = s.get("started", v), s.get("queued", 0)
            where = "on SLURM: queued or running" if s.get("out_on_slurm") else \
                "handed out, not started"
            parts += ([f"running {started:,}"] if started else []) + \
                ([f"queued {queued:,} ({where})"] if queued else [])
        elif v:
            parts.append(f"{k} {v:,}")
    state = "running" if s["active"] else (s["last_run_status"] or "not run")
    click.echo(f"{s['experiment']}: {s['total']:,} tasks, {100 * s['progress']:.1f}% finished "
               f"[{state}]")
    click.echo("  " + ", ".join(parts or ["no tasks"]))
    if s["rate_per_s"]:
        click.echo(f"  rate {s['rate_per_s']:,.1f} tasks/s, ETA {duration(s['eta_s'])}")
    if s["failures"]:
        from pushbutton.execution.summary import failure_lines
        for line in failure_lines(s["causes"], s["experiment"],
                                  more_hint=f"pb status {s['experiment']} --causes 0"):
            click.echo("  " + line)
    if state == "interrupted":
        click.echo("  its driver is gone (killed?); `pb run` resumes it")
    if s.get("out_on_slurm") and not s.get("harvester_down"):
        click.echo(f"  {s['out_on_slurm']} bundles out on SLURM; `pb harvest {s['experiment']}` "
                   "(or the background harvester) brings results in")
    if s.get("harvester_down"):
        click.echo(f"  harvester not running — `pb harvest {s['experiment']}` or "
                   f"`pb watch {s['experiment']}` restarts it")


@click.command()
@click.argument("experiment", required=False)
@click.option("--interval", default=1.0, help="Seconds between updates.")
def watch(experiment, interval):
    """Follow a running experiment until it stops."""
    from pushbutton.execution.operations import status as st
    from pushbutton.execution.slurm.runs import restart_harvester
    store = open_store(experiment)
    eid, name = experiment_named(store, experiment)
    pid = restart_harvester(store, eid, name)
    if pid:
        click.echo(f"{name}: the background harvester was not running; restarted (pid {pid})",
                   err=True)
    follow(store, eid, name, interval)
    _print_status(st(store, eid, name))


@click.command()
@click.argument("experiment", required=False)
def history(experiment):
    """Runs with their messages, code versions and outcomes."""
    store = open_store(experiment)
    eid = experiment_named(store, experiment)[0] if experiment else None
    for r in store.runs(eid):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))
        dur = duration(r["ended"] - r["started"]) if r["ended"] else \
            ("-" if r["status"] == "interrupted" else "...")
        click.echo(f"run {r['id']:>4}  {when}  {r['experiment']:<20} {r['status'] or '':<11} "
                   f"{dur:>7}  {r['target'] or '':<10} {r['code_version'] or '':<20} "
                   f"{r['message'] or ''}")


@click.command()
@click.argument("what", required=False)
def show(what):
    """Details of an experiment (spec, last run's provenance) or of a task (by id prefix)."""
    store = open_store(what)
    exps = store.experiments()
    names = [e["name"] for e in exps]
    if what is None or what in names:
        eid, name = experiment_named(store, what)
        spec = next(e["spec"] for e in exps if e["id"] == eid)
        click.echo(f"experiment {name}")
        click.echo(json.dumps({k: v for k, v in spec.items() if not k.startswith("_")},
                              indent=2, default=str))
        runs = store.runs(eid)
        if runs:
            p = dict(runs[-1]["provenance"])
            p.pop("git_diff", None)
            p.pop("spec", None)
            click.echo("last run provenance:")
            click.echo(json.dumps(p, indent=2, default=str))
        return
    from pushbutton.execution.operations import logs as lg
    t = lg(store, None, what)
    click.echo(json.dumps({k: v for k, v in t.items() if k not in ("stdout", "stderr")},
                          indent=2, default=str, ensure_ascii=False))


COMMANDS = [status, watch, history, show]
