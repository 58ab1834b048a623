"""Values that used to be silently reinterpreted are refused (issue 9, item 11), and the memory
limit holds per task, not per bundle."""
import json
import sqlite3

import pytest

from pushbutton import Experiment, grid
from pushbutton.core.errors import SpecError

from .conftest import pb, write

BAD = [
    ("resources", "timeout = true", "resources.timeout"),          # was 1 s
    ("resources", 'timeout = "0s"', "resources.timeout"),          # was no timeout
    ("resources", "timeout = 0", "resources.timeout"),
    ("resources", 'memory = "512k"', "resources.memory"),          # was no limit
    ("resources", 'memory = "0.5MB"', "resources.memory"),         # was no limit
    ("resources", "memory = 0", "resources.memory"),               # was no limit
    ("resources", "memory = true", "resources.memory"),            # was 1 MB
    ("resources", 'retry_on = ["bogus"]', "resources.retry_on"),   # was never matched
    ("resources", "retries = true", "resources.retries"),          # was 1
    ("resources", "cpus = 0", "resources.cpus"),                   # was a ZeroDivisionError
    ("run", "bundle_size = -5", "run.bundle_size"),                # was one bundle
    ("run", "workers = -2", "run.workers"),                        # was one worker
    ("run", "workers = 0", "run.workers"),
    ("run", "max_tasks = 0", "run.max_tasks"),
]


@pytest.mark.parametrize("table,line,key", BAD, ids=[b[1] for b in BAD])
def test_bad_value_is_refused_with_file_key_and_fix(project, table, line, key):
    write(project / "e.toml", 'name = "v"\nfunction = "tasks:square"\n'
                              f'[space]\ngrid = {{x = [1]}}\n[{table}]\n{line}\n')
    r = pb("run", "e.toml", "--dry-run", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"e.toml: key '{key}'" in r.stderr and "fix:" in r.stderr, r.stderr


def test_good_values_still_read(project):
    write(project / "e.toml", 'name = "v"\nfunction = "tasks:square"\n[space]\ngrid = {x = [1]}\n'
                              '[resources]\ntimeout = "1m"\nmemory = "1.5GB"\n'
                              'retry_on = ["timeout", "memory"]\n[run]\nworkers = 2\n')
    r = pb("run", "e.toml", "--dry-run")
    assert "timeout=60.0" in r.stdout and "memory=1536MB" in r.stdout


def test_python_api_and_cli_flags(project):
    with pytest.raises(SpecError, match="timeout"):
        Experiment("a", function="tasks:square", space=grid(x=[1]), timeout=True)
    with pytest.raises(SpecError, match="did you mean 'timeout'"):
        Experiment("a", function="tasks:square", space=grid(x=[1]), retry_on=["timeot"])
    exp = Experiment("a", function="tasks:square", space=grid(x=[1]), root=project)
    with pytest.raises(SpecError, match="workers"):
        exp.run(workers=-2)
    write(project / "e.toml", 'name = "v"\nfunction = "tasks:square"\n[space]\ngrid = {x = [1]}\n')
    r = pb("run", "e.toml", "-j", "-2", check=False)
    assert r.returncode == 2 and "-2 is not in the range" in r.stderr


HOG = """
import os
_library = bytes(200 * 2 ** 20)   # what importing a big library holds (address space)
_kept = []

def hog(i, mb):
    block = bytes(mb * 2 ** 20)   # address space, not touched: cheap
    _kept.append(block)           # still held when the next task starts
    return {"mb": mb}
"""


def test_memory_limit_is_per_task(project):
    """Two tasks of one bundle each allocate just under the limit (the first after a big import,
    the second while the first's memory is still held): both succeed; one above it fails with
    kind memory. Before, the limit was set once per bundle, before the import."""
    write(project / "hog.py", HOG)
    write(project / "e.toml", 'name = "mem"\nfunction = "hog:hog"\n'
                              '[space]\nzip = {i = [0, 1, 2], mb = [270, 270, 330]}\n'
                              '[resources]\nmemory = "300MB"\n[run]\nworkers = 1\n'
                              'bundle_size = 3\n')
    r = pb("run", "e.toml", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = [json.loads(x) for x in pb("results", "--all", "--format", "json").stdout.splitlines()]
    by_mb = {(row["i"], row["mb"]): row for row in rows}
    assert by_mb[(0, 270)]["pb_status"] == "done" and by_mb[(1, 270)]["pb_status"] == "done"
    assert by_mb[(2, 330)]["pb_status"] == "failed"
    st = json.loads(pb("status", "--json").stdout)
    assert st["failures"] == {"memory": 1}
    con = sqlite3.connect(project / ".pushbutton" / "state.sqlite")
    assert con.execute("SELECT count(DISTINCT bundle) FROM tasks").fetchone()[0] == 1
    con.close()
