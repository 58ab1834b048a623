"""The words a run ends with (`pb run`, `exp.run()`, `pb retry`) and the failure lines of
`pb status`: counts, the top causes of failures with one task each, what to type next."""
from __future__ import annotations

ID_CHARS = 12  # a task id prefix that stays unique at 10^6 tasks (8 characters would not)
WIDTH = 80


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def failure_lines(top: dict, name: str, more_hint: str | None = None,
                  logs: str = "pb logs") -> list[str]:
    """The top causes (store/failures.top_causes): per cause its count, what it is, and one task
    with its message and the command that shows its log (`logs` ID)."""
    if not top or not top.get("failed"):
        return []
    n, k = top["failed"], top["n_causes"]
    lines = [f"failures: {n:,} task{'s' * (n != 1)}, {k:,} cause{'s' * (k != 1)}"
             + (" (most frequent first)" if k > 1 else "") + ":"]
    width = max(len(f"{c['count']:,}") for c in top["causes"])
    pad = " " * (width + 4)
    for c in top["causes"]:
        kind, key, err = c["kind"], c["cause"], (c["error"] or "").strip()
        first = err.splitlines()[0] if err else ""
        # an exception's cause names its type and place; other kinds read best as their message
        title = key if not key.startswith(f"{kind}:") or not first else f"{kind}: {first}"
        lines.append(f"  {c['count']:>{width},}  " + _clip(title, WIDTH - width - 4))
        tid = c["task"][:ID_CHARS]
        hint = f"  ({logs} {tid})"
        if first and first not in title:
            lines.append(pad + "e.g. " + _clip(first, WIDTH - len(pad) - 5 - len(hint)) + hint)
        else:
            lines.append(pad + f"e.g. task {tid}: {logs} {tid}")
    rest = k - len(top["causes"])
    if rest > 0:
        left = n - sum(c["count"] for c in top["causes"])
        lines.append(f"  ... {rest:,} more cause{'s' * (rest != 1)} ({left:,} tasks)"
                     + (f": {more_hint}" if more_hint else ""))
    return lines


def retry_note(top: dict, retries: int, retry_on) -> list[str]:
    """Why failures of a kind that the retry rule leaves out were not retried (when retries
    are set at all)."""
    if not retries or not top or not top.get("failed"):
        return []
    kinds = sorted(set(top.get("kinds") or {c["kind"] for c in top["causes"]}) - set(retry_on))
    if not kinds:
        return []
    on = ", ".join(f'"{k}"' for k in retry_on)
    lines = [f"note: {', '.join(kinds)} failures are not retried (retry_on = [{on}])"]
    if "exception" in kinds or "exit" in kinds:
        lines.append("      they fail the same way again: fix the cause, then `pb retry`; "
                     "for a flaky")
        lines.append("      task add its kind to [resources] retry_on")
    return lines


def run_lines(name: str, counts: dict, seconds: float | None, top: dict | None = None,
              resources=None, ref: str | None = None) -> list[str]:
    """A run's summary: counts, then the top causes of failures (if any). `ref`: how commands
    name the experiment (its spec file where its store is not the one found from here)."""
    ref = ref or name
    logs = "pb logs" if ref == name else f"pb logs -e {ref}"
    c = counts or {}
    not_run = c.get("pending", 0) + c.get("running", 0) + c.get("queued", 0)
    head = (f"{name}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
            f"{not_run} not run")
    if c.get("cancelled"):
        head += f", {c['cancelled']} cancelled"
    if seconds is not None:
        head += f" ({seconds:.1f}s this run)"
    lines = [head]
    if top and top.get("failed"):
        lines += failure_lines(top, name, more_hint=f"pb status {ref} --causes 0", logs=logs)
        if resources is not None:
            lines += retry_note(top, resources.retries, resources.retry_on)
    return lines
