"""What SLURM says about a bundle's job -> a BundleState with its cause: the states and exit
statuses of squeue / sacct and the bundle's own files (done.json, exit.json)."""
from __future__ import annotations

import json

from pushbutton.core.files import signal_name
from pushbutton.execution.backends.base import FAILED, FINISHED, QUEUED, RUNNING, BundleState

QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                 "RESIZING", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def state_of(slurm_state: str | None, reason: str = "", done: bool = False,
             exit_info: dict | None = None, job: str = "") -> BundleState:
    """A SLURM job state (None: the job is in no queue any more) -> BundleState with a cause."""
    if done:
        return BundleState(FINISHED)
    st = (slurm_state or "").split()[0].rstrip("+") if slurm_state else None
    rc = exit_info.get("rc") if exit_info else None
    where = f"job {job}: " if job else ""
    if st in QUEUED_STATES:
        return BundleState(QUEUED)
    if st in RUNNING_STATES:
        return BundleState(RUNNING)
    # SLURM's own verdicts say more than the exit status of a worker it stopped
    if st == "TIMEOUT" or st == "DEADLINE":
        return BundleState(FAILED, f"{where}SLURM stopped it at its time limit ({st}); raise "
                           "the task timeout or pass --sbatch '--time=...'", "timeout")
    if st == "OUT_OF_MEMORY":
        return BundleState(FAILED, f"{where}SLURM stopped it for using more memory than "
                           "requested (OUT_OF_MEMORY)", "memory")
    if st in ("NODE_FAIL", "BOOT_FAIL"):
        return BundleState(FAILED, f"{where}its node failed ({st}"
                           + (f", {reason}" if reason and reason != "None" else "") + ")", "lost")
    if st == "PREEMPTED":
        return BundleState(FAILED, f"{where}preempted by SLURM (PREEMPTED)", "preempted")
    if st == "CANCELLED":
        return BundleState(FAILED, f"{where}cancelled outside pushbutton (scancel; CANCELLED)",
                           "lost")
    if rc is not None and rc != 0:
        if rc > 128 or rc < 0:
            sig = abs(rc) - 128 if rc > 128 else -rc
            name = signal_name(sig)
            return BundleState(FAILED, f"{where}the worker was killed by signal {name}"
                               + (f" ({st})" if st else ""), "signal")
        if rc == 70:
            return BundleState(FAILED, f"{where}a task timed out in native code; worker "
                               "stopped", "timeout")
        err = (exit_info or {}).get("err")
        return BundleState(FAILED, f"{where}the worker exited with status {rc}"
                           + (f": {err[-200:]}" if err else ""), "exit")
    if st in ("FAILED", "SPECIAL_EXIT", "REVOKED"):
        return BundleState(FAILED, f"{where}the job failed ({st}"
                           + (f", {reason}" if reason and reason != "None" else "") + ")", "exit")
    if st == "COMPLETED":
        return BundleState(FAILED, f"{where}the job ended (COMPLETED) without writing its "
                           "outcome (done.json)", "lost")
    if rc == 0:
        return BundleState(FAILED, f"{where}the worker ended without writing done.json", "lost")
    return BundleState(FAILED, f"{where}the job left SLURM's queue without writing its outcome"
                       + (f" (last state {st})" if st else " (cancelled while pending, e.g. by "
                          "scancel, or its record expired)"), "lost")


def squeue_states(text: str) -> dict[str, tuple[str, str]]:
    """squeue lines "JOB_INDEX|STATE|REASON" -> {job: (state, reason)}."""
    states = {}
    for line in text.splitlines():
        bits = line.strip().split("|")
        if len(bits) >= 2 and "_" in bits[0]:
            states[bits[0]] = (bits[1], bits[2] if len(bits) > 2 else "")
    return states


def sacct_states(text: str, states: dict) -> dict[str, dict]:
    """Jobs squeue has forgotten (older than MinJobAge), from sacct: their states are added
    to `states`; returns their exit statuses {job: {"rc": N}}."""
    acct_rc: dict[str, dict] = {}
    for line in text.split("@@sacct", 1)[1].split("@@files", 1)[0].splitlines():
        bits = line.strip().split("|")
        if len(bits) >= 2 and "_" in bits[0] and bits[0] not in states:
            states[bits[0]] = (bits[1], "")
            rc, _, sig = (bits[2] if len(bits) > 2 else "").partition(":")
            if sig.isdigit() and int(sig):
                acct_rc[bits[0]] = {"rc": 128 + int(sig)}
            elif rc.isdigit() and int(rc):
                acct_rc[bits[0]] = {"rc": int(rc)}
    return acct_rc


def remote_files(text: str) -> tuple[set, dict]:
    """The "done B" / "exit B {json}" / "err B tail" lines of a remote status query."""
    done, exits = set(), {}
    for line in text.split("@@files", 1)[1].split("@@end", 1)[0].splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "done":
            done.add(rest.strip())
        elif kind == "exit":
            b, _, js = rest.partition(" ")
            exits[b] = load_json(js)
        elif kind == "err":
            b, _, err = rest.partition(" ")
            exits.setdefault(b, {})["err"] = err.strip()
    return done, exits


def load_json(text: str) -> dict:
    try:
        v = json.loads(text)
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {}

