"""Errors of the environment get a message, not a traceback (issue 9, item 15): a read-only store
is readable (quickly), a full disk and a damaged database are explained."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from .conftest import pb, write

SPEC = 'name = "ro"\nfunction = "tasks:square"\n[space]\ngrid = {x = [1, 2, 3]}\n'


def _can_unshare() -> bool:
    """Mount namespaces (to make a folder really read-only, or really full, even for root)."""
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                       capture_output=True)
    return r.returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(),
                                   reason="needs mount namespaces (unshare -m) to make a real "
                                          "read-only or full file system")


def _in_namespace(setup: str, project, *args, timeout=60):
    """`pb ARGS` in a private mount namespace after the shell lines `setup` ($P: the project)."""
    script = f'set -e\n{setup}\ncd "$P"\nexec "$PY" -m pushbutton "$@"\n'
    t = time.monotonic()
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, P=str(project), PY=sys.executable))
    return r, time.monotonic() - t


READ_ONLY = 'mount --bind "$P" "$P"\nmount -o remount,ro,bind "$P"'


@needs_unshare
def test_read_only_store_is_readable_and_quick(project):
    write(project / "e.toml", SPEC)
    pb("run", "e.toml")
    for args, expect in ((["status"], "3 tasks, 100.0% finished"), (["results"], "ro: 3 rows"),
                         (["sql", "SELECT sum(y) AS s FROM results"], "14"),
                         (["history"], "finished"), (["status", "--json"], '"done": 3')):
        r, took = _in_namespace(READ_ONLY, project, *args)
        assert r.returncode == 0, r.stderr
        assert expect in r.stdout and took < 10, (args, took, r.stdout)
    # a command that has to write says so, at once
    r, took = _in_namespace(READ_ONLY, project, "run", "e.toml", "--rerun")
    assert r.returncode == 2 and took < 10
    assert "read-only" in r.stderr and "Traceback" not in r.stderr
    assert str(project / ".pushbutton") in r.stderr
    # nothing was created in the store while it was read-only (e.g. missing subfolders)
    shutil.rmtree(project / ".pushbutton" / "snapshots")
    r, _ = _in_namespace(READ_ONLY, project, "status")
    assert r.returncode == 0 and not (project / ".pushbutton" / "snapshots").exists()


@needs_unshare
def test_disk_full_is_a_message(project):
    """A 2 MB file system, nearly filled, holding the project: registering 20,000 tasks runs
    out of space."""
    setup = ('mkdir -p "$P/disk"\nmount -t tmpfs -o size=2m tmpfs "$P/disk"\n'
             'cp "$P/tasks.py" "$P/disk/"\n'
             'printf \'name = "full"\\nfunction = "tasks:square"\\n[space]\\n'
             'grid = {x = {range = [0, 20000]}}\\n\' > "$P/disk/e.toml"\n'
             'head -c 1400000 /dev/zero > "$P/disk/filler"\n'
             'P="$P/disk"')
    r, _ = _in_namespace(setup, project, "run", "e.toml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "disk full" in r.stderr and "Traceback" not in r.stderr
    assert f"{project}/disk" in r.stderr and "df -h" in r.stderr


def test_damaged_database_is_a_message(project):
    write(project / "e.toml", SPEC)
    pb("run", "e.toml")
    db = project / ".pushbutton" / "state.sqlite"
    with open(db, "r+b") as f:
        f.write(b"this is not sqlite at all")
    for args in (["status"], ["results"], ["run", "e.toml"], ["history"]):
        r = pb(*args, check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "state.sqlite is damaged" in r.stderr and "pb doctor" in r.stderr
    r = pb("status", check=False, env={"PB_DEBUG": "1"})
    assert r.returncode == 2 and "Traceback" in r.stderr and "is damaged" in r.stderr


def test_output_file_in_a_missing_folder_is_a_message(project):
    write(project / "e.toml", SPEC)
    pb("run", "e.toml")
    r = pb("results", "--format", "json", "-o", project / "nope" / "out.json", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(project / "nope" / "out.json") in r.stderr
