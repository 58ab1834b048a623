"""Projects for the pb ui tests, made as a user makes them (`pb run` in a subprocess), with
hostile text in parameter values, metric names, messages and logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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




class UiServer:
    """`pb ui --port 0` in a subprocess, as a user starts it; `url` is what it printed."""

    def __init__(self, root: Path, *args: str, timeout: float = 60):
        import re
        import select
        import time
        self.proc = subprocess.Popen([sys.executable, "-m", "pushbutton", "ui", "--port", "0",
                                      *args],
                                     cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                m = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=(\S+)", line)
                if m:
                    self.url, self.base, self.token = m.group(0), m.group(1), m.group(3)
                    self.port = int(m.group(2))
                    return
            if self.proc.poll() is not None:
                break
        self.close()
        raise AssertionError(f"pb ui did not print its address: {line!r} "
                             f"{self.proc.stderr.read() if self.proc.stderr else ''}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def add_hostile_experiment(root: Path) -> None:
    """An experiment row with a hostile name (the path-name rule keeps `pb run` from making
    one; the dashboard does not trust the store to hold only such names)."""
    import sqlite3
    import time
    db = sqlite3.connect(root / ".pushbutton" / "state.sqlite", timeout=30)
    db.execute("INSERT INTO experiments(name, spec, created) VALUES (?,?,?)",
               (HOSTILE, json.dumps({"name": HOSTILE, "description": SCRIPT_END}),
                time.time() - 10))
    db.commit()
    db.close()
