"""The only writes: POST actions (cancel an experiment, retry its failed tasks, make its
report). The token check (app.Guard) has passed before any of them runs."""
from __future__ import annotations


def routes() -> list:
    return []
