"""What most commands need first: the project's store and the experiment a user names."""
from __future__ import annotations

from pathlib import Path

from pushbutton.core.errors import PushbuttonError

SPEC_NAMES = ("experiment.toml", "pushbutton.toml")  # the spec a folder argument names


def open_store(what=None, create=False):
    """The store of the project here or above, or, when `what` names a spec file (or a folder
    holding one), the store at or above the spec's folder. Reading never creates one; `create`:
    a new one where a first run keeps it (store/location.py). It is named on stderr when it is
    not the one at or above this folder."""
    import click
    from pushbutton.store import location
    from pushbutton.store.database import Store, find_root
    spec = spec_named(what)
    start = spec.resolve().parent if spec else Path.cwd()
    root = find_root(start)
    new = root is None
    if new:
        if not create:
            where = f"at or above {start} (the folder of {what})" if spec else "here or above"
            raise PushbuttonError(f"no pushbutton store {where}; run `pb run SPEC.toml` "
                                  "or `pb init` first")
        root = location.home(start)
    note = location.note(root, new=new)
    if note:
        click.echo(note, err=True)
    return Store(root)


def spec_named(what) -> Path | None:
    """The spec file that `what` (an argument naming an experiment or a spec) names, if any."""
    if not what:
        return None
    p = Path(what)
    if p.is_dir():  # a folder holding a spec (a folder named like an experiment is not one)
        return next((p / c for c in SPEC_NAMES if (p / c).is_file()), None)
    if p.suffix == ".toml" and p.is_file():
        return p
    return None


def experiment_named(store, name):
    """(id, name) of the experiment called `name` (or named in the spec file `name`); default:
    the most recently created experiment."""
    exps = store.experiments()
    if not exps:
        raise PushbuttonError("no experiments in this project yet; run one with `pb run SPEC`")
    names = [e["name"] for e in exps]
    if name is None:
        return exps[-1]["id"], names[-1]
    spec = spec_named(name)
    if spec is not None:
        from pushbutton.spec.model import read_toml
        name = read_toml(spec).get("name", name)
    for e in exps:
        if e["name"] == name:
            if spec is not None:
                _same_spec(store, e, spec)
            return e["id"], name
    raise PushbuttonError(f"no experiment '{name}' in the store {store.dir}; known: "
                          f"{', '.join(names)}")


def spec_path(spec):
    """The spec file SPEC names: the file itself, or the experiment.toml of a folder."""
    p = Path(spec)
    if p.is_dir():
        for cand in SPEC_NAMES:
            if (p / cand).exists():
                return p / cand
        raise PushbuttonError(f"{p}: no experiment.toml in this folder; give the spec file")
    return p


def _same_spec(store, e: dict, spec: Path) -> None:
    """A spec given by file whose name the store knows from another spec file (that still
    exists) is named: two specs sharing a name share their tasks and results."""
    import click
    recorded = e["spec"].get("_spec_file")
    if recorded and Path(recorded) != spec.resolve() and Path(recorded).is_file():
        click.secho(f"warning: experiment '{e['name']}' in the store {store.dir} was run from "
                    f"{recorded}, not from {spec.resolve()}: what is shown is that spec's "
                    "(give this spec another name, or `pb init` a store in its folder)",
                    fg="yellow", err=True)
