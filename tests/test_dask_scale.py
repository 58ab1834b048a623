"""The Dask backend at scale: the code travels once per worker, not with every bundle (measured
on the wire: the size of each submitted call as the scheduler holds it, and the code's arrivals
counted on the workers), and skewed task durations end balanced (from recorded task times)."""
import base64
import io
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402
from distributed.protocol.pickle import dumps  # noqa: E402

from pushbutton.execution.backends.dask import code_zip  # noqa: E402

TASKS = '''
import time
VERSION = {version}


def work(i, s=0.0, **_):
    time.sleep(s)
    return {{"v": VERSION}}
'''


class CallSizes(SchedulerPlugin):
    """Records, on the scheduler, the pickled size of each pushbutton call it hands to a worker
    (the function and its arguments: what goes over the wire per bundle)."""

    def __init__(self, scheduler):
        self.scheduler, self.sizes = scheduler, {}

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing" and str(key).startswith("pb-"):
            ts = self.scheduler.tasks.get(key)
            if ts is not None and ts.run_spec is not None:
                self.sizes[str(key)] = len(dumps(ts.run_spec))


@pytest.fixture
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None)
    yield c
    c.close()


def pb(*args, cwd, timeout=180):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"pb {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def setup(project, address, n, version=1, s=0.0, bundle_size=1):
    (project / "tasks.py").write_text(TASKS.format(version=version))
    (project / "pushbutton-targets.toml").write_text(
        f'[targets.dc]\nscheduler = "dask"\naddress = "{address}"\n')
    (project / "experiment.toml").write_text(f'''
name = "wire"
function = "tasks:work"
[space]
grid = {{ i = {{ range = [0, {n}] }}, s = [{s}] }}
[run]
bundle_size = {bundle_size}
''')


def results(project):
    out = pb("results", "--format", "csv", cwd=project).stdout
    return pd.read_csv(io.StringIO(out))


def arrivals(client):
    """worker address -> {code digest: how many times the code reached that worker}."""
    return client.run(lambda dask_worker: dict(getattr(dask_worker, "_pushbutton_arrivals",
                                                       {})))


def big_module(project, mb=1.5):
    """An incompressible .py file of the project, so the archive is big."""
    blob = base64.b64encode(os.urandom(int(mb * 1e6))).decode()
    (project / "blob.py").write_text(f"DATA = {blob!r}\n")


def test_code_is_sent_once_per_worker_not_with_each_bundle(tmp_path, cluster):
    big_module(tmp_path)
    setup(tmp_path, cluster.scheduler_address, n=16)
    assert len(code_zip(tmp_path)) > 1_000_000
    sizes = CallSizes(cluster.scheduler)
    cluster.scheduler.add_plugin(sizes, name="call-sizes")
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=tmp_path)
    assert "16 done, 0 failed" in r.stdout, r.stdout + r.stderr
    assert len(sizes.sizes) == 16                        # one call per bundle of one task
    assert max(sizes.sizes.values()) < 20_000, sizes.sizes   # the archive is not in them
    with distributed.Client(cluster.scheduler_address) as c:
        got = arrivals(c)
    assert len(got) == 2 and all(len(a) == 1 and list(a.values()) == [1]
                                 for a in got.values()), got
    df = results(tmp_path)
    assert (df["v"] == 1).all() and set(df["pb_node"]) == set(got)   # both workers ran some


@pytest.mark.slow
def test_changed_code_reaches_the_workers_on_the_next_run(tmp_path, cluster):
    setup(tmp_path, cluster.scheduler_address, n=6)
    pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=tmp_path)
    setup(tmp_path, cluster.scheduler_address, n=12, version=2)
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=tmp_path)
    assert "12 done, 0 failed" in r.stdout, r.stdout + r.stderr
    df = results(tmp_path).set_index("i")
    assert (df.loc[range(6), "v"] == 1).all() and (df.loc[range(6, 12), "v"] == 2).all()
    with distributed.Client(cluster.scheduler_address) as c:
        got = arrivals(c)
        # each run's plugin is removed when its run ends
        plugins = c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    digests = {d for a in got.values() for d in a}
    assert len(digests) == 2, got                 # two versions of the code, by content hash
    assert not [p for p in plugins if p.startswith("pushbutton-")], plugins


