"""The `pushbutton` / `pb` command line. Heavy imports happen inside commands, so `pb --help`
and `pb status` start fast."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from pushbutton.core.errors import PushbuttonError


def _store(create=False):
    from pushbutton.store.database import Store, find_root
    root = find_root()
    if root is None:
        if not create:
            raise PushbuttonError("no pushbutton project here or above; run `pb run SPEC.toml` "
                                  "or `pb init` first")
        root = Path.cwd()
    return Store(root)


def _exp_name(store, name):
    """Default: the most recently created experiment."""
    exps = store.experiments()
    if not exps:
        raise PushbuttonError("no experiments in this project yet; run one with `pb run SPEC`")
    names = [e["name"] for e in exps]
    if name is None:
        return exps[-1]["id"], names[-1]
    if name.endswith(".toml") and Path(name).exists():
        from pushbutton.spec.model import read_toml
        name = read_toml(name).get("name", name)
    for e in exps:
        if e["name"] == name:
            return e["id"], name
    raise PushbuttonError(f"no experiment '{name}' in this project; known: {', '.join(names)}")


def _spec_path(spec):
    p = Path(spec)
    if p.is_dir():
        for cand in ("experiment.toml", "pushbutton.toml"):
            if (p / cand).exists():
                return p / cand
        raise PushbuttonError(f"{p}: no experiment.toml in this folder; give the spec file")
    return p


def _fmt_s(s):
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pushbutton")
def cli():
    """pushbutton: state what to compute, press one button, get one results table."""


@cli.command()
@click.option("--example", is_flag=True, help="Also write a starter experiment.toml + task.py.")
def init(example):
    """Create a project store (.pushbutton/) in this folder."""
    from pushbutton.store.database import Store
    Store(Path.cwd())
    click.echo(f"initialised pushbutton project in {Path.cwd() / '.pushbutton'}")
    if example:
        from pushbutton.spec.starter import write_starter
        for p in write_starter(Path.cwd()):
            click.echo(f"wrote {p}")


@cli.command()
@click.argument("spec")
@click.option("--on", "on", default=None, help="Target: local (default) or a named target.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes.")
@click.option("-m", "--message", default=None, help="What this run is for (kept in history).")
@click.option("--rerun", is_flag=True, help="Run every task again, done ones included.")
@click.option("--rerun-failed", is_flag=True, help="Run failed tasks again.")
@click.option("--dry-run", is_flag=True, help="Show size, first points and bundling; run nothing.")
@click.option("--detach", is_flag=True, help="Keep running after the terminal closes.")
@click.option("--yes", is_flag=True, help="Confirm a space larger than run.max_tasks.")
@click.option("--sbatch", default=None, help="Extra sbatch options, e.g. \"--gres=gpu:1\".")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--wait", is_flag=True, help="On a scheduler target: wait until every result is in.")
@click.option("--checked", is_flag=True, hidden=True)  # a detached run: its starter checked it
def run(spec, on, workers, message, rerun, rerun_failed, dry_run, detach, yes, sbatch, quiet,
        wait, checked):
    """Run (or resume) the experiment in SPEC (a .toml file or a folder holding one)."""
    from pushbutton.experiment import load
    path = _spec_path(spec)
    exp = load(path, project=_store(create=True).root)
    if (dry_run or detach) and not checked:  # a plain run checks in exp.run(); before anything
        from pushbutton.execution.operations import preflight  # is registered
        preflight(exp, on, say=lambda w: click.secho(f"warning: {w}", fg="yellow", err=True))
    exp.preflight_done = checked or dry_run or detach
    if dry_run:
        return _dry_run(exp, workers, yes)
    if detach:
        return _detach(path, on, workers, message, rerun, rerun_failed, yes, sbatch, exp)
    t0 = time.time()
    summary = _run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, sbatch,
                                 quiet)
    c = summary.get("counts", {})
    if summary.get("submitted") is not None:
        click.echo(summary.get("message", f"submitted {summary['submitted']} tasks"))
        if not wait:
            return
        c = _follow(exp.store, exp.store.experiment(exp.name), exp.name)
        summary["seconds"] = time.time() - t0
    click.echo(f"{exp.name}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
               f"{c.get('pending', 0) + c.get('running', 0)} not run "
               f"({summary['seconds']:.1f}s this run)")
    for version, n in (summary.get("stale") or {}).items():
        click.echo(f"note: {n:,} results were computed by code version {version}, not the "
                   f"current one; `pb run ... --rerun` recomputes them", err=True)
    click.echo(f"results: pb results {exp.name}   (store: {exp.store.dir})")
    click.echo(f"report:  pb report {exp.name}")
    if c.get("failed"):
        click.echo(f"failures: pb status {exp.name}; pb logs TASK; pb retry {exp.name}")
        sys.exit(1)


def _run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, sbatch, quiet):
    if quiet or not sys.stderr.isatty() and os.environ.get("PB_PROGRESS") != "1":
        last = [time.time()]

        def progress(done, total, failed, elapsed):  # a line every 10 s in logs
            if time.time() - last[0] > 10:
                last[0] = time.time()
                if not quiet:
                    click.echo(f"{done}/{total} done ({failed} failed) {elapsed:.0f}s", err=True)
        return exp.run(on=on, workers=workers, message=message, rerun=rerun,
                       rerun_failed=rerun_failed, yes=yes, progress=progress, sbatch=sbatch)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failed]}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  transient=False) as bar:
        tid = bar.add_task(exp.name, total=None, rate="", failed="")

        def progress(done, total, failed, elapsed):
            rate = f"{done / elapsed:,.0f} tasks/s" if elapsed > 0 else ""
            bar.update(tid, completed=done, total=total, rate=rate,
                       failed=f"[red]{failed} failed" if failed else "")
        return exp.run(on=on, workers=workers, message=message, rerun=rerun,
                       rerun_failed=rerun_failed, yes=yes, progress=progress, sbatch=sbatch)


def _dry_run(exp, workers, yes):
    from pushbutton.execution import bundling
    n = len(exp.space)
    click.echo(f"experiment {exp.name}: {n:,} tasks")
    click.echo(f"space: {exp.space!r}")
    click.echo(f"runs: {exp.spec.function or exp.spec.command}  (in {exp.root})")
    r = exp.resources
    click.echo(f"resources per task: timeout={r.timeout or 'none'} retries={r.retries} "
               f"cpus={r.cpus} memory={str(r.memory) + 'MB' if r.memory else 'none'}")
    click.echo("first points:")
    for p in exp.space.head(5):
        click.echo("  " + json.dumps(p, ensure_ascii=False))
    w = workers or exp.run_options.workers or os.cpu_count()
    sizes = bundling.describe(n, w, exp.run_options.bundle_size)
    shown = ", ".join(str(s) for s in sizes[:8]) + (", ..." if len(sizes) > 8 else "")
    click.echo(f"bundling on local ({w} workers): {len(sizes)} bundles of {shown} tasks "
               "(handed out as workers free up)")
    try:
        exp.space.check_size(limit=exp.run_options.max_tasks, confirm=yes)
    except PushbuttonError as e:
        click.echo(f"note: {e}")


def _detach(path, on, workers, message, rerun, rerun_failed, yes, sbatch, exp):
    import subprocess
    from pushbutton.execution.operations import register_locked
    # registered now, so that `pb status` knows the tasks at once; under the lock, so that a
    # running driver's spec and schedule are left alone
    register_locked(exp, yes=yes)[1].release()
    argv = [sys.executable, "-m", "pushbutton", "run", str(Path(path).resolve()), "--quiet",
            "--checked"]
    for flag, val in (("--on", on), ("-j", workers), ("-m", message), ("--sbatch", sbatch)):
        if val is not None:
            argv += [flag, str(val)]
    argv += [f for f, v in (("--rerun", rerun), ("--rerun-failed", rerun_failed),
                            ("--yes", yes)) if v]
    log = exp.store.dir / "logs" / f"driver-{exp.name}-{int(time.time())}.log"
    with open(log, "ab") as f:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             start_new_session=True, cwd=os.getcwd())
    eid = exp.store.experiment(exp.name)
    (exp.store.dir / "locks" / f"{eid}.detached").write_text(str(p.pid))
    click.echo(f"running {exp.name} in the background (pid {p.pid}); log: {log}")
    click.echo(f"follow: pb watch {exp.name}   stop: pb cancel {exp.name}")


@cli.command()
@click.argument("experiment", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(experiment, as_json):
    """Counts per state, rate and ETA."""
    from pushbutton.store.integrity import check_state
    from pushbutton.execution.operations import status as st
    store = _store()
    eid, name = _exp_name(store, experiment)
    check_state(store, eid)  # counts from a damaged state database are not shown
    s = st(store, eid, name)
    if as_json:
        click.echo(json.dumps(s, default=str))
        return
    _print_status(s)


def _print_status(s):
    c = s["counts"]
    parts = [f"{k} {v:,}" for k, v in c.items() if v]
    state = "running" if s["active"] else (s["last_run_status"] or "not run")
    click.echo(f"{s['experiment']}: {s['total']:,} tasks, {100 * s['progress']:.1f}% finished "
               f"[{state}]")
    click.echo("  " + ", ".join(parts or ["no tasks"]))
    if s["rate_per_s"]:
        click.echo(f"  rate {s['rate_per_s']:,.1f} tasks/s, ETA {_fmt_s(s['eta_s'])}")
    if s["failures"]:
        click.echo("  failures: " + ", ".join(f"{k or '?'} {v}" for k, v in
                                              s["failures"].items()))
    if state == "interrupted":
        click.echo("  its driver is gone (killed?); `pb run` resumes it")
    if s.get("harvester_down"):
        click.echo(f"  harvester not running — `pb harvest {s['experiment']}` or "
                   f"`pb watch {s['experiment']}` restarts it")


@cli.command()
@click.argument("experiment", required=False)
@click.option("--interval", default=1.0, help="Seconds between updates.")
def watch(experiment, interval):
    """Follow a running experiment until it stops."""
    from pushbutton.execution.operations import status as st
    from pushbutton.execution.slurm.submit import restart_harvester
    store = _store()
    eid, name = _exp_name(store, experiment)
    pid = restart_harvester(store, eid, name)
    if pid:
        click.echo(f"{name}: the background harvester was not running; restarted (pid {pid})",
                   err=True)
    _follow(store, eid, name, interval)
    _print_status(st(store, eid, name))


def _follow(store, eid, name, interval=1.0) -> dict:
    """A progress bar until no driver runs and nothing is out on a scheduler (each status call
    also harvests what a scheduler finished)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeRemainingColumn
    from pushbutton.execution.operations import status as st
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty()) as bar:
        tid = bar.add_task(name, total=None, info="")
        while True:
            s = st(store, eid, name)
            c = s["counts"]
            bar.update(tid, total=s["total"], completed=c["done"] + c["failed"],
                       info=f"{c['failed']} failed" if c["failed"] else "")
            if s.get("starting"):  # a detached driver that has not recorded its run yet
                pass  # (its counts, e.g. before a --rerun resets them, are not its own yet)
            elif not (c["pending"] + c["running"]) or not (s["active"]
                                                           or _remote_pending(store, eid)):
                return c
            time.sleep(interval)


