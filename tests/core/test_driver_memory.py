"""The driver's peak resident memory over a whole local run (core/memory.py).

A run's Python heap is small; what grew its RSS were the allocators under Arrow and DuckDB
keeping freed pages (Arrow's mimalloc pool, one glibc arena per allocating thread). The child
below runs a 27,000-task no-op sweep end to end in bundles of 500 (54 Parquet parts, so DuckDB's
merges run every time: with guided bundles whether a merge runs varies from run to run, and with
it ~50 MB) and prints its ru_maxrss. Measured, four runs each: 186-189 MB before core/memory.py,
170-171 MB with it; the same run's peak varied by < 3 MB. The bound sits between the two, ~9 MB
from each."""
import json
import subprocess
import sys
import textwrap

import pytest

BOUND_MB = 180

CHILD = textwrap.dedent("""
    import json, resource
    from pushbutton.experiment import load
    exp = load("experiment.toml")
    exp.register(yes=True)
    s = exp.run(yes=True)
    print(json.dumps({"done": s["done"],
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")

SPEC = """
name = "mem"
function = "tasks:noop3"
[space]
grid = { a = { range = [0, 30] }, b = { range = [0, 30] }, i = { range = [0, 30] } }
[run]
max_tasks = 100000000
bundle_size = 500
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas, ru_maxrss in kB")
def test_run_peak_rss_stays_bounded(project):
    (project / "tasks.py").write_text("def noop3(a, b, i):\n    return {'y': a + b + i}\n")
    (project / "experiment.toml").write_text(SPEC)
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=project, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["done"] == 27_000
    assert m["rss_mb"] < BOUND_MB, m


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
