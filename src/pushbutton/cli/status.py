"""Following experiments: `pb status`, `pb watch`, `pb history`, `pb show`."""
from __future__ import annotations

import json

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
    from pushbutton.execution.overview import status as st
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
    reg = s.get("registering")
    if reg:  # the tasks registered so far are not the total
        size = f"{reg['total']:,} tasks" if reg["total"] is not None else \
            "? tasks (a where filter: counted as they register)"
        part = f" of {reg['total']:,} points" if reg["total"] is not None else " points"
        click.echo(f"{s['experiment']}: {size}, registering: {reg['points']:,}{part} so far; "
                   f"{100 * s['progress']:.1f}% finished [{state}]")
    else:
        click.echo(f"{s['experiment']}: {s['total']:,} tasks, {100 * s['progress']:.1f}% "
                   f"finished [{state}]")
    click.echo("  " + ", ".join(parts or ["no tasks"]))
    if s["rate_per_s"] and c["pending"] + c["running"]:  # a finished one has no rate or ETA
        click.echo(f"  rate {s['rate_per_s']:,.1f} tasks/s, ETA {duration(s['eta_s'])}")
    if s["failures"]:
        from pushbutton.execution.summary import failure_lines
        for line in failure_lines(s["causes"], s["experiment"],
                                  more_hint=f"pb status {s['experiment']} --causes 0"):
            click.echo("  " + line)
    if state == "interrupted":
        click.echo("  its driver is gone (killed?); `pb run` resumes it")
    if reg and reg.get("interrupted"):
        click.echo("  its registration stopped part way; `pb run` registers the rest")
    if s.get("out_on_slurm") and not s.get("harvester_down"):
        n = s["out_on_slurm"]
        out = f"  {n:,} bundle{'s' * (n != 1)} out on SLURM; "
        if s.get("harvesting"):  # a background harvester (or the run's own process) is on it
            click.echo(out + f"results come in as they finish (follow: pb watch "
                       f"{s['experiment']})")
        else:  # over SSH nobody harvests unless asked (auto_harvest is off there)
            click.echo(out + f"`pb harvest {s['experiment']}` brings results in (--wait: "
                       "until all are in)")
    if s.get("harvester_down"):
        click.echo(f"  harvester not running — `pb harvest {s['experiment']}` or "
                   f"`pb watch {s['experiment']}` restarts it")


@click.command()
@click.argument("experiment", required=False)
@click.option("--interval", default=1.0, help="Seconds between updates.")
def watch(experiment, interval):
    """Follow a running experiment until it stops."""
    from pushbutton.execution.overview import status as st
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
    """Runs with their messages, code versions and outcomes (all experiments, or one).

    Each experiment's runs are numbered from 1, as its results' pb_run_id and
    `pb results --run N` number them. Times are UTC."""
    from pushbutton.cli.tables import iso_utc, print_rows
    store = open_store(experiment)
    eid = experiment_named(store, experiment)[0] if experiment else None
    runs = store.runs(eid)
    if not runs:
        click.echo("no runs yet; `pb run SPEC` starts one")
        return
    rows = [["experiment", "run", "started (UTC)", "status", "took", "target", "code version",
             "message"]]
    for r in runs:
        took = duration(r["ended"] - r["started"]) if r["ended"] else \
            ("-" if r["status"] == "interrupted" else "...")
        rows.append([r["experiment"], str(r["number"]), iso_utc(r["started"]), r["status"] or "",
                     took, r["target"] or "", r["code_version"] or "", r["message"] or ""])
    print_rows(rows)


@click.command()
@click.argument("what", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (a task).")
def show(what, as_json):
    """Details of an experiment (spec, last run's provenance) or of a task (by id prefix: its
    parameters, metrics, duration, host, attempts)."""
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
            for k in ("git_diff", "spec", "code_files"):
                p.pop(k, None)
            click.echo("last run provenance:")
            click.echo(json.dumps(p, indent=2, default=str))
        return
    _show_task(store, exps, what, as_json)


def _show_task(store, exps, prefix, as_json):
    """A task: its state, parameters, metrics (from the results table), duration, host, when it
    finished, its run and every failed attempt."""
    from pushbutton.cli.tables import cell, iso_utc, seconds
    from pushbutton.core import names as N
    from pushbutton.execution.operations import logs as lg
    from pushbutton.store.views import results
    t = lg(store, None, prefix)
    eid = store.find_task(None, t["task"])["exp"]
    name = next(e["name"] for e in exps if e["id"] == eid)
    df = results(store, eid, name, where=f"{N.TASK_ID} = '{t['task']}'")
    row = df.iloc[0].to_dict() if len(df) else {}
    metrics = {m: row.get(m) for m in df.attrs.get("metrics", []) if cell(row.get(m)) != ""}
    info = {"task": t["task"], "experiment": name, "state": t["state"], "params": t["params"],
            "metrics": metrics, "attempts": row.get(N.ATTEMPTS),
            "duration_s": row.get(N.DURATION), "host": t.get("host") or row.get(N.HOST),
            "node": t.get("node") or row.get(N.NODE),
            "finished_at": iso_utc(row.get(N.FINISHED_AT)) or None, "run": row.get(N.RUN_ID),
            "error_kind": t["error_kind"], "error": t["error"],
            "failed_attempts": [{k: a.get(k) for k in ("n", "kind", "error", "host", "node",
                                                        "bundle")}
                                for a in t["attempts"]]}
    from pushbutton.execution.taskdirs import task_folder
    info["folder"] = task_folder(store, t["task"])
    if as_json:
        click.echo(json.dumps(info, indent=2, default=_plain, ensure_ascii=False))
        return

    def pairs(d):
        return ", ".join(f"{k}={cell(v)}" for k, v in d.items()) or "-"
    click.echo(f"task {t['task']} of {name}: {t['state']}")
    click.echo(f"  parameters  {pairs(t['params'])}")
    if t["state"] == "done":
        click.echo(f"  metrics     {pairs(metrics)}")
    elif t["error"]:
        click.echo(f"  error       {t['error_kind']}: {t['error']}")
    facts = [f"{cell(info['attempts'])} attempt{'s' * (info['attempts'] != 1)}"
             if cell(info["attempts"]) else "",
             f"took {seconds(info['duration_s'])}" if info["duration_s"] == info["duration_s"]
             and info["duration_s"] is not None else "",
             f"on {info['host']}" if cell(info["host"]) else "",
             f"node {info['node']}" if cell(info["node"]) and info["node"] != info["host"]
             else "",
             f"finished {info['finished_at']}" if info["finished_at"] else "",
             f"run {cell(info['run'])}" if cell(info["run"]) else ""]
    click.echo("  ran         " + (", ".join(f for f in facts if f) or "not yet"))
    for a in t["attempts"]:
        click.echo(f"  attempt {a['n']} failed: {a['kind']}: {a['error']}"
                   + (f" (host {a['host']})" if a["host"] else ""))
    f = info["folder"]
    where = (f" (on {f['target']}" + (f", host {f['host']}" if f["host"] else "") + ")"
             if f["target"] else "" if f["exists"] else " (not made yet)")
    click.echo(f"  folder      {f['path']}{where}")
    click.echo(f"  log         pb logs {t['task'][:12]}")


def _plain(v):
    """numpy numbers and other values json cannot write."""
    try:
        return v.item()
    except AttributeError:
        return str(v)


COMMANDS = [status, watch, history, show]
