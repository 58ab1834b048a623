"""A markdown tutorial as steps a test runs in order, the way a reader would follow it.

Every fenced block of the page is one of:
* a file: a block whose first line is a comment naming it (`# estimators.py`): written as is;
* an edit: a ```diff block (`--- file` / `+++ file`, then lines with ` `, `-` or `+`): the
  `-` and ` ` lines must be found in the file exactly once and become the ` ` and `+` lines;
* a terminal session: a ```console block of `$ command` lines, each followed by the output it
  prints (stdout and stderr as a terminal shows them), compared as doctest compares (`...`
  matches anything, runs of white space are one). A command whose comment says
  `# exit status N` must exit with N; every other one with 0.
Any other block fails the test, so nothing on the page goes unrun. `<!-- test: NAME -->` starts
a part (the parts run in the page's order; a test may stop after one).
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)\n(.*?)^```\s*$", re.S | re.M)
PART = re.compile(r"<!-- test: (\S+) -->")
FILE_HEADER = re.compile(r"^(?:#|//) ([\w./-]+\.\w+)\s*$")
EXIT = re.compile(r"#.*\bexit status (\d+)")
CHECK = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Step:
    kind: str  # "file" | "edit" | "command"
    part: str
    line: int  # where the block starts in the page (for messages)
    path: str = ""
    text: str = ""  # a file's content; an edit's diff body
    command: str = ""
    want: str = ""
    status: int = 0


@dataclass
class Session:
    """Where the commands run: a folder (changed by `cd`), the environment, and the
    substitutions from what the page says to what this machine has (and back in outputs)."""
    cwd: Path
    env: dict
    subs: list = field(default_factory=list)  # (page text, text here) in commands
    back: list = field(default_factory=list)  # (text here, page text) in outputs
    timeout: float = 180
    transcript: list = field(default_factory=list)
    hooks: dict = field(default_factory=dict)  # first word(s) -> what runs instead (pip)

    def here(self, text: str) -> str:
        for page, local in self.subs:
            text = text.replace(page, local)
        return text

    def as_page(self, text: str) -> str:
        for local, page in self.back:
            text = text.replace(local, page)
        return text


def parse(markdown: str) -> list[Step]:
    parts = [(m.start(), m.group(1)) for m in PART.finditer(markdown)]
    steps = []
    for m in FENCE.finditer(markdown):
        lang, body = m.group(1), m.group(2)
        line = markdown.count("\n", 0, m.start()) + 1
        part = ([p for at, p in parts if at < m.start()] or ["main"])[-1]
        if lang == "console":
            steps += _commands(body, part, line)
        elif lang == "diff":
            path = re.search(r"^\+\+\+ (\S+)", body, re.M)
            if not path:
                raise ValueError(f"line {line}: a diff block needs a '+++ FILE' line")
            steps.append(Step("edit", part, line, path=path.group(1), text=body))
        else:
            first = body.split("\n", 1)[0]
            name = FILE_HEADER.match(first)
            if not name:
                raise ValueError(f"line {line}: a ```{lang} block that is neither a file (its "
                                 "first line a comment naming it), a diff nor a console "
                                 "session: the test cannot run it")
            steps.append(Step("file", part, line, path=name.group(1), text=body))
    return steps


def _commands(body: str, part: str, line: int) -> list[Step]:
    steps = []
    for i, text in enumerate(body.split("\n")):
        if text.startswith("$ "):
            cmd = text[2:]
            m = EXIT.search(cmd)
            steps.append(Step("command", part, line + 1 + i, command=cmd,
                              status=int(m.group(1)) if m else 0))
        elif steps:
            steps[-1].want += text + "\n"
        elif text.strip():
            raise ValueError(f"line {line + 1 + i}: output before any `$ command`")
    for s in steps:
        s.want = s.want.rstrip("\n") + ("\n" if s.want.strip() else "")
    return steps


def apply_diff(path: Path, body: str) -> None:
    """Apply the hunks of a diff block by text: each hunk's old lines must occur once."""
    text = path.read_text(encoding="utf-8")
    hunks = re.split(r"^@@.*\n", body, flags=re.M)[1:] or \
        [re.sub(r"\A(?:---|\+\+\+).*\n(?:(?:---|\+\+\+).*\n)?", "", body)]
    for hunk in hunks:
        old, new = [], []
        for ln in hunk.rstrip("\n").split("\n"):
            tag, rest = (ln[:1], ln[1:]) if ln else (" ", "")
            if tag in " -":
                old.append(rest)
            if tag in " +":
                new.append(rest)
        before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
        if text.count(before) != 1:
            raise AssertionError(f"{path.name}: the diff's old lines occur "
                                 f"{text.count(before)} times, not once:\n{before}")
        text = text.replace(before, after)
    path.write_text(text, encoding="utf-8")


def run(step: Step, s: Session, check: bool = True) -> str:
    """Run one step in the session; returns what a command printed (as the page shows it)."""
    if step.kind == "file":
        p = s.cwd / step.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(step.text, encoding="utf-8")
        return ""
    if step.kind == "edit":
        apply_diff(s.cwd / step.path, step.text)
        return ""
    cmd = s.here(step.command)
    words = shlex.split(cmd, comments=True)
    if words and words[0] == "cd":  # the session's folder, as a shell would keep it
        s.cwd = (s.cwd / words[1]).resolve()
        return ""
    for prefix, hook in s.hooks.items():
        if cmd.startswith(prefix):
            return hook(step, s)
    r = subprocess.run(["bash", "-c", cmd], cwd=s.cwd, env=s.env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=s.timeout)
    got = s.as_page(r.stdout)
    s.transcript.append((step, got, r.returncode))
    if check:
        where = f"line {step.line}: $ {step.command}"
        assert r.returncode == step.status, (
            f"{where}\nexited {r.returncode}, the page says {step.status}; it printed:\n{got}")
        if step.want and not CHECK.check_output(step.want, got, FLAGS):
            raise AssertionError(f"{where}\nthe page shows:\n{step.want}\nit printed:\n{got}")
    return got


def session_env(bin_dir: Path, home: Path, extra: dict | None = None) -> dict:
    """A reader's environment: `pb` and `python` on PATH, 80 columns, unbuffered output (so
    stdout and stderr interleave as in a terminal), own config and cache folders."""
    env = {k: v for k, v in os.environ.items() if k not in ("PUSHBUTTON_TARGETS",)}
    env.update({"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "80",
                "PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_CACHE_HOME": str(home / "cache"), "NO_COLOR": "1", "TERM": "dumb"})
    env.update(extra or {})
    return env
