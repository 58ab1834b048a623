"""The dask backend end to end: `pb run --on NAME` against a real dask.distributed cluster."""
import io
import os
import subprocess
import sys

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from pushbutton import load  # noqa: E402
from pushbutton.execution.backends.dask import code_zip  # noqa: E402
from pushbutton.store.database import Store  # noqa: E402

TASKS = '''
import os, time
import pushbutton


def _count(d, i):
    with open(os.path.join(d, "executions.log"), "a") as f:
        f.write("%d\\n" % i)


def work(i, d, mode="ok", **_):
    _count(d, i)
    pushbutton.log(step=0, v=i)
    if i == 3 and mode == "ok":
        raise ValueError("deliberate failure %d" % i)
    if i == 5 and mode == "killself" and pushbutton.current_task().attempt == 1:
        os.kill(os.getpid(), 9)          # the bundle's subprocess on the Dask worker
    if i == 7 and mode == "killworker":
        marker = os.path.join(d, "killed-once")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getppid(), 9)     # the Dask worker process itself
    time.sleep(0.05)
    return {"sq": i * i, "cwd_ok": os.path.exists("tasks.py")}
'''


@pytest.fixture(scope="module")
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None)
    yield c
    c.close()


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pb(*args, cwd, check=True, timeout=120):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


def setup(project, address, n=30, mode="ok", retries=0, workers=None):
    (project / "pushbutton-targets.toml").write_text(
        f'[targets.dc]\nscheduler = "dask"\naddress = "{address}"\n'
        + (f"workers = {workers}\n" if workers else ""))
    (project / "experiment.toml").write_text(f'''
name = "dsk"
function = "tasks:work"
[space]
grid = {{ i = {{ range = [0, {n}] }}, d = ["{project}"], mode = ["{mode}"] }}
[resources]
retries = {retries}
''')


def executions(project):
    return [int(x) for x in (project / "executions.log").read_text().split()]


def results_csv(project):
    return pd.read_csv(io.StringIO(pb("results", "--format", "csv", cwd=project).stdout))


def test_sweep_results_failures_and_series(project, cluster):
    setup(project, cluster.scheduler_address)
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=project, check=False)
    assert "29 done, 1 failed" in r.stdout, r.stdout + r.stderr
    df = results_csv(project)
    assert sorted(df["i"]) == list(range(30))                      # each exactly once
    ok = df[df["i"] != 3]
    assert (ok["pb_status"] == "done").all() and (ok["sq"] == ok["i"] ** 2).all()
    assert ok["cwd_ok"].all()                     # ran in the shipped copy of the project
    bad = df[df["i"] == 3].iloc[0]
    assert bad["pb_status"] == "failed" and bad["pb_error_kind"] == "exception"
    # pb_node: the Dask worker that ran the task (its address), failures included
    workers = set(cluster.scheduler_info["workers"])
    assert workers and set(df["pb_node"]) <= workers, (set(df["pb_node"]), workers)
    assert df["pb_node"].notna().all() and bad["pb_node"] in workers
    exp = load("experiment.toml")
    log = exp.logs(bad["pb_task_id"])
    assert "ValueError: deliberate failure 3" in log["attempts"][0]["traceback"]
    assert "ValueError: deliberate failure 3" in log["stderr"]
    assert sorted(executions(project)) == list(range(30))
    series = exp.series()
    assert sorted(series["v"]) == list(range(30))
    store = Store(project)
    assert {b for (b,) in store.db.execute("SELECT DISTINCT backend FROM bundles")} == {"dask"}
    assert store.db.execute("SELECT count(*) FROM bundles WHERE state != 'finished' AND "
                            "state != 'failed'").fetchone()[0] == 0


