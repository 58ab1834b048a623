"""`pb report`: the HTML report of an experiment. Registered by cli/main.py through COMMANDS."""
from __future__ import annotations

from pathlib import Path

import click


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
    from pushbutton.core.errors import PushbuttonError
    from pushbutton.store.database import Store, find_root

    root = find_root()
    if root is None:
        raise PushbuttonError("no pushbutton project here or above; run `pb run SPEC.toml` first")
    store = Store(root)
    exps = store.experiments()
    if not exps:
        raise PushbuttonError("no experiments in this project yet; run one with `pb run SPEC`")
    name = experiment
    if name and name.endswith(".toml") and Path(name).is_file():
        from pushbutton.spec.model import read_toml
        name = read_toml(name).get("name", name)
    match = exps[-1] if name is None else next((e for e in exps if e["name"] == name), None)
    if match is None:
        raise PushbuttonError(f"no experiment '{name}' in this project; known: "
                              f"{', '.join(e['name'] for e in exps)}")
    ctx = rep.context_from_store(store, match["id"], match["name"])
    path = rep.build(ctx, outdir or rep.default_outdir(store.root, match["name"]))
    click.echo(f"report: {path}")
    if open_browser:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())


COMMANDS = [report]