def _remote_pending(store, eid):
    return store.db.execute("SELECT count(*) FROM bundles WHERE exp=? AND backend='slurm' AND "
                            "state IN ('created','submitted')", (eid,)).fetchone()[0] > 0


@cli.command()
@click.argument("task")
@click.option("-e", "--experiment", default=None)
def logs(task, experiment):
    """A task's stdout, stderr and failed attempts (TASK = id or a unique prefix)."""
    from pushbutton.execution.operations import logs as lg
    store = _store()
    eid = _exp_name(store, experiment)[0] if experiment else None
    out = lg(store, eid, task)
    click.echo(f"task {out['task']} [{out['state']}] {json.dumps(out['params'], ensure_ascii=False)}")
    for a in out["attempts"]:
        click.echo(f"-- attempt {a['n']} (bundle {a['bundle']}): {a['kind']}: {a['error']} (host {a['host']})")
        if a["traceback"]:
            click.echo(a["traceback"].rstrip())
    click.echo("-- stdout --")
    click.echo(out["stdout"].rstrip())
    click.echo("-- stderr --")
    click.echo(out["stderr"].rstrip())


@cli.command()
@click.argument("experiment", required=False)
@click.option("--run/--no-run", "do_run", default=True, help="Run them now (needs the spec).")
def retry(experiment, do_run):
    """Run the failed tasks again."""
    store = _store()
    eid, name = _exp_name(store, experiment)
    spec_file = json.loads(store.db.execute("SELECT spec FROM experiments WHERE id=?", (eid,))
                           .fetchone()[0]).get("_spec_file")
    if do_run and spec_file and Path(spec_file).exists():
        from pushbutton.experiment import load
        exp = load(spec_file, project=store.root)
        summary = _run_with_progress(exp, None, None, "retry failed", False, True, False, None,
                                     False)
        c = summary.get("counts", {})
        click.echo(f"{name}: {c.get('done', 0)} done, {c.get('failed', 0)} failed")
        return
    with store.tx():
        n = store.db.execute("UPDATE tasks SET state='pending', attempt0=attempts WHERE "
                             "exp=? AND state='failed'", (eid,)).rowcount
    click.echo(f"{n} failed tasks of {name} marked pending; run the experiment again to run them")


