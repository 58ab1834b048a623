"""pb ui while the results table's copy (ui/results.py) is being made: the first copy is said
on the page instead of waited for, a newer one is served as the previous with an "updating"
note, and a copy's figures are computed once, in its thread, for every request after it."""
from __future__ import annotations

import json
import os
import time

from starlette.testclient import TestClient

TOKEN = "copy-token"


def _client(root, first_wait_s):
    from pushbutton.ui.app import create_app
    c = TestClient(create_app(root, TOKEN), base_url="http://127.0.0.1")
    c.get(f"/?token={TOKEN}", headers={"Accept": "text/html"})
    c.app.state.data.tables.first_wait_s = first_wait_s
    return c


def _ready(tables, name, timeout=120):
    t = time.monotonic()
    while (name not in tables._snaps or tables.updating(name)) and \
            time.monotonic() - t < timeout:
        time.sleep(0.05)
    assert name in tables._snaps and not tables.updating(name)


def _rows(html):
    """The results table's part of the page."""
    return html.split('id="pb-results"')[1].split("</tbody>")[0].count("<tr><td>")


def test_the_first_copy_is_said_not_waited_for(finished, monkeypatch):
    import threading

    from pushbutton.ui import results as U
    go, real = threading.Event(), U.Tables._build

    def held(self, *a):  # the copy (a child process) held until the pending pages are seen
        assert go.wait(120)
        return real(self, *a)
    monkeypatch.setattr(U.Tables, "_build", held)
    c = _client(finished, 0.0)
    try:
        t = time.monotonic()
        r = c.get("/exp/sweep")
        took = time.monotonic() - t
        assert r.status_code == 200
        assert 'id="pb-table-pending"' in r.text and "being copied" in r.text
        assert 'http-equiv="refresh"' in r.text  # the page reloads itself
        assert _rows(r.text) == 0
        assert took < 60  # (not the 120 s the copy is held)
        api = c.get("/api/exp/sweep/results").json()
        assert api["rows"] == [] and "being copied" in api["pending"]
        fig = c.get("/api/exp/sweep/figures").json()
        assert fig["figures"] == [] and fig["version"].startswith("pending-")
        assert "being copied" in fig["problems"][0]
        tid = c.app.state.data.store().db.execute("SELECT id FROM tasks LIMIT 1").fetchone()[0]
        r = c.get(f"/exp/sweep/task/{tid}")
        assert r.status_code == 200 and 'id="pb-task-pending"' in r.text
        go.set()
        _ready(c.app.state.data.tables, "sweep")
        r = c.get("/exp/sweep")
        assert "pb-table-pending" not in r.text and _rows(r.text) > 0
        assert "pb-table-updating" not in r.text and 'http-equiv="refresh"' not in r.text
        fig = c.get("/api/exp/sweep/figures").json()
        assert not fig["version"].startswith("pending-") and fig["figures"]
    finally:
        go.set()
        c.app.state.data.tables.close()


def test_a_change_serves_the_previous_copy_with_an_updating_note(finished, monkeypatch):
    from pushbutton.ui import results as U
    c = _client(finished, 120.0)
    tables = c.app.state.data.tables
    try:
        first = c.get("/api/exp/sweep/results").json()
        assert first["rows"] and not first["updating"] and first["pending"] is None
        snap = tables._snaps["sweep"]
        # a change the copy's key sees (the results manifest), the copy older than FRESH_S
        manifest = finished / ".pushbutton" / "results" / "sweep" / "MANIFEST.json"
        st = manifest.stat()
        os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        snap.built -= 2 * U.FRESH_S
        t = time.monotonic()
        r = c.get("/exp/sweep")
        assert time.monotonic() - t < 5
        assert 'id="pb-table-updating"' in r.text and _rows(r.text) > 0
        assert c.get("/api/exp/sweep/results").json()["rows"] == first["rows"]
        _ready(tables, "sweep")
        assert tables._snaps["sweep"] is not snap
        again = c.get("/api/exp/sweep/results").json()
        assert again["rows"] == first["rows"] and not again["updating"]
        assert "pb-table-updating" not in c.get("/exp/sweep").text
    finally:
        tables.close()


