"""The driver's peak resident memory over a whole local run (core/memory.py).

A run's Python heap is small; what grew its RSS were the allocators under Arrow and DuckDB
keeping freed pages (Arrow's mimalloc pool, one glibc arena per allocating thread). A test of the
peak itself (a 27,000-task sweep under a bound between the old 186-189 MB and the new 170 MB)
passed alone and failed in a whole-suite run at 406 MB: the peak depends on what else the machine
does, so it is a benchmark figure (benchmarks/p3_scale.py prints it), not a test. What is tested
here is that the allocator settings leave results alone."""
import pytest


def test_release_and_tame_leave_results_alone():
    """tame() twice is harmless; release() with nothing to hand back is harmless; Arrow then
    allocates from the system pool (what malloc_trim reaches)."""
    from pushbutton.core import memory
    import pyarrow as pa
    memory.tame()
    memory.tame()
    a = pa.array(list(range(100_000)))
    memory.release()
    assert a.sum().as_py() == sum(range(100_000))
    assert pa.default_memory_pool().backend_name == "system"


def _ask(args, cwd, answer=True, **env):
    """`python ARGS` in `cwd` with the environment the user gave (no ARROW_DEFAULT_MEMORY_POOL)
    plus `env`; the JSON of its last line (a skip where this Arrow has no mimalloc pool to
    stay off)."""
    import json
    import os
    import subprocess
    import sys
    e = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=dict(e, **env),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    if not answer:
        return None
    got = json.loads(r.stdout.strip().splitlines()[-1])
    if got["mimalloc"] is None:
        pytest.skip("this Arrow has no mimalloc pool to stay off")
    return got


MIMALLOC = """
def mimalloc():  # what Arrow's mimalloc pool ever held; None: an Arrow built without it
    import pyarrow as pa
    try:
        return pa.mimalloc_memory_pool().max_memory()
    except NotImplementedError:
        return None
"""
RUN_AND_ASK = MIMALLOC + """
import json, os, sys
from pushbutton.experiment import load
exp = load("experiment.toml")
s = exp.run(yes=True)
import pyarrow as pa
print(json.dumps({"done": s["done"], "mimalloc": mimalloc(),
                  "system": pa.system_memory_pool().max_memory(),
                  "env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL")}))
"""


def test_run_keeps_arrow_and_parquet_off_mimalloc(tmp_path):
    """A run on the Arrow path (PB_SMALL_RUN=0) allocates nothing from mimalloc: the Parquet
    reader and writer take Arrow's C++ default pool, which `set_memory_pool` does not move, and
    mimalloc kept what they freed. The variable that moves it is set for the import only: the
    run's workers (the task reports what it sees) and the process after it do not have it."""
    (tmp_path / "experiment.toml").write_text(
        'name = "pool"\nfunction = "tasks:sees"\n[space]\n'
        'grid = { i = { range = [0, 3000] } }\n[run]\nworkers = 1\n')
    (tmp_path / "tasks.py").write_text(
        "import os\n\ndef sees(i):\n"
        "    return {'y': i, 'env': int('ARROW_DEFAULT_MEMORY_POOL' in os.environ)}\n")
    got = _ask(["-c", RUN_AND_ASK], tmp_path, PB_SMALL_RUN="0")
    assert got["done"] == 3000
    assert got["mimalloc"] == 0, got
    assert got["system"] > 0, got
    assert got["env"] is None
    from pushbutton.experiment import load
    df = load(str(tmp_path / "experiment.toml")).results()
    assert len(df) == 3000 and int(df["env"].sum()) == 0


EXPORT_AND_ASK = MIMALLOC + """
import json
from pushbutton.experiment import load
from pushbutton.store.export import export
exp = load("experiment.toml")
n = export(exp.store, exp.store.experiment("pool"), "pool", "csv", "out.csv")
print(json.dumps({"rows": n, "mimalloc": mimalloc()}))
"""


def test_export_keeps_arrow_off_mimalloc(tmp_path):
    """`pb results --format` (store/export.py) reads the task states into Arrow on malloc too."""
    (tmp_path / "experiment.toml").write_text(
        'name = "pool"\nfunction = "tasks:sees"\n[space]\n'
        'grid = { i = { range = [0, 500] } }\n[run]\nworkers = 1\n')
    (tmp_path / "tasks.py").write_text("def sees(i):\n    return {'y': i}\n")
    _ask(["-m", "pushbutton", "run", "experiment.toml", "--quiet"], tmp_path, answer=False)
    got = _ask(["-c", EXPORT_AND_ASK], tmp_path)
    assert got == {"rows": 500, "mimalloc": 0}, got
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 501