@pytest.mark.slow
def test_a_worker_that_joins_mid_run_gets_the_code(tmp_path):
    c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None)
    try:
        setup(tmp_path, c.scheduler_address, n=40, s=0.1)
        p = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                              "--on", "dc", "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        with distributed.Client(c.scheduler_address) as client:
            for _ in range(600):   # the run has started on the first worker
                if any(arrivals(client).values()):
                    break
                time.sleep(0.05)
            first = set(client.scheduler_info()["workers"])
            c.scale(2)
            client.wait_for_workers(2, timeout=60)
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0 and "40 done, 0 failed" in out, out + err
            got = arrivals(client)
        late = set(got) - first
        assert len(late) == 1, (got, first)
        df = results(tmp_path)
        assert late <= set(df["pb_node"]), "the worker that joined ran none of the bundles"
        assert all(list(a.values()) == [1] for a in got.values()), got
    finally:
        c.close()


def makespan_vs_ideal(project, workers):
    """From the recorded task times: the run's makespan (first task start to last task end) and
    the ideal (the tasks' total time spread evenly over the workers), plus the submission
    latency (first bundle submitted to its first task's start)."""
    from pushbutton import load
    from pushbutton.store.database import Store
    df = load(project / "experiment.toml").results()
    assert (df["pb_status"] == "done").all()
    rows = list(zip(df["pb_finished_at"] - df["pb_duration_s"], df["pb_finished_at"],
                    df["pb_node"]))
    first_submit = Store(project).db.execute("SELECT min(submitted) FROM bundles").fetchone()[0]
    t0, t1 = min(r[0] for r in rows), max(r[1] for r in rows)
    busy = sum(r[1] - r[0] for r in rows)
    return t1 - t0, busy / workers, t0 - first_submit, rows


@pytest.mark.slow
def test_skewed_durations_finish_balanced(tmp_path, cluster):
    """Task durations grow 5x along one parameter (the last tasks are the longest): the
    makespan stays within 1.15x of the ideal. Bundles are handed out as workers free up
    (guided self-scheduling: small ones at the end), two in flight per worker thread so a
    worker does not wait for the driver, and run by persistent processes (no start-up cost
    per bundle)."""
    (tmp_path / "tasks.py").write_text(TASKS.format(version=1))
    (tmp_path / "pushbutton-targets.toml").write_text(
        f'[targets.dc]\nscheduler = "dask"\naddress = "{cluster.scheduler_address}"\n')
    (tmp_path / "experiment.toml").write_text('''
name = "skew"
function = "tasks:work"
[space]
grid = { s = [0.1, 0.2, 0.3, 0.4, 0.5], i = { range = [0, 12] } }
''')
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=tmp_path)
    assert "60 done, 0 failed" in r.stdout, r.stdout + r.stderr
    span, ideal, latency, rows = makespan_vs_ideal(tmp_path, 2)
    assert len({r[2] for r in rows}) == 2                 # both workers ran tasks
    assert span <= 1.15 * ideal + latency, (span, ideal, latency)


def test_code_plugin_is_shipped_by_value():
    """The plugin that carries the code unpickles where neither pushbutton nor the project is
    importable, and is a WorkerPlugin there."""
    from pushbutton.execution.backends.dask_remote import code_plugin
    data = dumps(code_plugin("d1", b"", "print('w')\n"))
    assert b"pushbutton.execution" not in data
    code = ("import sys, pickle; sys.modules['pushbutton'] = None; "
            "from distributed.diagnostics.plugin import WorkerPlugin; "
            "p = pickle.loads(sys.stdin.buffer.read()); "
            "print(isinstance(p, WorkerPlugin), p.digest, p.idempotent)")
    r = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                       cwd="/", timeout=60)
    assert r.stdout.split() == [b"True", b"d1", b"True"], r.stderr


def test_code_zip_depends_on_content_only(tmp_path):
    """The archive (hence the hash that names the workers' copy) is the same for the same
    files, whatever their dates, and differs when a file changes."""
    (tmp_path / "a.py").write_text("x = 1\n")
    first = code_zip(tmp_path)
    os.utime(tmp_path / "a.py", (1_000_000_000, 1_000_000_000))
    assert code_zip(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_zip(tmp_path) != first
