"""Stores for the pb ui tests, made as a user makes them (`pb run` in a subprocess), and the
app over them (starlette's TestClient: real HTTP semantics, no socket)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HOSTILE = "<img src=x onerror=window.__pwned=1>"
SCRIPT_END = "</script><script>window.__pwned=2</script>"
QUOTES = "q\"uo'te"

TASKS = '''
import sys, time
import pushbutton

IMG = %r
END = %r
QUOTES = %r


def f(x, label, **_):
    time.sleep(float(__import__("os").environ.get("PB_UI_SLEEP", "0")))
    print("stdout of", x, label, END)
    print("stderr says", IMG, file=sys.stderr)
    if x == 3:
        raise ValueError("bad value " + IMG + " " + QUOTES)
    pushbutton.log(step=1, **{IMG: x})
    d = pushbutton.current_task().dir
    (d / "note.txt").write_text("file of " + str(x) + " " + IMG)
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "deep.txt").write_text("deep")
    if not (d / "out-link").exists():
        (d / "out-link").symlink_to("/etc/hostname")  # points out of the folder
    return {"score": x * 10, IMG: 0.5, "word": END}
''' % (HOSTILE, SCRIPT_END, QUOTES)


def pb(*args, cwd, check=True, timeout=120, env=None):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def make_project(root: Path, name: str = "sweep", xs=range(6), sleep: float = 0.0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "uitasks.py").write_text(TASKS)
    labels = json.dumps([HOSTILE, SCRIPT_END, QUOTES, "plain"])  # TOML takes JSON strings
    (root / "experiment.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        description = {json.dumps(HOSTILE)}
        function = "uitasks:f"
        [space]
        grid = {{ x = {list(xs)!r}, label = {labels} }}
        [resources]
        retries = 0
        """))
    return root


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A project whose sweep has run (done and failed tasks, hostile text in its parameters,
    metric names, messages and logs), and an experiment with a hostile name (the path-name
    rule keeps `pb run` from making one; the store is not trusted to hold only such names)."""
    import json
    import sqlite3
    import time
    root = make_project(tmp_path_factory.mktemp("ui") / "proj", name="sweep")
    pb("run", "experiment.toml", cwd=root, check=False)
    db = sqlite3.connect(root / ".pushbutton" / "state.sqlite")
    db.execute("INSERT INTO experiments(name, spec, created) VALUES (?,?,?)",
               (HOSTILE, json.dumps({"name": HOSTILE}), time.time() - 10))
    db.commit()
    db.close()
    return root


@pytest.fixture(scope="module")
def client(finished):
    from starlette.testclient import TestClient

    from pushbutton.ui.app import create_app
    token = "test-token-123"
    c = TestClient(create_app(finished, token), base_url="http://127.0.0.1")
    c.token = token
    c.get(f"/?token={token}", headers={"Accept": "text/html"})  # sets the cookie
    return c
