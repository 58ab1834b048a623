"""pb ui in a real headless Chromium, against a sweep that is running: the token opens it,
progress moves without a reload, the results table sorts and filters, a failed task shows its
traceback, cancel stops the sweep, hostile text stays text, no token means 403 (a POST with
only the cookie too), and nothing is fetched from anywhere but the server on 127.0.0.1.

One `pb ui` server and one browser for the module. Skipped when Chromium or websocket-client
is missing, except under CI=true (then it fails)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from _chromium_cdp import Browser, find_chromium
from _ui_data import HOSTILE, SCRIPT_END, UiServer, add_hostile_experiment, make_project

pytestmark = pytest.mark.browser
CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    try:
        import websocket  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        if CI:
            pytest.fail("chromium (or websocket-client) missing under CI=true: "
                        "run scripts/setup.d/40-chromium.sh and pip install -e .[test]")
        pytest.skip("chromium or websocket-client not installed")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A sweep running in the background (`pb run`, 2 workers, 0.2 s a task), and pb ui."""
    root = make_project(tmp_path_factory.mktemp("uib") / "proj", name="live", xs=range(100))
    run = subprocess.Popen([sys.executable, "-m", "pushbutton", "run", "experiment.toml",
                            "--workers", "2"], cwd=root, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=dict(os.environ, PB_UI_SLEEP="0.2"))
    from pushbutton.store.database import Store
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until some tasks are done and x == 3's have failed
        try:
            c = Store(root, create=False).counts(1)
            if c["failed"] >= 1 and c["done"] >= 4:
                break
        except Exception:  # noqa: BLE001 - the store is being created
            pass
        time.sleep(0.2)
    add_hostile_experiment(root)
    server = UiServer(root)
    yield server
    server.close()
    if run.poll() is None:
        run.terminate()
    run.wait(30)


@pytest.fixture(scope="module")
def page(browser, running):
    p = browser.new_page(width=1280, height=900)
    yield p
    p.close()


def go(page, action: str, timeout: float = 30):
    """Run `action` (JS that navigates: a click, a submit) and wait for the new page's load."""
    b = page.browser
    seen = len(b.events)
    page.eval(action)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in b.events[seen:]:
            if ev["method"] == "Page.loadEventFired" and ev.get("sessionId") == page.session:
                return
        b._recv()
    raise AssertionError(f"no page load after {action}")


def open_url(page, url: str):
    go(page, f"location.href = {url!r}")


def no_injection(page):
    assert page.eval("window.__pwned === undefined")
    assert page.eval("document.querySelectorAll('img').length") == 0
    assert page.eval("""Array.from(document.querySelectorAll('*')).filter(e =>
        Array.from(e.attributes).some(a => a.name.startsWith('on'))).length""") == 0
    srcs = page.eval("Array.from(document.scripts).map(s => s.getAttribute('src'))")
    assert srcs and all(s and s.startswith("/static/") for s in srcs), srcs


def test_without_the_token_the_page_is_403(page, running):
    open_url(page, running.base + "/")
    assert "403 forbidden" in page.eval("document.body.innerText")
    statuses = [e["params"]["response"]["status"] for e in page.browser.events
                if e["method"] == "Network.responseReceived"
                and e["params"]["response"]["url"] == running.base + "/"]
    assert statuses and statuses[-1] == 403


def test_the_token_opens_the_live_experiments_page(page, running):
    open_url(page, running.url)
    assert page.eval("location.search") == ""  # the token left the address bar
    assert page.eval("document.querySelector('tr[data-exp=\"live\"]') !== null")
    page.eval("window.__same_page = 1")
    pct = "document.querySelector('tr[data-exp=\"live\"] [data-k=pct]').textContent"
    first = float(page.eval(pct).rstrip("%"))
    deadline = time.monotonic() + 30
    now = first
    while time.monotonic() < deadline and now <= first:
        time.sleep(0.5)
        now = float(page.eval(pct).rstrip("%"))
    assert now > first, "the progress did not move"
    assert page.eval("window.__same_page") == 1  # no reload
    assert page.eval("document.querySelector('tr[data-exp=\"live\"] [data-k=state]')"
                     ".textContent.trim()") == "running"
    no_injection(page)
    assert HOSTILE in page.eval("document.body.innerText")  # the hostile-named experiment


def test_a_post_with_only_the_cookie_is_refused(page, running):
    status = page.eval("fetch('/exp/live/cancel', {method: 'POST'}).then(r => r.status)")
    assert status == 403
    state = page.eval("fetch('/api/experiments').then(r => r.json())"
                      ".then(rows => rows.find(r => r.name === 'live').state)")
    assert state == "running"


def test_sort_and_filter_the_results_table(page, running):
    open_url(page, running.base + "/exp/live")
    no_injection(page)
    col = """(name) => { const h = Array.from(document.querySelectorAll('#pb-results th a'))
        .map(a => a.dataset.col); const i = h.indexOf(name);
        return Array.from(document.querySelectorAll('#pb-results tbody tr'))
        .map(r => r.children[i].textContent); }"""
    go(page, "document.querySelector('#pb-results th a[data-col=x]').click()")
    xs = [int(v) for v in page.eval(f"({col})('x')")]
    assert xs == sorted(xs) and len(xs) == 50
    go(page, "document.querySelector('#pb-results th a[data-col=x]').click()")  # descending
    xs = [int(v) for v in page.eval(f"({col})('x')")]
    assert xs == sorted(xs, reverse=True) and xs[0] == 99
    go(page, """(() => { const f = document.getElementById('pb-filter');
        f.querySelector('input[name=where]').value = "pb_status = 'failed'";
        f.requestSubmit(); })()""")
    states = page.eval(f"({col})('pb_status')")
    assert states and set(states) == {"failed"}
    labels = page.eval(f"({col})('label')")
    assert HOSTILE in labels and SCRIPT_END in labels  # as text, in the cells
    no_injection(page)


def test_a_failed_task_shows_its_traceback(page, running):
    open_url(page, running.base + "/exp/live")
    go(page, "document.querySelector('#pb-causes a[href*=\"/task/\"]').click()")
    text = page.eval("document.body.innerText")
    assert "Traceback (most recent call last)" in text and "ValueError" in text
    assert HOSTILE in text and SCRIPT_END in text
    no_injection(page)


def test_cancel_changes_the_state(page, running):
    open_url(page, running.base + "/exp/live")
    assert page.eval("document.querySelector('#pb-summary [data-k=state]')"
                     ".textContent.trim()") == "running"
    page.eval("window.confirm = () => true")  # the confirmation dialog, answered yes
    go(page, "document.getElementById('pb-cancel').click()", timeout=60)
    assert "cancelled:" in page.eval("document.getElementById('pb-note').textContent")
    state = "document.querySelector('#pb-summary [data-k=state]').textContent.trim()"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and page.eval(state) == "running":
        time.sleep(0.3)
    assert page.eval(state) != "running"
    assert page.eval("fetch('/api/experiments').then(r => r.json()).then(rows => "
                     "rows.find(r => r.name === 'live').counts.cancelled)") > 0


def test_no_request_leaves_the_server(page, running):
    urls = [e["params"]["request"]["url"] for e in page.browser.events
            if e["method"] == "Network.requestWillBeSent"]
    assert len(urls) > 5
    outside = [u for u in urls if not u.startswith((running.base + "/", "data:", "about:"))]
    assert outside == []
    assert page.errors() == [] or all("403" in e for e in page.errors())
