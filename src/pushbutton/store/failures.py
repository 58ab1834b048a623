"""The top causes of an experiment's failed tasks, as `pb run`, `exp.run()` and `pb status` say
them: grouped by cause (core/causes.py: exception type and the user's line, not the exact
message), most frequent first, each with one task and its message."""
from __future__ import annotations


def _has_cause(db) -> bool:
    # a read-only store made by an earlier version has no cause column (nothing can add it)
    return any(r[1] == "cause" for r in db.execute("PRAGMA table_info(tasks)"))


def top_causes(store, eid: int, limit: int = 5) -> dict:
    """{'failed': n, 'n_causes': k, 'kinds': {kind: n}, 'causes': [{'kind', 'cause', 'count',
    'task', 'error'}]}: the `limit` (0: all) most frequent causes among the scheduled tasks
    that failed."""
    db = store.db
    key = "coalesce(cause, error_kind || ': ' || coalesce(error, ''))" if _has_cause(db) \
        else "error_kind || ': ' || coalesce(error, '')"
    # SQLite: with min(), the bare columns come from the row holding the minimum (the first
    # failed task of the group in space order)
    rows = db.execute(
        f"SELECT error_kind, {key} AS k, count(*) AS n, min(idx), id, error FROM tasks "
        "WHERE exp=? AND state='failed' AND state != 'done' AND idx IS NOT NULL "
        "GROUP BY error_kind, k "
        "ORDER BY n DESC, min(idx)", (eid,)).fetchall()
    out = [{"kind": kind or "unknown", "cause": k, "count": n, "task": tid, "error": err or ""}
           for kind, k, n, _, tid, err in rows]
    kinds: dict = {}
    for r in out:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + r["count"]
    return {"failed": sum(kinds.values()), "n_causes": len(out), "kinds": kinds,
            "causes": out[:limit] if limit else out}