@cli.command()
@click.argument("experiment", required=False)
def cancel(experiment):
    """Stop a running experiment; what is not done is marked cancelled (resumable)."""
    from pushbutton.execution.operations import cancel as cc
    store = _store()
    eid, name = _exp_name(store, experiment)
    r = cc(store, eid, name)
    click.echo(f"{name}: {r['cancelled']} tasks cancelled" +
               (f", {r['slurm_bundles']} bundles cancelled on SLURM" if r["slurm_bundles"]
                else "") +
               (f", driver {r['stopped_driver']} stopped" if r["stopped_driver"] else ""))


@cli.command()
@click.argument("experiment", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "parquet", "json"]),
              default="table")
@click.option("--where", default=None,
              help="One SQL expression, e.g. \"n > 100 AND pb_status='done'\".")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
@click.option("--all", "all_tasks", is_flag=True, help="Include tasks not done.")
@click.option("--limit", default=50, help="Rows shown in table format (0: all).")
@click.option("--run", "run", type=int, default=None,
              help="The rows run N produced (see pb history), e.g. before a --rerun.")
def results(experiment, fmt, where, output, all_tasks, limit, run):
    """The results table: pb_task_id + parameters + metrics + pb_status, pb_error, ..."""
    from pushbutton.store.views import results as res
    store = _store()
    eid, name = _exp_name(store, experiment)
    if fmt == "table":  # only the rows shown are built: instant even at 10^6 tasks
        df = res(store, eid, name, where=where, all_tasks=all_tasks,
                 limit=(limit + 1) if limit else None, run=run)
        c = store.counts(eid)
        total = sum(c.values()) if all_tasks else c["done"]
        title = f"{name}: {total:,} rows" if not (where or run) else (
            f"{name}: rows" + (f" of run {run}" if run else "")
            + (f" where {where}" if where else ""))
        _print_frame(df.head(limit) if limit else df, 0, title=title)
        if limit and len(df) > limit:
            click.echo("... more rows: --limit 0 for all, or --format csv")
        return
    df = res(store, eid, name, where=where, all_tasks=True, run=run)
    if fmt == "csv":
        df.to_csv(output or sys.stdout, index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", lines=True, force_ascii=False)
        if output:
            Path(output).write_text(text)
        else:
            click.echo(text, nl=False)
    else:
        if not output:
            raise PushbuttonError("--format parquet needs -o FILE.parquet")
        df.to_parquet(output, index=False)
    if output:
        click.echo(f"wrote {len(df):,} rows to {output}", err=True)


def _print_frame(df, limit, title=None):
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    shown = df if not limit else df.head(limit)
    drop = [c for c in ("pb_error", "pb_host", "pb_run_id", "pb_finished_at")
            if c in shown.columns]
    shown = shown.drop(columns=drop)
    for c in shown.columns:
        t.add_column(str(c), overflow="fold")
    for row in shown.itertuples(index=False):
        t.add_row(*[_cell(v) for v in row])
    Console().print(t)
    if limit and len(df) > limit:
        click.echo(f"... {len(df) - limit:,} more rows (--limit 0, or --format csv)")


def _cell(v):
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    if isinstance(v, str) and len(v) == 20 and all(ch in "0123456789abcdef" for ch in v):
        return v[:8]
    return "" if v is None else str(v)


@cli.command()
@click.argument("query")
@click.option("-e", "--experiment", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def sql(query, experiment, fmt):
    """One read-only DuckDB query over the views results, tasks and series."""
    from pushbutton.store.views import sql as q
    store = _store()
    df = q(store, query, experiment=experiment)
    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", lines=True, force_ascii=False), nl=False)
    else:
        _print_frame(df, 200)


@cli.command()
@click.argument("experiment", required=False)
def history(experiment):
    """Runs with their messages, code versions and outcomes."""
    store = _store()
    eid = _exp_name(store, experiment)[0] if experiment else None
    for r in store.runs(eid):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))
        dur = _fmt_s(r["ended"] - r["started"]) if r["ended"] else \
            ("-" if r["status"] == "interrupted" else "...")
        click.echo(f"run {r['id']:>4}  {when}  {r['experiment']:<20} {r['status'] or '':<11} "
                   f"{dur:>7}  {r['target'] or '':<10} {r['code_version'] or '':<20} "
                   f"{r['message'] or ''}")


