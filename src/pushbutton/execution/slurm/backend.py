"""SLURM backend: bundles become sbatch job arrays, here (`local-slurm`) or over SSH.

Each array element runs one bundle through the stdlib worker (`python worker.py BUNDLE_DIR`) from a
small job script that also records the worker's exit status (`exit.json`) so a crash is reported
with its cause. Status comes from ONE `squeue` (and `sacct` where accounting exists) for all jobs,
batched with a check for the bundles' `done.json` files in the same round trip.

Handles are "<jobid>_<index>:<bundle id>". Paths on the cluster side ("base"):
    <base>/bundles/<id>/   the bundle folders (remote copies; locally the store's own)
    <base>/jobs/           job scripts and bundle lists;  <base>/logs/  SLURM's own output
    <base>/code/           the code snapshot (remote only);  <base>/worker.py (remote only)
"""
from __future__ import annotations

import json
import os
import re
import shlex
import time
import uuid
from pathlib import Path

from pushbutton.core.errors import PushbuttonError
from pushbutton.core.files import write_json
from pushbutton.execution.remote import RemoteError, Shell, shell_for
from pushbutton.execution.slurm import jobs as slurm_jobs
from pushbutton.execution.backends.base import Backend, BundleRef, BundleState
from pushbutton.execution.slurm.options import (first_int, parse_config, partition_of, refuse_owned,
                                                resource_flags)
from pushbutton.execution.slurm.status import (load_json, remote_files, sacct_states,
                                               squeue_states, state_of)

WORKER = str(Path(__file__).resolve().parent.parent / "worker.py")

_FIX_OPTS = ("check the sbatch options (the target's `sbatch = ...` and --sbatch); run "
             "`pb targets check TARGET`")


