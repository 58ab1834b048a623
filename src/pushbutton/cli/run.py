"""`pb init` and `pb run` (with --dry-run and --detach): start or resume an experiment."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from pushbutton.cli.progress import run_with_progress
from pushbutton.cli.project import spec_path


@click.command()
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


@click.command()
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
    path = spec_path(spec)
    exp = load(path)  # its store: at or above the spec's folder (created by the run if none)
    if not (checked or dry_run or detach):  # its import check runs while the run sets up
        from pushbutton.execution import preflight as pf
        exp.preflight_started = pf.start(exp)
    _say_store(exp, dry_run)
    for w in [] if checked else exp.figure_warnings():  # columns: known only in part before
        click.secho(f"warning: {w}", fg="yellow", err=True)
    if (dry_run or detach) and not checked:  # a plain run checks in exp.run(); before anything
        from pushbutton.execution.operations import preflight  # is registered
        preflight(exp, on, say=lambda w: click.secho(f"warning: {w}", fg="yellow", err=True))
    exp.preflight_done = checked or dry_run or detach
    if dry_run:
        return _dry_run(exp, on, workers, yes, rerun, rerun_failed, sbatch)
    if detach:
        return _detach(path, on, workers, message, rerun, rerun_failed, yes, sbatch, exp)
    t0 = time.time()
    summary = run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, sbatch,
                                quiet, wait)
    c = summary.get("counts", {})
    if summary.get("submitted") is not None:
        click.echo(summary.get("message", f"submitted {summary['submitted']} tasks"))
        if not wait:
            return
        summary["seconds"] = time.time() - t0
    if summary.get("submitted") is None and exp._store is not None:  # a local run, all over
        FINISHED.append(exp._store)  # committed and checkpointed: closed by leave_now
    _say_outcome(exp, c, summary)


# set when a local `pb run` is over: everything recorded and closed, so cli.main may end the
# process without the interpreter's teardown (tens of ms freeing modules; see leave_now)
FINISHED: list = []


def leave_now(code) -> None:
    """End a finished run's process now: its output flushed, no teardown. Safe whenever it
    is called: the run committed and closed its store before FINISHED was set, and a kill
    at any earlier point is what the run's crash safety is built for."""
    if not FINISHED:
        return
    try:
        for store in FINISHED:
            store.close()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a closed pipe: the normal exit would not print either
        pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _say_store(exp, dry_run):
    """Name the store on stderr when it is not the one at or above this folder (or is new),
    and warn when the store knows this experiment's name from another spec file."""
    from pushbutton.store import location
    from pushbutton.store.database import DIRNAME
    exists = (exp.project / DIRNAME / "state.sqlite").exists()
    note = location.note(exp.project, new=not exists)
    if note:
        if not exists and dry_run:
            note = f"store: {exp.project / DIRNAME} (a run would create it; none exists yet)"
        click.echo(note, err=True)
    if exists:
        from pushbutton.store.database import Store
        st = Store(exp.project, create=False, peek=True)
        try:
            eid = st.experiment(exp.name)
            other = exp.recorded_elsewhere(st, eid) if eid is not None else None
        finally:
            st.close()
        if other:
            click.secho(f"warning: experiment '{exp.name}' in the store {exp.project / DIRNAME} "
                        f"was run from {other}; this spec shares its name, so it shares its "
                        "tasks and results (give it another name to keep them apart)",
                        fg="yellow", err=True)


def _say_outcome(exp, c, summary):
    """The last lines of a run: counts, stale results, where to look next; exit 1 on failures."""
    from pushbutton.execution.summary import run_lines
    ref = _ref(exp)
    logs = "pb logs" if ref == exp.name else f"pb logs -e {ref}"
    for line in run_lines(exp.name, c, summary["seconds"], summary.get("failures"),
                          exp.resources, ref=ref):
        click.echo(line)
    stale_notes(exp, summary)
    click.echo(f"results: pb results {ref}   (store: {exp.store.dir})")
    click.echo(f"report:  pb report {ref}")
    if c.get("failed"):
        click.echo(f"next:    {logs} ID (a task above); fix, then pb retry {ref}")
        sys.exit(1)


def stale_notes(exp, summary) -> None:
    """Done results of another code version than this run's: kept, and said (on stderr) with
    the files that changed since, so that an edit that cannot change them (an analysis
    script, a README) is told from one that can."""
    spec = _short(exp.spec_file) if exp.spec_file else "SPEC"
    for version, s in (summary.get("stale") or {}).items():
        run = f", run {s['run']}" if s.get("run") else ""
        changed = s.get("changed")
        click.echo(f"note: {s['tasks']:,} results are from an earlier code version "
                   f"({version}{run})", err=True)
        if changed:
            names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more"
                                              if len(changed) > 5 else "")
            click.echo(f"      changed since: {names}", err=True)
        click.echo("      they are kept; if the change alters them, recompute them with",
                   err=True)
        click.echo(f"      pb run {spec} --rerun", err=True)


def _ref(exp) -> str:
    """How the next commands name the experiment: by name where its store is the one found
    from this folder, else by its spec file (whose folder leads to the store)."""
    from pushbutton.store import location
    if location.obvious(exp.project) or not exp.spec_file:
        return exp.name
    return _short(exp.spec_file)


def _short(spec_file) -> str:
    """A spec file as the shorter of its path relative to here and its absolute path."""
    path = str(Path(spec_file).resolve())
    rel = os.path.relpath(path)
    return rel if len(rel) < len(path) else path


def _dry_run(exp, on, workers, yes, rerun, rerun_failed, sbatch):
    """What a run would do; writes nothing (execution/dryrun.py)."""
    from pushbutton.execution import dryrun
    store = dryrun.open_peek(exp)
    try:
        c = dryrun.task_counts(exp, store, rerun, rerun_failed)
        click.echo(f"experiment {exp.name}: {dryrun.counts_line(c, rerun, rerun_failed)}")
        click.echo(f"space: {exp.space!r}")
        click.echo(f"runs: {exp.spec.function or exp.spec.command}  (in {exp.root})")
        r = exp.resources
        kinds = f" (on {', '.join(r.retry_on)})" if r.retries else ""  # which failures retry
        memory = f"{r.memory}MB" if r.memory else "none"
        click.echo(f"resources per task: timeout={r.timeout or 'none'} "
                   f"retries={r.retries}{kinds} cpus={r.cpus} memory={memory}")
        click.echo("first points:")
        for p in exp.space.head(5):
            click.echo("  " + json.dumps(p, ensure_ascii=False))
        for line in dryrun.bundles_lines(exp, on, c["to_run"], store, workers, sbatch):
            click.echo(line)
        busy = dryrun.running_line(exp, store)
        if busy:
            click.echo(f"note: {busy}")
    finally:
        if store is not None:
            store.close()
    note = dryrun.size_line(exp, yes)
    if note:
        click.echo(f"note: {note}")


def _detach(path, on, workers, message, rerun, rerun_failed, yes, sbatch, exp):
    import subprocess
    from pushbutton.execution.operations import register_locked
    # the space's first chunk is registered now, under the lock, so that a running driver's
    # spec and schedule are left alone; the detached run registers the rest as it runs
    from pushbutton.cli.progress import registration_progress
    _, lock, rest = register_locked(exp, yes=yes, registering=registration_progress())
    lock.release()
    if rest is not None:
        total = f"{rest.total:,}" if rest.total is not None else "?"
        click.echo(f"registered {rest.next:,}/{total} tasks; the run registers the rest as it "
                   "goes (`pb status` says how far)", err=True)
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


COMMANDS = [init, run]