@cli.command()
@click.argument("what", required=False)
def show(what):
    """Details of an experiment (spec, last run's provenance) or of a task (by id prefix)."""
    store = _store()
    exps = store.experiments()
    names = [e["name"] for e in exps]
    if what is None or what in names:
        eid, name = _exp_name(store, what)
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


@cli.command()
@click.argument("experiment", required=False)
@click.option("--bundles", "bundles_only", is_flag=True,
              help="Only delete finished bundle folders (their per-task logs go too).")
@click.option("--yes", is_flag=True, help="Do not ask.")
def clean(experiment, bundles_only, yes):
    """Delete an experiment's data from the store (or only its finished bundle folders)."""
    from pushbutton.execution.operations import clean as cl
    store = _store()
    eid, name = _exp_name(store, experiment)
    if not bundles_only and not yes:
        click.confirm(f"delete every task, result and log of '{name}'?", abort=True)
    n = cl(store, eid, name, bundles_only=bundles_only)
    if bundles_only:
        click.echo(f"removed {n} bundle folders of {name}")
        return
    click.echo(f"deleted experiment {name}")


def _register_plugins():
    """Commands that live in their own modules (targets, harvest, report, ...)."""
    import importlib
    for mod in ("pushbutton.cli.targets", "pushbutton.cli.report", "pushbutton.cli.parrun",
                "pushbutton.cli.cluster", "pushbutton.cli.doctor"):
        try:
            m = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            m = None
        if m is None:
            continue
        module = importlib.import_module(mod)
        for c in getattr(module, "COMMANDS", []):
            cli.add_command(c)


