"""Finding a bundle's job again after a crash: the job name recorded before sbatch is looked up
(ONE squeue, plus sacct where accounting exists), and, for a job SLURM has forgotten, the files
its job left in the bundle folders. Methods of SlurmBackend."""
from __future__ import annotations

import shlex
import time

from pushbutton.execution.remote import RemoteError


def find_jobs(self, names: list[str], since: float | None = None) -> dict[str, str] | None:
    """{job name: array job id} for the jobs SLURM knows by these names: ONE round trip
    (squeue, and sacct where accounting exists for jobs squeue has forgotten). None when
    the query failed (then nobody may conclude that a job was never submitted)."""
    if not names:
        return {}
    parts = []
    for i in range(0, len(names), 200):
        parts.append(shlex.join(["squeue", "-h", "-t", "all", "--name=" + ",".join(
            names[i:i + 200]), "-o", "%F|%j"]) + ' || echo "@@failed"')
    acct = bool(self.limits().get("accounting"))
    if acct:
        start = time.strftime("%Y-%m-%dT%H:%M:%S",
                              time.localtime((since or time.time()) - 86400))
        parts.append("echo '@@sacct'")
        for i in range(0, len(names), 200):
            parts.append(shlex.join(["sacct", "-n", "-P", "-X", "-S", start, "--name=" +
                                     ",".join(names[i:i + 200]), "-o", "JobID,JobName"])
                         + " 2>/dev/null || true")
    parts.append("echo '@@end'")
    try:
        r = self.shell.run_script("\n".join(parts), setup=self.target.setup, timeout=60,
                                  check=False, retries=1)
    except RemoteError:
        return None
    if "@@end" not in r.stdout or "@@failed" in r.stdout:
        return None
    wanted, found = set(names), {}
    for line in r.stdout.replace("@@sacct", "").splitlines():
        job, _, name = line.strip().partition("|")
        job = job.split("_")[0]
        if name in wanted and job.isdigit():
            found.setdefault(name, job)
    return found

def started_bundles(self, bids: list[str]) -> set[str] | None:
    """Bundles that a job has begun to run (any file the worker or job script writes), for
    jobs SLURM no longer knows by name. None when the cluster could not be asked."""
    marks = ("outcomes.jsonl", "done.json", "exit.json", "worker.err")
    if not self.remote:
        return {b for b in bids if any((self.store_dir / "bundles" / b / m).exists()
                                       for m in marks)}
    script = (f"cd {shlex.quote(self.base + '/bundles')} 2>/dev/null && for b in "
              + " ".join(shlex.quote(b) for b in bids) + "; do for m in "
              + " ".join(marks) + '; do [ -e "$b/$m" ] && echo "ran $b" && break; done; '
              "done; echo '@@end'")
    try:
        r = self.shell.run_script(script, timeout=60, check=False, retries=1)
    except RemoteError:
        return None
    if "@@end" not in r.stdout:
        return None
    return {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("ran ")}
