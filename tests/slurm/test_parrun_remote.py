"""`pb parrun SCRIPT --on TARGET` on the test SLURM cluster over SSH: the runner travels with
the code, tasks run in their own folders on the target, `--wait` ends with the summary."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .conftest import pb, ssh_target

CJ = """
    import os
    Var0 = [1, 2, 3]
    Var1 = [10, 20]
    if __name__ == "__main__":
        for i in range(len(Var0)):
            for j in range(len(Var1)):
                with open("results.csv", "a") as f:
                    f.write(f"{i},{j},{i + j}\\n")
                result = {"v": Var0[i] * Var1[j], "cwd": os.getcwd(),
                          "file": os.path.abspath(__file__)}
"""


def test_parrun_on_a_remote_target_ships_the_runner_and_waits(ssh_host, project):
    ssh_target(project, "tc")
    (project / "cj.py").write_text(textwrap.dedent(CJ).lstrip())
    remote = project.parent / "remote"
    r = pb("parrun", "cj.py", "--on", "tc", "--wait", "--quiet", timeout=300)
    lines = r.stdout.rstrip().splitlines()
    assert "parrun-cj: 6 done, 0 failed" in r.stdout, r.stdout + r.stderr
    assert lines[-1] == "report:  pb report parrun-cj"
    assert "folders: pb show TASK names a task's folder on 'tc'" in r.stdout
    recs = [json.loads(x) for x in pb("results", "parrun-cj", "--format", "json")
            .stdout.splitlines()]
    assert sorted((x["i"], x["j"], x["v"]) for x in recs) == \
        sorted((i, j, [1, 2, 3][i] * [10, 20][j]) for i in range(3) for j in range(2))
    for x in recs:
        cwd = Path(x["cwd"])
        # the task ran the shipped code, in its own folder on the target's work folder
        assert remote in cwd.parents and project not in cwd.parents, x
        assert Path(x["file"]) == cwd / "cj.py"
        assert (cwd / "results.csv").read_text() == f"{x['i']},{x['j']},{x['i'] + x['j']}\n"
    runners = list(remote.rglob("parrun/parrun-cj-*.py"))
    assert len(runners) == 1
    specs = list((project / ".pushbutton" / "slurm-remote" / "tc" / "bundles")
                 .glob("*/bundle.json"))
    argv = json.loads(specs[0].read_text())["call"]["argv"]
    assert argv == ["python3", str(runners[0])]
    show = json.loads(pb("show", recs[0]["pb_task_id"][:10], "--json").stdout)
    assert show["folder"]["target"] == "tc" and show["folder"]["path"] == recs[0]["cwd"]
    # again: resumes, nothing runs
    r = pb("parrun", "cj.py", "--on", "tc", "--wait", "--quiet", timeout=300)
    assert "parrun-cj: 6 done, 0 failed" in r.stdout, r.stdout + r.stderr
