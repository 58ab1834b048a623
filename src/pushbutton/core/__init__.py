"""Floor 0: what every stage shares (errors, ids, the task-side API, file helpers)."""