def test_bundle_process_killed_charges_only_its_task(project, cluster):
    setup(project, cluster.scheduler_address, n=24, mode="killself", retries=1)
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=project)
    assert "24 done, 0 failed" in r.stdout, r.stdout + r.stderr
    df = results_csv(project).set_index("i")
    assert sorted(df.index) == list(range(24))
    assert (df["pb_status"] == "done").all()
    assert df.loc[5, "pb_attempts"] == 2
    assert (df.drop(index=5)["pb_attempts"] == 1).all()    # requeued, not charged
    log = load("experiment.toml").logs(df.loc[5, "pb_task_id"])
    assert [a["kind"] for a in log["attempts"]] == ["signal"]
    assert "SIGKILL" in log["attempts"][0]["error"]
    ran = executions(project)
    assert sorted(set(ran)) == list(range(24))
    assert ran.count(5) == 2 and all(ran.count(i) == 1 for i in range(24) if i != 5)


def test_dask_worker_killed_midrun_loses_and_duplicates_nothing(project, cluster):
    setup(project, cluster.scheduler_address, n=24, mode="killworker")
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=project)
    assert "24 done, 0 failed" in r.stdout, r.stdout + r.stderr
    assert (project / "killed-once").exists()
    df = results_csv(project)
    assert sorted(df["i"]) == list(range(24)) and (df["pb_status"] == "done").all()
    assert set(executions(project)) == set(range(24))   # the dead worker's bundle re-ran
    with distributed.Client(cluster.scheduler_address) as c:  # the nanny brought it back
        c.wait_for_workers(2, timeout=30)


def test_address_local_starts_a_cluster_for_the_run(project):
    setup(project, "local", n=12, workers=2)
    r = pb("run", "experiment.toml", "--on", "dc", "--quiet", cwd=project, check=False)
    assert "11 done, 1 failed" in r.stdout, r.stdout + r.stderr
    df = results_csv(project)
    assert sorted(df["i"]) == list(range(12))


def test_code_zip_skips_store_and_venvs_and_is_capped(tmp_path):
    import zipfile
    (tmp_path / "a.py").write_text("x = 1\n")
    for sub in (".git", ".pushbutton", "venv", "pkg"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "m.py").write_text("y = 2\n")
    (tmp_path / "data.csv").write_text("1,2\n")
    names = zipfile.ZipFile(io.BytesIO(code_zip(tmp_path))).namelist()
    assert sorted(names) == ["a.py", "pkg/m.py"]
    (tmp_path / "big.py").write_bytes(os.urandom(300_000))
    from pushbutton.core.errors import PushbuttonError
    with pytest.raises(PushbuttonError, match="big.py"):
        code_zip(tmp_path, max_mb=0.1)


def test_function_is_shipped_by_value():
    """The cluster needs neither pushbutton nor the project installed."""
    import cloudpickle
    from distributed.protocol.pickle import dumps
    from pushbutton.execution.backends.dask import _run_bundle
    data = dumps(_run_bundle)
    assert b"pushbutton.backends" not in data
    code = ("import sys, pickle; sys.modules['pushbutton'] = None; "
            "f = pickle.loads(sys.stdin.buffer.read()); print(f.__name__)")
    r = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                       cwd="/", timeout=60)
    assert r.stdout.strip() == b"_run_bundle", r.stderr
    assert cloudpickle.loads(data).__code__.co_name == "_remote_run_bundle"


def test_killed_worker_charges_the_task_it_was_running(tmp_path):
    """A bundle that keeps killing its Dask worker ends KilledWorker; the task the worker last
    reported running gets a start line (so the driver charges it), the others none."""
    import dask
    import json
    from pushbutton.execution.backends.base import FAILED
    from pushbutton.execution.backends.dask import DaskBackend
    from pushbutton.execution.backends.base import BundleRef
    (tmp_path / "killer.py").write_text(
        "import os, time\n"
        "def f(i):\n"
        "    if i == 1:\n"
        "        time.sleep(0.6)\n"
        "        os.kill(os.getppid(), 9)\n"
        "    return {'i': i}\n")
    d = tmp_path / "b1"
    d.mkdir()
    (d / "bundle.json").write_text(json.dumps({
        "bundle": "b1", "experiment": "k", "run": 1, "root": str(tmp_path), "sys_path": [],
        "call": {"kind": "python", "target": "killer:f"}, "timeout": None, "memory_mb": None,
        "task_root": str(tmp_path / "tasks"),
        "tasks": [{"id": "aa", "params": {"i": 0}, "attempt": 1},
                  {"id": "bb", "params": {"i": 1}, "attempt": 1}]}))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     host="127.0.0.1", dashboard_address=":0")
    try:
        be = DaskBackend(address=c.scheduler_address, report_every=0.05)
        assert be.capacity() == 2   # one running and one waiting per worker thread
        [h] = be.submit([BundleRef("b1", d, 2)])
        for _ in range(300):
            st = be.poll([h])[h]
            if st.state == FAILED:
                break
            be.wait(0.1)
        assert st.state == FAILED and st.kind == "lost", st
        lines = (d / "starts.jsonl").read_text().splitlines()
        assert [json.loads(x)["id"] for x in lines] == ["bb"]
        be.close()
    finally:
        c.close()