def main(argv=None):
    import importlib.util  # noqa: F401  (used by _register_plugins)
    import sqlite3
    _register_plugins()
    try:
        cli.main(args=argv, prog_name="pb", standalone_mode=False)
    except click.exceptions.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("\ninterrupted; what finished is stored — run the same command to resume",
                       err=True)
            sys.exit(130)
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except PushbuttonError as e:
        click.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)
    except sqlite3.DatabaseError as e:  # a damaged state database, met by any command
        from pushbutton.store.integrity import db_error, is_damage
        from pushbutton.store.database import DIRNAME, find_root
        if not is_damage(e):  # full, read-only, locked: a message of its own
            from pushbutton.cli.errors import report
            report(e)
            raise
        root = find_root()
        from pushbutton.cli.errors import debug_traceback
        debug_traceback(e)
        click.secho(f"error: {db_error(root / DIRNAME if root else None, e)}", fg="red",
                    err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; what finished is stored — run the same command to resume",
                   err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `pb results | head`: the reader left; not an error
        sys.stderr.close()
        sys.exit(0)
    except Exception as e:  # the environment's errors (disk full, read-only, damaged database)
        from pushbutton.cli.errors import report
        report(e)  # exits with a message; returns only for a bug, whose traceback is needed
        raise


if __name__ == "__main__":
    main()
