"""`pb report`: the HTML report of an experiment. Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pushbutton.cli.project import experiment_named, open_store, spec_path

SPEC_NAMES = ("experiment.toml", "pushbutton.toml")  # what spec_path looks for in a folder


@click.command()
@click.argument("experiment", required=False)
@click.option("-o", "--out", "outdir", type=click.Path(file_okay=False),
              help="Folder for report.html, figures/ and aggregated.csv "
                   "[default: .pushbutton/reports/<experiment>/]")
@click.option("--open", "open_browser", is_flag=True, help="Open the report in a web browser.")
@click.option("--strict", is_flag=True,
              help="Exit with status 1 when a figure cannot be drawn (the report is written).")
def report(experiment, outdir, open_browser, strict):
    """Write a self-contained HTML report (results, figures, failures, timing, provenance).

    EXPERIMENT is a name or a spec file / its folder (default: the latest experiment). Given a
    spec file, the report uses that file's [[figures]], [units] and description as they are
    now (no rerun needed after editing them). Works while a run is still going: the report
    then says it is partial. Figures that cannot be drawn are listed here and in the page.

    Example: pb report experiment.toml -o paper/figures-draft
    """
    from pushbutton.report import html as rep
    store = open_store(experiment)  # given a spec: the store at or above its folder
    spec, spec_file = _spec_of(experiment)
    eid, name = experiment_named(store, spec["name"] if spec else experiment)
    ctx = rep.context_from_store(store, eid, name, spec=spec, spec_file=spec_file)
    problems: list[str] = []
    path = rep.build(ctx, outdir or rep.default_outdir(store, name), problems=problems)
    click.echo(f"report: {path}")
    for p in problems:
        click.secho(f"warning: {p}", fg="yellow", err=True)
    if open_browser:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())
    if problems and strict:
        click.echo(f"{len(problems)} figure{'s' if len(problems) > 1 else ''} could not be "
                   "drawn (--strict)", err=True)
        sys.exit(1)


def _spec_of(experiment):
    """(spec as a dict, its file) when EXPERIMENT names a spec file or a folder holding one;
    the spec is validated as `pb run` does (its figure declarations included)."""
    p = Path(experiment) if experiment else None
    if p is None or not (p.is_file() or any((p / c).is_file() for c in SPEC_NAMES)):
        return None, None  # an experiment's name
    from pushbutton.spec import model as specmod
    path = spec_path(experiment)
    spec = specmod.validate(specmod.read_toml(path), file=str(path))
    return spec.model_dump(), str(path)


COMMANDS = [report]
