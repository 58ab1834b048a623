"""What the pages show, read from the store: one Store per server thread (SQLite connections
are not used by two threads at once), and the experiments' summaries computed at most once a
second however many pages follow them (the live channel costs the store one reader)."""
from __future__ import annotations

import threading
import time

from pushbutton.store.database import STATES, Store

SUMMARY_TTL = 0.8  # seconds a summary of all experiments is reused
STALE_S = 3.0      # ... and answered at once while a fresh one is made


class Data:
    def __init__(self, root):
        self.root = root
        self._local = threading.local()
        self._lock = threading.Lock()
        self._summary = (0.0, None)
        self._summary_store = None
        from pushbutton.ui.results import Tables
        self.tables = Tables()

    def store(self) -> Store:
        s = getattr(self._local, "store", None)
        if s is None:
            s = self._local.store = Store(self.root, create=False)
        return s

    def forget(self) -> None:
        """After an action: the next summary is read afresh."""
        with self._lock:
            self._summary = (0.0, None)

    def experiment(self, name: str) -> dict | None:
        """The experiment's row (id, name, n_tasks, created, spec) or None."""
        return next((e for e in self.store().experiments() if e["name"] == name), None)

    def summaries(self) -> list[dict]:
        """One summary per experiment (see `summary`), newest activity first. Computed at
        most once per SUMMARY_TTL whoever asks; a copy up to STALE_S old is answered at once
        while a fresh one is computed in the background (the live channel brings it)."""
        t, rows = self._summary
        age = time.monotonic() - t
        if rows is not None and age < SUMMARY_TTL:
            return rows
        if rows is not None and age < STALE_S:
            if self._lock.acquire(blocking=False):  # one refresh at a time
                threading.Thread(target=self._refresh, args=(True,), daemon=True,
                                 name="pb-ui-summary").start()
            return rows
        with self._lock:
            t, rows = self._summary
            if rows is not None and time.monotonic() - t < SUMMARY_TTL:
                return rows  # made while this one waited
            return self._refresh(False)

    def _refresh(self, release: bool) -> list[dict]:
        """(Holding self._lock) a new summary of every experiment, read through one Store
        kept for this (only ever used under the lock, from whichever thread)."""
        try:
            if self._summary_store is None:
                self._summary_store = Store(self.root, create=False)
            store = self._summary_store
            rows = [summary(store, e) for e in reversed(store.experiments())]
            self._summary = (time.monotonic(), rows)
            return rows
        finally:
            if release:
                self._lock.release()


def exp_or_404(data: Data, name: str) -> dict:
    from starlette.exceptions import HTTPException
    e = data.experiment(name)
    if e is None:
        raise HTTPException(404, f"no experiment {name!r} in this store")
    return e


def summary(store, e: dict) -> dict:
    """What the experiments page shows of one experiment, from `pb status`'s own function."""
    from pushbutton.execution.operations import status
    try:
        s = status(store, e["id"], e["name"], causes=1)
    except Exception as err:  # noqa: BLE001 - a damaged store says so on its row
        return {"name": e["name"], "state": "unreadable", "error": str(err),
                "counts": dict.fromkeys(STATES, 0), "total": 0, "progress": 0.0,
                "finished": 0, "rate_per_s": None, "eta_s": None, "failed": 0,
                "last_run": None, "target": None}
    runs = store.db.execute("SELECT started, ended, target, status FROM runs WHERE exp=? "
                            "ORDER BY id DESC LIMIT 1", (e["id"],)).fetchone()
    c = s["counts"]
    state = "running" if s["active"] else (s["last_run_status"] or "not run")
    return {"name": e["name"], "state": state, "counts": c, "total": s["total"],
            "progress": s["progress"], "finished": c["done"] + c["failed"],
            "rate_per_s": s["rate_per_s"], "eta_s": s["eta_s"],
            "failed": c["failed"],
            "last_run": runs[0] if runs else None,
            "last_run_ended": runs[1] if runs else None,
            "target": runs[2] if runs else None, "error": None}
