import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder with the test task modules, as the working directory."""
    for f in (HERE / "tasks").iterdir():
        if f.suffix == ".py":
            shutil.copy(f, tmp_path / f.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pb(*args, cwd=None, check=True, timeout=120, env=None):
    """Run the real CLI in a subprocess, as a user would."""
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
