"""A persistent worker (`worker.py --serve`, the local backend's pool) keeps its memory flat over
many bundles: nothing it holds grows with the number of tasks it has run."""
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).resolve().parents[2] / "src" / "pushbutton" / "execution" / "worker.py"


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for the worker")


def _write_bundle(folder, root, b, n):
    folder.mkdir()
    tasks = [{"id": "%032x" % (b * n + i), "params": {"a": b, "i": i}} for i in range(n)]
    spec = {"call": {"kind": "python", "target": "leak_tasks:add"}, "root": str(root),
            "experiment": "flat", "tasks": tasks}
    (folder / "bundle.json").write_text(json.dumps(spec))


def test_serving_worker_memory_stays_flat_over_many_bundles(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "leak_tasks.py").write_text("def add(a, i):\n    return {'y': a + i}\n")
    n, n_bundles = 25000, 12
    for b in range(n_bundles):
        _write_bundle(tmp_path / f"b{b}", root, b, n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PB_")}
    p = subprocess.Popen([sys.executable, str(WORKER), "--serve", str(os.getpid())],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                         cwd=root)
    rss = {}
    try:
        for b in range(n_bundles):
            folder = tmp_path / f"b{b}"
            p.stdin.write(f"{folder}\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == f"done {folder}"
            assert json.loads((folder / "done.json").read_text())["n_end"] == n
            rss[b + 1] = _rss_kb(p.pid)
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    # every task ran and answered (the last bundle's outcomes are whole)
    lines = (tmp_path / f"b{n_bundles - 1}" / "outcomes.jsonl").read_text().splitlines()
    ends = [json.loads(ln) for ln in lines if '"ev": "end"' in ln]
    assert len(ends) == n and ends[-1]["metrics"] == {"y": n_bundles - 1 + n - 1}
    # 250,000 tasks between bundle 2 and the last: a leak of ~100 bytes a task is 25 MB; the
    # interpreter's own churn (a bundle's parsed task list freed and made again) is far smaller
    growth_mb = (rss[n_bundles] - rss[2]) / 1024
    print("worker RSS kB after each bundle:", rss)
    assert growth_mb < 12, f"worker RSS grew {growth_mb:.1f} MB over {n_bundles - 2} bundles " \
        f"({rss})"


def test_each_task_and_its_children_see_their_own_task_variables(tmp_path):
    """The variables set in place still reach os.environ, getenv and a child process, task after
    task (values of different lengths), and a task that sets one itself is not undone."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "env_tasks.py").write_text(
        "import os, subprocess\n"
        "def show(i):\n"
        "    out = subprocess.run(['sh', '-c', 'printf %s \"$PB_TASK_ID $PB_TASK_DIR\"'],\n"
        "                         capture_output=True, text=True).stdout\n"
        "    seen = {'env': os.environ['PB_TASK_ID'], 'child': out,\n"
        "            'dir': os.environ['PB_TASK_DIR']}\n"
        "    if i == 1:\n"
        "        os.environ['PB_TASK_ID'] = 'set-by-the-task'\n"
        "    return seen\n")
    ids = ["a" * 32, "b" * 8, "c" * 200, "d" * 32]
    folder = tmp_path / "b"
    folder.mkdir()
    spec = {"call": {"kind": "python", "target": "env_tasks:show"}, "root": str(root),
            "experiment": "env", "tasks": [{"id": t, "params": {"i": i}}
                                           for i, t in enumerate(ids)]}
    (folder / "bundle.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PB_")}
    subprocess.run([sys.executable, str(WORKER), str(folder)], env=env, cwd=root, check=True,
                   timeout=60)
    ends = [json.loads(ln) for ln in (folder / "outcomes.jsonl").read_text().splitlines()
            if '"ev": "end"' in ln]
    assert [e["id"] for e in ends] == ids and all(e["ok"] for e in ends), ends
    for e in ends:
        m = e["metrics"]
        assert m["env"] == e["id"] and m["dir"].endswith("/" + e["id"]), m
        assert m["child"] == f"{e['id']} {m['dir']}", m
