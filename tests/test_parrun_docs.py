"""docs/PARRUN.md against the code: each supported form's dry run shows the lines the page
shows, and each refused script fails with the page's message, word for word."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "PARRUN.md"
FILES = {"ragged.py": {"groups.json": '[["a", "b"], ["c"], ["d", "e", "f"]]'}}
_BLOCK = re.compile(r"```python\n# (\S+\.py)\n((?:(?!```).)*)```\n```text\n\$ (pb parrun [^\n]*)\n"
                    r"((?:(?!```).)*)```", re.S)


def examples():
    text = DOC.read_text(encoding="utf-8")
    found = _BLOCK.findall(text)
    assert len(found) >= 20, "the page's examples were not found"
    return found


def _timeless(line: str) -> str:
    return re.sub(r": \d+(\.\d+)? m?s$| in \d+(\.\d+)? m?s$", " <time>", line)


@pytest.mark.parametrize("name,code,command,expected", examples(),
                         ids=[e[0] for e in examples()])
def test_the_page_says_what_the_code_does(tmp_path, name, code, command, expected):
    if "numpy" in code:
        pytest.importorskip("numpy")
    (tmp_path / name).write_text(code, encoding="utf-8")
    for f, content in FILES.get(name, {}).items():
        (tmp_path / f).write_text(content)
    argv = shlex.split(command)[1:]
    r = subprocess.run([sys.executable, "-m", "pushbutton", *argv], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    out = (r.stderr + r.stdout).replace(f"{tmp_path}/", "")
    want = expected.rstrip("\n").splitlines()
    if want[0].startswith("error:"):
        assert r.returncode == 2, out
        assert r.stderr.replace(f"{tmp_path}/", "").rstrip("\n").splitlines() == want
    else:
        assert r.returncode == 0, out
        got = [_timeless(ln) for ln in out.splitlines()]
        for line in want:
            assert _timeless(line) in got, f"{line!r} not in:\n{out}"
