"""`pb parrun`: each task runs in a fresh folder of its own holding the script's files, so the
files tasks write never collide; a killed driver's resume and `--rerun` leave no duplicates."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pushbutton.core.files import fill_task_folder
from pushbutton.execution import worker

CJ = """
    import os
    import time
    Var0 = [1, 2, 3]                      # ClusterJob style: index loops over arrays above
    Var1 = [10, 20]
    with open("params.txt") as fh:        # an input next to the script, visible in the folder
        OFFSET = int(fh.read())
    for i in range(len(Var0)):
        for j in range(len(Var1)):
            with open("results.csv", "a") as f:
                f.write(f"{i},{j},{i + j + OFFSET}\\n")
            time.sleep(float(os.environ.get("SLOW", "0")))
            with open("data/seen.txt") as g:      # a linked folder
                shared = g.read().strip()
            result = {"sum": i + j, "shared": shared, "cwd": os.getcwd(),
                      "file": os.path.abspath(__file__)}
"""


def pb(cwd, *args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "pushbutton", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def setup(tmp_path):
    (tmp_path / "cj.py").write_text(textwrap.dedent(CJ).lstrip())
    (tmp_path / "params.txt").write_text("100")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "seen.txt").write_text("shared input")


def folders(tmp_path):
    return sorted((tmp_path / ".pushbutton" / "tasks" / "parrun-cj").glob("*/*"))


def csv_rows(tmp_path):
    out = []
    for d in folders(tmp_path):
        p = d / "results.csv"
        if p.exists():
            out += [(d, line) for line in p.read_text().splitlines()]
    return out


def test_each_task_has_its_own_folder_and_results_file(tmp_path):
    setup(tmp_path)
    r = pb(tmp_path, "parrun", "cj.py", "-j", "2", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "folders: pb show TASK names a task's folder" in r.stdout
    assert r.stdout.rstrip().splitlines()[-1] == "report:  pb report parrun-cj"
    assert not (tmp_path / "results.csv").exists()          # nothing lands next to the script
    got = csv_rows(tmp_path)
    assert len(folders(tmp_path)) == 6 and len(got) == 6
    by_folder = {}
    for d, line in got:
        by_folder.setdefault(d, []).append(line)
    assert all(len(v) == 1 for v in by_folder.values())     # each folder: its one row
    assert sorted(line for _, line in got) == sorted(f"{i},{j},{i + j + 100}"
                                                     for i in range(3) for j in range(2))
    for d in folders(tmp_path):
        assert (d / "data").is_symlink() and (d / "params.txt").is_file()
        assert not (d / "params.txt").is_symlink()           # small files are copies
        meta = json.loads((d / "pb_task.json").read_text())
        assert meta["experiment"] == "parrun-cj" and d.name == meta["task_id"]
    res = json.loads(pb(tmp_path, "results", "parrun-cj", "--format", "json").stdout
                     .splitlines()[0])
    assert res["shared"] == "shared input"
    assert Path(res["cwd"]).parent.parent.parent == tmp_path / ".pushbutton" / "tasks"
    assert res["file"] == str(Path(res["cwd"]) / "cj.py")
    # pb show names the folder
    tid = res["pb_task_id"]
    show = pb(tmp_path, "show", tid[:10])
    assert f"  folder      {res['cwd']}" in show.stdout, show.stdout
    js = json.loads(pb(tmp_path, "show", tid[:10], "--json").stdout)
    assert js["folder"]["path"] == res["cwd"] and js["folder"]["exists"] is True


def test_rerun_starts_each_task_in_a_clean_folder(tmp_path):
    setup(tmp_path)
    assert pb(tmp_path, "parrun", "cj.py", "--quiet").returncode == 0
    first = folders(tmp_path)
    r = pb(tmp_path, "parrun", "cj.py", "--quiet", "--rerun")
    assert r.returncode == 0, r.stdout + r.stderr
    now = folders(tmp_path)
    assert len(now) == 6 and all(d.name.endswith(".1") for d in now)
    assert not any(d.exists() for d in first)                 # the old generation is gone
    got = csv_rows(tmp_path)
    assert len(got) == 6 and len({d for d, _ in got}) == 6     # one row each, not two


def test_kill9_of_the_driver_then_resume_has_no_duplicate_rows(tmp_path):
    """Each task appends its row first and then sleeps: a task cut short by the driver's
    death has written its row; the resumed attempt starts in a fresh folder."""
    setup(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "pushbutton", "parrun", "cj.py", "-j", "2",
                          "--quiet"], cwd=tmp_path, env=dict(os.environ, SLOW="1.5"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(csv_rows(tmp_path)) < 3:
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = len(csv_rows(tmp_path))
    assert before >= 3
    done_before = pb(tmp_path, "status", "parrun-cj").stdout
    r = pb(tmp_path, "parrun", "cj.py", "-j", "2", "--quiet", env={"SLOW": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parrun-cj: 6 done, 0 failed" in r.stdout, (done_before, r.stdout)
    got = csv_rows(tmp_path)
    assert len(got) == 6 and len({d for d, _ in got}) == 6
    assert sorted(line for _, line in got) == sorted(f"{i},{j},{i + j + 100}"
                                                     for i in range(3) for j in range(2))


def test_the_worker_and_pb_fill_task_folders_alike(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.py").write_text("x = 1\n")
    (src / "big.bin").write_bytes(b"\0" * ((1 << 20) + 1))
    (src / "sub").mkdir()
    (src / ".hidden").write_text("no")
    (src / "__pycache__").mkdir()
    (src / "link.txt").symlink_to(src / "small.py")
    (src / "dangling").symlink_to(src / "missing")
    listings = []
    for fill, name in ((fill_task_folder, "a"), (worker.fill_task_folder, "b")):
        dst = tmp_path / name / "task"
        dst.mkdir(parents=True)
        (dst / "stale.csv").write_text("old row\n")          # a previous attempt's file
        fill(src, dst)
        listings.append(sorted((p.name, p.is_symlink(), p.is_file()) for p in dst.iterdir()))
    assert listings[0] == listings[1] == [("big.bin", True, True), ("link.txt", False, True),
                                          ("small.py", False, True), ("sub", True, False)]


def test_an_output_file_left_next_to_the_script_is_warned_about(tmp_path):
    setup(tmp_path)
    (tmp_path / "results.csv").write_text("0,0,100\n")   # from a plain `python cj.py`
    r = pb(tmp_path, "parrun", "cj.py", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "warning: cj.py: results.csv already exists next to the script: each task starts " \
           "with a copy of it" in r.stderr