class SlurmBackend(Backend):
    """sbatch job arrays through a Shell (SSH or this host)."""

    name = "slurm"
    fire_and_forget = True

    def __init__(self, target, store_dir: str | os.PathLike, *, shell: Shell | None = None,
                 sbatch: list[str] | str | None = None, project_key: str | None = None,
                 gpus: int = 0, remote_base: str | None = None,
                 limits_cache: str | os.PathLike | None = None, submit_gap: float = 0.2):
        """sbatch: options after the target's own; gpus: per task (--gres=gpu:N);
        remote_base: the cluster-side folder an earlier submission resolved (else it is
        resolved on first use); limits_cache: a file caching the site limits for an hour."""
        self.target = target
        self.shell = shell or shell_for(target)
        self.remote = bool(target.host)
        self.store_dir = Path(store_dir)
        self.sbatch = shlex.split(sbatch) if isinstance(sbatch, str) else list(sbatch or [])
        refuse_owned(list(target.sbatch) + self.sbatch, target.name)
        self.submit_gap = submit_gap
        self.project_key = project_key or "project"
        self.gpus = int(gpus or 0)
        self._base: str | None = remote_base if self.remote else None
        self._limits: dict | None = None
        self.last_poll_error: str | None = None
        self.cache_path = str(limits_cache) if limits_cache else None
        self.cache_s = 3600.0

    # -- paths ---------------------------------------------------------------------------
    @property
    def base(self) -> str:
        """The cluster-side folder for this project (absolute)."""
        if self._base is None:
            if not self.remote:
                self._base = str(self.store_dir / "slurm")
            else:
                w = self.target.remote_workdir
                if w == "~" or w.startswith("~/"):
                    home = self.shell.run(["printenv", "HOME"], timeout=30).stdout.strip()
                    w = home + w[1:]
                self._base = f"{w.rstrip('/')}/{self.project_key}"
        return self._base

    @property
    def mirror(self) -> Path:
        """Local folder mirroring <base>'s jobs/ and bundles/ before they are pushed."""
        return self.store_dir / "slurm" if not self.remote else \
            self.store_dir / "slurm-remote" / self.target.name

    def bundle_path(self, bid: str) -> str:
        return str(self.store_dir / "bundles" / bid) if not self.remote else \
            f"{self.base}/bundles/{bid}"

    @property
    def worker(self) -> str:
        return WORKER if not self.remote else f"{self.base}/worker.py"

    @property
    def code_dir(self) -> str | None:
        return f"{self.base}/code" if self.remote else None

    def push(self) -> None:
        """Send what was staged in the mirror (jobs, bundles) to the cluster (remote only)."""
        if self.remote:
            self.shell.put(str(self.mirror) + "/", self.base + "/", timeout=600)

    # -- site facts ----------------------------------------------------------------------
    def limits(self) -> dict:
        """MaxArraySize, MaxJobCount and the CPUs of the partition, from scontrol and sinfo
        (cached in limits_cache for cache_s seconds)."""
        if self.cached_limits() is None:
            self._limits = self._read_limits()
            if self.cache_path:
                try:
                    Path(self.cache_path).parent.mkdir(parents=True, exist_ok=True)
                    write_json(self.cache_path, {"t": time.time(), "key": self._key(),
                                                 "limits": self._limits}, indent=None)
                except OSError:
                    pass
        return self._limits

    def cached_limits(self) -> dict | None:
        """The site limits known without asking SLURM: read before, or cached and fresh."""
        if self._limits is None and self.cache_path:
            try:
                c = json.loads(Path(self.cache_path).read_text())
                if time.time() - c.get("t", 0) < self.cache_s and c.get("key") == self._key():
                    self._limits = c["limits"]
            except (OSError, ValueError, KeyError):
                pass
        return self._limits

    def _read_limits(self) -> dict:
        script = ("scontrol show config 2>&1; echo '@@sinfo'; sinfo -h -o '%P %C' 2>&1; "
                  "echo '@@end'")
        r = self.shell.run_script(script, setup=self.target.setup, timeout=60, check=False)
        if "@@sinfo" not in r.stdout:
            raise RemoteError(f"cannot read SLURM's configuration: {r.stderr.strip()[-300:]}",
                              target=self.target.name,
                              fix=f"run `pb targets check {self.target.name}`")
        conf_text, _, rest = r.stdout.partition("@@sinfo")
        conf = parse_config(conf_text)
        part = partition_of(self.target.sbatch + self.sbatch)
        cpus = 0
        for line in rest.split("@@end")[0].strip().splitlines():
            bits = line.split()
            if len(bits) == 2 and "/" in bits[1]:
                name = bits[0]
                if (part and name.rstrip("*") == part) or (not part and name.endswith("*")):
                    cpus = first_int(bits[1].split("/")[-1], 0)
        max_array = first_int(conf.get("MaxArraySize"), 1001)
        if self.target.max_array_size:
            max_array = min(max_array, self.target.max_array_size + 1)
        return {"max_array": max(1, max_array - 1),
                "max_jobs": first_int(conf.get("MaxJobCount"), 10000), "cpus": cpus or 1,
                "accounting": conf.get("AccountingStorageType", "") not in
                ("", "accounting_storage/none"),
                "min_job_age": first_int(conf.get("MinJobAge"), 300)}

    def _key(self) -> str:
        return json.dumps([self.target.model_dump(exclude={"file"}), self.sbatch],
                          sort_keys=True, default=str)

    def capacity(self) -> int | None:
        lim = self.limits()
        return self.target.max_jobs or max(1, lim["max_jobs"] // 2)

    # -- submit --------------------------------------------------------------------------
    def job_script(self, list_path: str) -> str:
        py = shlex.join(self.target.python_argv())
        lines = ["#!/bin/bash", "# pushbutton job array: element i runs the bundle on line i+1 "
                 "of the list", *self.target.setup]
        for k, v in self.target.env.items():
            lines.append(f"export {k}={shlex.quote(v)}")
        lines += [
            f"L={shlex.quote(list_path)}",
            'B=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$L")',
            '[ -n "$B" ] || { echo "no bundle on line $((SLURM_ARRAY_TASK_ID + 1)) of $L" >&2; '
            'exit 2; }',
            'rm -f "$B/exit.json"',
            f'{py} {shlex.quote(self.worker)} "$B" 2>>"$B/worker.err"',
            "rc=$?",
            'printf \'{"rc": %d, "host": "%s", "job": "%s_%s"}\\n\' "$rc" "$(hostname)" '
            '"$SLURM_ARRAY_JOB_ID" "$SLURM_ARRAY_TASK_ID" > "$B/.exit.json.tmp" && '
            'mv "$B/.exit.json.tmp" "$B/exit.json"',
            "exit $rc", ""]
        return "\n".join(lines)

    def sbatch_argv(self, n: int, name: str, flags: list[str], script: str) -> list[str]:
        return ["sbatch", "--parsable", f"--array=0-{n - 1}", f"--job-name={name}",
                f"--output={self.base}/logs/%A_%a.out", "--open-mode=append", "--no-requeue",
                *flags, *self.target.sbatch, *self.sbatch, script]

    def plan_jobs(self, bundles: list[BundleRef], label: str = "pb") -> list[str]:
        """The job name of each bundle's array (at most MaxArraySize bundles share one), chosen
        before sbatch so that it can be recorded as the intent and looked up after a crash."""
        lim = self.limits()
        names: list[str] = []
        for i in range(0, len(bundles), lim["max_array"]):
            name = f"{label[:100]}-{uuid.uuid4().hex[:12]}"
            names += [name] * len(bundles[i:i + lim["max_array"]])
        return names

    def submit(self, bundles: list[BundleRef], label: str = "pb",
               names: list[str] | None = None) -> list[str]:
        """Submit the bundles as job arrays, one per job name (see plan_jobs); the bundle
        folders must already be on the cluster side (see push)."""
        if not bundles:
            return []
        names = names or self.plan_jobs(bundles, label)
        handles: list[str] = []
        (self.mirror / "jobs").mkdir(parents=True, exist_ok=True)
        (self.mirror / "logs").mkdir(parents=True, exist_ok=True)
        chunks: list[tuple[str, list[BundleRef]]] = []
        for b, name in zip(bundles, names):
            if chunks and chunks[-1][0] == name:
                chunks[-1][1].append(b)
            else:
                chunks.append((name, [b]))
        staged = []
        for name, chunk in chunks:
            token = f"{time.strftime('%Y%m%d-%H%M%S')}-{name.rsplit('-', 1)[-1]}"
            list_rel, script_rel = f"jobs/{token}.list", f"jobs/{token}.sh"
            (self.mirror / list_rel).write_text(
                "".join(self.bundle_path(b.id) + "\n" for b in chunk))
            (self.mirror / script_rel).write_text(self.job_script(f"{self.base}/{list_rel}"))
            staged.append((chunk, name, script_rel))
        self.push()
        for i, (chunk, name, script_rel) in enumerate(staged):
            if i:
                time.sleep(self.submit_gap)  # throttle: be gentle with slurmctld
            n_max = max(b.n_tasks for b in chunk)
            flags = resource_flags(chunk[0], n_max, self.gpus)
            try:
                job = self._sbatch(self.sbatch_argv(len(chunk), name, flags,
                                                    f"{self.base}/{script_rel}"), name)
            except Exception as e:
                e.partial_handles = handles  # the arrays SLURM did accept before this one
                raise
            _test_hook_die_after_sbatch()
            handles += [f"{job}_{j}:{b.id}" for j, b in enumerate(chunk)]
        return handles

    find_jobs = slurm_jobs.find_jobs  # crash recovery: jobs by name, bundles that ran
    started_bundles = slurm_jobs.started_bundles

    def _sbatch(self, argv: list[str], name: str) -> str:
        """Run sbatch; retry with backoff when slurmctld is busy; never submit twice."""
        delays = [1, 2, 4, 8, 16]
        for attempt in range(len(delays) + 1):
            try:
                r = self.shell.run(argv, setup=self.target.setup, timeout=120, check=False,
                                   idempotent=False)
            except RemoteError as e:
                if not e.connection:
                    raise
                found = self._find_job(name)  # did it go through before the connection broke?
                if found:
                    return found
                if attempt == len(delays):
                    raise
                time.sleep(delays[attempt])
                continue
            if r.returncode == 0:
                job = r.stdout.strip().splitlines()[-1].split(";")[0].strip()
                if job.isdigit():
                    return job
            err = (r.stderr or r.stdout).strip()
            if r.returncode == 127:
                raise RemoteError(f"sbatch not found: {err[-300:]}", target=self.target.name,
                                  fix="point host at the cluster's login node, or add a setup "
                                      "line such as 'module load slurm'; then `pb targets "
                                      f"check {self.target.name}`")
            busy = re.search(r"temporarily unavailable|socket timed out|try again|"
                             r"MaxJobCount|resources? busy|slurm_receive_msg", err, re.I)
            if busy and attempt < len(delays):
                found = self._find_job(name)
                if found:
                    return found
                time.sleep(delays[attempt])
                continue
            raise RemoteError(f"sbatch refused the job: {err[-500:]}", target=self.target.name,
                              fix=_FIX_OPTS.replace("TARGET", self.target.name),
                              returncode=r.returncode, stderr=r.stderr)
        raise PushbuttonError("unreachable")  # pragma: no cover

    def _find_job(self, name: str) -> str | None:
        try:
            r = self.shell.run(["squeue", "-h", "-n", name, "-o", "%F"],
                               setup=self.target.setup, timeout=30, check=False)
        except RemoteError:
            return None
        ids = [x.strip() for x in r.stdout.split() if x.strip().isdigit()]
        return ids[0] if ids else None

    # -- poll ----------------------------------------------------------------------------
    def poll(self, handles: list[str]) -> dict[str, BundleState]:
        """One round trip: squeue for every job (+ sacct when accounting exists) and the
        done.json / exit.json of every bundle. A failed query keeps the last states (the
        caller backs off); a job that left the queue without done.json is failed at once."""
        if not handles:
            return {}
        try:
            base = self.base
        except RemoteError as e:
            self.last_poll_error = str(e)
            return {}
        jobs = sorted({h.split(":")[0].split("_")[0] for h in handles} - {"0"})
        bids = [h.split(":", 1)[1] for h in handles]
        acct = bool(self._limits and self._limits.get("accounting")) and bool(jobs)
        try:
            r = self.shell.run_script(self._status_script(base, jobs, bids, acct),
                                      setup=self.target.setup, timeout=60, check=False,
                                      retries=1)
        except RemoteError as e:
            self.last_poll_error = str(e)
            return {}
        text = r.stdout
        if "@@end" not in text:
            self.last_poll_error = f"status query failed: {(r.stderr or text).strip()[-300:]}"
            return {}
        sq = text.split("@@squeue", 1)[1].split("@@rc=", 1)
        if not (sq[1].split("\n", 1)[0].strip() == "0" or "Invalid job id" in sq[0]):
            self.last_poll_error = f"squeue failed: {sq[0].strip()[-300:]}"
            return {}
        self.last_poll_error = None
        states = squeue_states(sq[0])
        acct_rc = sacct_states(text, states) if acct and "@@sacct" in text else {}
        done, exits = remote_files(text) if self.remote else (set(), {})
        out = {}
        for h, bid in zip(handles, bids):
            job = h.split(":")[0]
            if not self.remote:
                self._local_files(bid, done, exits)
            st, reason = states.get(job, (None, ""))
            out[h] = state_of(st, reason, bid in done, exits.get(bid) or acct_rc.get(job), job)
        return out

    def _status_script(self, base: str, jobs: list[str], bids: list[str], acct: bool) -> str:
        """The shell lines of one status round trip, their outputs between @@ markers."""
        squeue = shlex.join(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(jobs),
                             "-o", "%F_%K|%T|%r"]) if jobs else "true"  # "0": a forgotten job
        parts = [f"echo '@@squeue'; {squeue} 2>&1; echo \"@@rc=$?\""]
        if acct:
            sacct = shlex.join(["sacct", "-n", "-P", "-X", "-j", ",".join(jobs),
                                "-o", "JobID,State,ExitCode"])
            parts.append(f"echo '@@sacct'; {sacct} 2>/dev/null")
        parts.append("echo '@@files'")
        if self.remote:
            parts.append(f"cd {shlex.quote(base + '/bundles')} 2>/dev/null && for b in "
                         + " ".join(shlex.quote(b) for b in bids) +
                         '; do [ -e "$b/done.json" ] && echo "done $b"; '
                         '[ -e "$b/exit.json" ] && echo "exit $b $(head -c 300 "$b/exit.json")" '
                         '&& [ -s "$b/worker.err" ] && echo "err $b $(tail -c 300 "$b/worker.err" '
                         '| tr "\\n" " ")"; '
                         "done; true")
        parts.append("echo '@@end'")
        return "\n".join(parts)

    def _local_files(self, bid: str, done: set, exits: dict) -> None:
        """done.json / exit.json (with the worker's last stderr) of a bundle on this host."""
        d = self.store_dir / "bundles" / bid
        if (d / "done.json").exists():
            done.add(bid)
        elif (d / "exit.json").exists():
            exits[bid] = load_json((d / "exit.json").read_text())
            try:
                with open(d / "worker.err", "rb") as f:
                    f.seek(max(0, f.seek(0, 2) - 300))
                    err = f.read().decode("utf-8", "replace")
                exits[bid]["err"] = " ".join(err.split())
            except OSError:
                pass

    def done_bundles(self, bids: list[str]) -> tuple[set[str], bool]:
        """Bundles whose done.json exists (a cheap local look for local-slurm), and whether
        any other one has an exit.json (a crash: worth a full poll now)."""
        if self.remote:
            return set(), False
        done, crashed = set(), False
        for b in bids:
            d = self.store_dir / "bundles" / b
            if (d / "done.json").exists():
                done.add(b)
            elif (d / "exit.json").exists():
                crashed = True
        return done, crashed

    # -- cancel / collect ----------------------------------------------------------------
    def cancel(self, handles: list[str]) -> None:
        jobs = sorted({h.split(":")[0] for h in handles if not h.startswith("0_")})
        for i in range(0, len(jobs), 500):
            self.shell.run(["scancel", *jobs[i:i + 500]], setup=self.target.setup, timeout=60,
                           check=False)

    def checksums(self, bids: list[str]) -> dict[str, tuple[str, int]]:
        """sha256 and size of outcomes.jsonl of bundles on the cluster (for bundles that ended
        without done.json), in one round trip."""
        if not bids:
            return {}
        if not self.remote:
            import hashlib
            out = {}
            for b in bids:
                p = self.store_dir / "bundles" / b / "outcomes.jsonl"
                data = p.read_bytes() if p.exists() else b""
                out[b] = (hashlib.sha256(data).hexdigest(), len(data))
            return out
        script = (f"cd {shlex.quote(self.base + '/bundles')} || exit 3\nfor b in "
                  + " ".join(shlex.quote(b) for b in bids) +
                  '; do f="$b/outcomes.jsonl"; [ -e "$f" ] || : > "$f"; '
                  'echo "$b $(sha256sum < "$f" | cut -d" " -f1) $(wc -c < "$f")"; done')
        r = self.shell.run_script(script, timeout=120, check=False, retries=2)
        out = {}
        for line in r.stdout.splitlines():
            bits = line.split()
            if len(bits) == 3 and bits[2].isdigit():
                out[bits[0]] = (bits[1], int(bits[2]))
        return out

    def collect_many(self, bids: list[str], timeout: float = 600) -> None:
        """Pull the outputs of these bundles (not bundle.json: the local one is kept)."""
        if not self.remote or not bids:
            return
        filters = ["--exclude=/*/bundle.json", "--exclude=/*/.pb-partial/"]
        for b in bids:
            filters += [f"--include=/{b}/", f"--include=/{b}/*"]
        filters.append("--exclude=*")
        self.shell.get(f"{self.base}/bundles/", str(self.store_dir / "bundles") + "/",
                       filters=filters, timeout=timeout)

    def collect(self, bundle: BundleRef) -> Path:
        self.collect_many([bundle.id])
        return bundle.dir

    def close(self) -> None:
        self.shell.close()


def _test_hook_die_after_sbatch() -> None:
    """Fault injection for the tests only: when PB_TEST_DIE_AFTER_SBATCH names a file that
    exists, the file is removed and the process dies at once, right after SLURM accepted an
    array and before its job id is recorded (the crash that submission must survive)."""
    p = os.environ.get("PB_TEST_DIE_AFTER_SBATCH")
    if p and os.path.exists(p):
        os.unlink(p)
        os._exit(99)

