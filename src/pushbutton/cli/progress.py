"""Progress while an experiment runs: the bar of `pb run` (a line every 10 s when stderr is not
a terminal) and the follower of `pb watch`."""
from __future__ import annotations

import os
import sys
import time

import click


def run_with_progress(exp, on, workers, message, rerun, rerun_failed, yes, sbatch, quiet,
                      wait=False):
    """exp.run(...) with a progress bar; its summary. The rate and the ETA count this run's
    tasks only (the driver's first call says how many were done before it)."""
    options = dict(on=on, workers=workers, message=message, rerun=rerun,
                   rerun_failed=rerun_failed, yes=yes, sbatch=sbatch, wait=wait, quiet=True)
    base = []  # tasks done or failed before this run

    def this_run(done, elapsed):
        if not base:
            base.append(done)
        n = done - base[0]
        return n, (f"{n / elapsed:,.1f} tasks/s" if elapsed > 0 and n else "")
    if quiet or not sys.stderr.isatty() and os.environ.get("PB_PROGRESS") != "1":
        last = [time.time()]

        def progress(done, total, failed, elapsed):  # a line every 10 s in logs
            n, rate = this_run(done, elapsed)
            if time.time() - last[0] > _every():
                last[0] = time.time()
                if not quiet:
                    of = f"{total:,}" if total is not None else "?"
                    click.echo(f"{done:,}/{of} done ({failed:,} failed) {elapsed:.0f}s"
                               + (f", {rate} this run" if rate else ""), err=True)
        return exp.run(progress=progress, registering=None if quiet else registration_progress(),
                       **options)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failed]}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  transient=False) as bar:
        tid = bar.add_task(exp.name, total=None, rate="", failed="")

        def progress(done, total, failed, elapsed):
            first = not base
            n, rate = this_run(done, elapsed)
            if first:  # the bar starts at what earlier runs did: no jump in its speed
                bar.reset(tid, total=total, completed=done, rate="", failed="")
                return
            bar.update(tid, completed=done, total=total, rate=rate,
                       failed=f"[red]{failed} failed" if failed else "")
        return exp.run(progress=progress, registering=registration_progress(bar), **options)


def _every() -> float:
    """Seconds between the plain progress lines written when stderr is not a terminal."""
    try:
        return float(os.environ.get("PB_PROGRESS_INTERVAL", 10))
    except ValueError:
        return 10.0


def registration_progress(bar=None):
    """A callback for the registration of a big space: a line on stderr, then the bar (or a
    line every 10 s, and one at the end). `total` is None while a where filter is counted."""
    state = {}

    def registering(done, total):
        if "t" not in state:
            state["t"] = time.time()
            click.echo(f"registering {total:,} tasks ..." if total is not None else
                       "registering the tasks (a where filter: counted as they register) ...",
                       err=True)
            if bar is not None:
                state["id"] = bar.add_task("registering", total=total, rate="", failed="")
        over = total is not None and done >= total
        if bar is not None:
            if "id" in state:
                bar.update(state["id"], completed=done, total=total)
                if over:
                    bar.remove_task(state.pop("id"))
        elif over and not state.get("over") or \
                not over and time.time() - state.get("last", state["t"]) > _every():
            state["last"] = time.time()
            state["over"] = over
            of = f"{total:,}" if total is not None else "?"
            click.echo(f"registered {done:,}/{of} tasks ({time.time() - state['t']:.0f}s)",
                       err=True)
    return registering


def follow(store, eid, name, interval=1.0) -> dict:
    """A progress bar until no driver runs and nobody harvests a scheduler (status only reads;
    the driver or the harvester writes); the counts at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeRemainingColumn
    from pushbutton.execution.operations import status
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty()) as bar:
        tid = bar.add_task(name, total=None, info="")
        while True:
            s = status(store, eid, name)
            c = s["counts"]
            bar.update(tid, total=s["total"], completed=c["done"] + c["failed"],
                       info=f"{c['failed']} failed" if c["failed"] else "")
            if s.get("starting"):  # a detached driver that has not recorded its run yet
                pass  # (its counts, e.g. before a --rerun resets them, are not its own yet)
            elif not (c["pending"] + c["running"]) or not s["harvesting"]:
                return c
            time.sleep(interval)