def _bundle(tmp_path, name, module, target, tasks):
    import json
    (tmp_path / f"{module}.py").write_text(target)
    d = tmp_path / name
    d.mkdir()
    (d / "bundle.json").write_text(json.dumps({
        "bundle": name, "experiment": "k", "run": 1, "root": str(tmp_path), "sys_path": [],
        "call": {"kind": "python", "target": f"{module}:f"}, "timeout": None,
        "memory_mb": None, "task_root": str(tmp_path / "tasks"),
        "tasks": [{"id": tid, "params": p, "attempt": 1} for tid, p in tasks]}))
    return d


def test_cancel_stops_the_bundle_process_on_the_worker(tmp_path, cluster):
    import time
    from pushbutton.execution.backends.base import BundleRef
    from pushbutton.execution.backends.dask import DaskBackend
    pidfile = tmp_path / "pid"
    d = _bundle(tmp_path, "b2", "sleeper",
                "import os, time\n"
                "def f(p):\n"
                "    open(p, 'w').write(str(os.getpid()))\n"
                "    time.sleep(60)\n", [("cc", {"p": str(pidfile)})])
    be = DaskBackend(address=cluster.scheduler_address)
    try:
        [h] = be.submit([BundleRef("b2", d, 1)])
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        be.cancel([h])
        assert be.poll([h])[h].kind == "cancelled"
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the bundle process outlived its cancelled Dask task")
    finally:
        be.close()


def test_cancel_stops_a_command_task_and_its_children(tmp_path, cluster):
    """A command task runs in a process group of its own; a Dask cancel ends it and whatever
    it started, not only the bundle process."""
    import json
    import time
    from pushbutton.execution.backends.base import BundleRef
    from pushbutton.execution.backends.dask import DaskBackend
    (tmp_path / "spawner.py").write_text(
        "import os, subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "open(sys.argv[1] + '.tmp', 'w').write('%d %d' % (os.getpid(), c.pid))\n"
        "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(300)\n")
    pidfile = tmp_path / "pids"
    d = tmp_path / "b3"
    d.mkdir()
    (d / "bundle.json").write_text(json.dumps({
        "bundle": "b3", "experiment": "k", "run": 1, "root": str(tmp_path), "sys_path": [],
        "call": {"kind": "command", "argv": [sys.executable, "spawner.py", str(pidfile)]},
        "timeout": None, "memory_mb": None, "task_root": str(tmp_path / "tasks"),
        "tasks": [{"id": "dd", "params": {}, "attempt": 1}]}))

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    be = DaskBackend(address=cluster.scheduler_address)
    try:
        [h] = be.submit([BundleRef("b3", d, 1)])
        for _ in range(200):
            if pidfile.exists():
                break
            time.sleep(0.1)
        pids = [int(x) for x in pidfile.read_text().split()]
        assert all(map(alive, pids))
        be.cancel([h])
        for _ in range(100):
            if not any(map(alive, pids)):
                break
            time.sleep(0.1)
        left = [p for p in pids if alive(p)]
        for p in left:
            os.kill(p, 9)
        assert not left, "outlived the cancelled Dask task: %s" % left
    finally:
        be.close()
