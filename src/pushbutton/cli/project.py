"""What most commands need first: the project's store and the experiment a user names."""
from __future__ import annotations

from pathlib import Path

from pushbutton.core.errors import PushbuttonError


def open_store(create=False):
    """The store of the project here or above; `create`: a new one in this folder if none."""
    from pushbutton.store.database import Store, find_root
    root = find_root()
    if root is None:
        if not create:
            raise PushbuttonError("no pushbutton project here or above; run `pb run SPEC.toml` "
                                  "or `pb init` first")
        root = Path.cwd()
    return Store(root)


def experiment_named(store, name):
    """(id, name) of the experiment called `name` (or named in the spec file `name`); default:
    the most recently created experiment."""
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


def spec_path(spec):
    """The spec file SPEC names: the file itself, or the experiment.toml of a folder."""
    p = Path(spec)
    if p.is_dir():
        for cand in ("experiment.toml", "pushbutton.toml"):
            if (p / cand).exists():
                return p / cand
        raise PushbuttonError(f"{p}: no experiment.toml in this folder; give the spec file")
    return p