def test_a_copys_figures_are_computed_once_in_its_thread(finished, monkeypatch):
    """The figures of a new copy are made as it is made; a request (of any ChartData over the
    same tables, e.g. a new one) finds them, equal to a computation of its own."""
    from pushbutton.store.database import Store
    from pushbutton.ui import charts_data as D
    from pushbutton.ui import results as U
    tables = U.Tables()
    store = Store(finished, create=False)
    try:
        D.ChartData(lambda: Store(finished, create=False), tables=tables)
        assert tables.warm is D.warm
        snap = tables.get(store, store.experiment("sweep"), "sweep")
        assert snap.warmed.wait(120)
        with snap.cache_lock:  # the copy's thread has computed them
            (made, _, _), = snap.cache.values()
        calls = []
        real = D.compute_from_table
        monkeypatch.setattr(D, "compute_from_table",
                            lambda *a, **k: calls.append(1) or real(*a, **k))
        served = D.ChartData(lambda: Store(finished, create=False), tables=tables)\
            .snapshot("sweep")
        assert calls == [] and served is made
        own = real(store, store.experiment("sweep"), "sweep", served["version"], snap)
        for part in ("figures", "throughput"):
            assert json.dumps(own[part]) == json.dumps(served[part])

        # counts that changed since (a run going on; the same copy): the figures are the
        # copy's, the throughput chart is redrawn with the counts now, nothing recomputed
        now = dict(store.counts(store.experiment("sweep")))
        now["pending"] = now.get("pending", 0) + 5
        monkeypatch.setattr(store.__class__, "counts", lambda self, eid: now)
        monkeypatch.setattr(U, "FRESH_S", 1e9)  # (no newer copy started: the same copy)
        served2 = D.ChartData(lambda: Store(finished, create=False), tables=tables)\
            .snapshot("sweep")
        assert calls == [] and served2["version"] != served["version"]
        assert served2["figures"] is made["figures"]
        assert served2["throughput"]["now"] == now
        assert served2["throughput"]["total"] == served["throughput"]["total"] + 5
        own2 = real(store, store.experiment("sweep"), "sweep", served2["version"], snap,
                    counts=now)
        assert json.dumps(own2["throughput"]) == json.dumps(served2["throughput"])
    finally:
        store.close()
        tables.close()


def test_a_first_copy_that_failed_is_said_not_retried_as_pending(finished):
    """A first copy that fails after the page stopped waiting: the next page says why (the
    child's last line), instead of 'being copied' again for the same store."""
    import pytest

    from pushbutton.core.errors import PushbuttonError
    from pushbutton.store.database import Store
    from pushbutton.ui import results as U
    tables, store = U.Tables(first_wait_s=0.0), Store(finished, create=False)
    try:
        eid = store.experiment("sweep")
        with pytest.raises(U.NotReady):  # a name the store has no results of: the copy fails
            tables.get(store, eid, "no-such-experiment", wait=tables.page_wait)
        t = time.monotonic()
        while tables.updating("no-such-experiment") and time.monotonic() - t < 120:
            time.sleep(0.05)
        with pytest.raises(PushbuttonError) as e:
            tables.get(store, eid, "no-such-experiment", wait=tables.page_wait)
        assert not isinstance(e.value, U.NotReady) and "being copied" not in str(e.value)
        assert not tables.updating("no-such-experiment")  # (no new copy started)
    finally:
        store.close()
        tables.close()


def test_a_copy_taken_before_a_newer_one_is_still_read(finished, monkeypatch):
    """A request that took the experiment's copy just before a newer one replaced it reads
    it to the end: the replaced copy stays open RETIRE_S (it was closed at once, and that
    request's query failed: a results page with no rows, a 500 on the figures)."""
    from pushbutton.store.database import Store
    from pushbutton.ui import results as U
    tables, store = U.Tables(), Store(finished, create=False)
    try:
        eid = store.experiment("sweep")
        old = tables.get(store, eid, "sweep")
        monkeypatch.setattr(U, "FRESH_S", 0.0)
        monkeypatch.setattr(U, "change_key", lambda *a, **k: ("changed",))
        tables.get(store, eid, "sweep")  # a newer copy is made
        _ready(tables, "sweep")
        assert tables._snaps["sweep"] is not old
        got = U.query(old, where="pb_status = 'failed'")
        assert got["error"] is None and got["total"] >= 1 and got["rows"]
        monkeypatch.setattr(U, "RETIRE_S", 0.0)  # past its time: the next copy closes it
        monkeypatch.setattr(U, "change_key", lambda *a, **k: ("changed again",))
        tables.get(store, eid, "sweep")
        _ready(tables, "sweep")
        assert not old.path.exists()
        assert U.query(tables._snaps["sweep"], where="pb_status = 'failed'")["rows"]
    finally:
        store.close()
        tables.close()
