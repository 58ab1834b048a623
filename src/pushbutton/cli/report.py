"""`pb report`: the HTML report of an experiment. Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import click

from pushbutton.cli.project import experiment_named, open_store


@click.command()
@click.argument("experiment", required=False)
@click.option("-o", "--out", "outdir", type=click.Path(file_okay=False),
              help="folder for report.html and figures/ (default: reports/<experiment>/)")
@click.option("--open", "open_browser", is_flag=True, help="open the report in a web browser")
def report(experiment, outdir, open_browser):
    """Write a self-contained HTML report (results, figures, failures, timing, provenance).

    EXPERIMENT is a name or a spec file (default: the latest experiment). Works while a run is
    still going: the report then says it is partial.
    """
    from pushbutton.report import html as rep
    store = open_store()
    eid, name = experiment_named(store, experiment)
    ctx = rep.context_from_store(store, eid, name)
    path = rep.build(ctx, outdir or rep.default_outdir(store.root, name))
    click.echo(f"report: {path}")
    if open_browser:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())


COMMANDS = [report]
