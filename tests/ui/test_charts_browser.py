"""The experiment page's charts in a real headless Chromium: Plotly (served by pb ui) draws the
spec's figures, the throughput chart and a task's series under the page's CSP, with no
console error and no request leaving 127.0.0.1; hovering a point shows its values; hostile
parameter values and metric names render as text.

Skipped when Chromium or websocket-client is missing, except under CI=true (then it fails)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from _charts_project import HOSTILE, METRIC, grow, make_project
from _chromium_cdp import Browser, find_chromium  # tests/shared (conftest.py)

pytestmark = pytest.mark.browser
CI = os.environ.get("CI", "").lower() == "true"
TOKEN = "browser-charts-token"


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    try:
        import websocket  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        if CI:
            pytest.fail("chromium (or websocket-client) missing under CI=true")
        pytest.skip("chromium or websocket-client not installed")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("charts-browser")
    make_project(root)
    return root


@pytest.fixture(scope="module")
def server(root):
    """pb ui's app under uvicorn on a free port of 127.0.0.1, in a thread."""
    import asyncio

    import uvicorn

    from pushbutton.ui.app import create_app
    from pushbutton.ui.server import bind
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(create_app(root, TOKEN), log_level="warning", access_log=False,
                            lifespan="off", ws="none")
    srv = uvicorn.Server(config)
    srv.install_signal_handlers = lambda: None
    th = threading.Thread(target=lambda: asyncio.run(srv.serve(sockets=[sock])), daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    th.join(10)


def wait_for(page, js: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = page.eval(js)
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {js}: errors {page.errors()}")


@pytest.fixture(scope="module")
def page(server, browser):  # the browser set up after the server, so it closes first and
    # the server's graceful shutdown has no open connection to wait for (it waited 10 s)
    p = browser.new_page(width=1300, height=1000)
    p.open(f"{server}/exp/phase?token={TOKEN}")
    wait_for(p, "document.querySelectorAll('#pb-figures figure .main-svg').length >= 3 && "
                "document.querySelectorAll('#pb-throughput .main-svg').length >= 1 && "
                "document.querySelectorAll('#pb-series .pb-series-figs .main-svg').length >= 1")
    return p


def test_figures_render_under_the_csp_offline(page, server):
    names = page.eval("Array.from(document.querySelectorAll('#pb-figures figure'))"
                      ".map(f => f.dataset.name)")
    assert names == ["01-heatmap-success", "02-line-b_loss__b", "03-learning_curves-loss"]
    # the heatmap's cells, the line plot's points, the curves' bands: drawn, not empty
    assert page.eval("document.querySelectorAll('#pb-figures .heatmaplayer image').length") >= 1
    assert page.eval("document.querySelectorAll('#pb-figures .scatterlayer .point').length") >= 6
    assert page.eval("document.querySelector('#pb-throughput').textContent")\
        .count("20 done, 4 failed") == 1
    assert "task time " in page.eval("document.querySelector('#pb-throughput .pb-timing')"
                                     ".textContent")
    assert page.errors() == []  # CSP violations are console errors too
    # (Plotly draws a heatmap's cells as a data: image: no request leaves the page)
    outside = [u for u in page.requests() if not u.startswith((server + "/", "data:"))]
    assert outside == []
    assert f"{server}/static/vendor/plotly.min.js" in page.requests()


def test_hostile_names_render_as_text(page):
    assert page.eval("window.__pwned === undefined")
    assert page.eval("document.querySelectorAll('img[src=x], [onerror], b').length") == 0
    legend = page.eval("Array.from(document.querySelectorAll('#pb-figures .legendtext'))"
                       ".map(e => e.textContent)")
    assert f"method = {HOSTILE}" in legend
    titles = page.eval("Array.from(document.querySelectorAll('#pb-figures .gtitle, "
                       "#pb-figures .ytitle')).map(e => e.textContent)")
    assert any(t.startswith(METRIC.replace("_", " ")) for t in titles), titles


def test_hovering_a_point_shows_its_values(page):
    box = page.eval("""(() => { const f = document.querySelector(
        '[data-name="02-line-b_loss__b"]'); f.scrollIntoView();
        const p = f.querySelector('.scatterlayer .point').getBoundingClientRect();
        return [p.x + p.width / 2, p.y + p.height / 2]; })()""")
    for kind in ("mouseMoved", "mouseMoved"):
        page.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1]})
        time.sleep(0.2)
    text = wait_for(page, "(document.querySelector('[data-name=\"02-line-b_loss__b\"] "
                          ".hoverlayer .hovertext') || {}).textContent", timeout=10)
    # rho = 0 of the first hue: 2 deltas x 2 reps averaged; the hostile names as text
    assert f"{METRIC}: mean " in text and "n = 4" in text and "rho = 0" in text, text
    assert text.startswith(f"method = {HOSTILE}") or text.startswith("method = lasso"), text


def test_choosing_a_task_draws_its_series(page):
    tid = page.eval("document.querySelector('#pb-series input').placeholder.split(' ')[0]")
    page.eval(f"""(() => {{ const i = document.querySelector('#pb-series input');
        i.value = '{tid[:8]}'; i.form.requestSubmit(); }})()""")
    legend = wait_for(page, "(() => { const t = Array.from(document.querySelectorAll("
                            "'#pb-series .legendtext')).map(e => e.textContent); "
                            "return t.length === 1 ? t : null; })()")
    assert legend[0].startswith(tid[:10])
    assert page.errors() == []


def test_new_results_redraw_the_open_page(page, root):
    """No reload: the page's polling picks up a run that adds 12 done tasks."""
    before = page.eval("document.querySelector('#pb-fig-01-heatmap-success .pb-plot')"
                       ".querySelector('.heatmaplayer image').getAttribute('href')")
    grow(root)
    wait_for(page, "document.querySelector('#pb-throughput .pb-now').textContent"
                   ".startsWith('now: 32 done, 4 failed')", timeout=30)
    n = wait_for(page, "(() => { const gd = document.querySelector("
                       "'[data-name=\"02-line-b_loss__b\"] .pb-plot'); "
                       "const c = gd.data[0].customdata.map(d => d[2]); "
                       "return c[0] === 6 ? c : null; })()", timeout=30)
    assert n == [6, 6, 4]  # 2 deltas x 3 reps per point now (rep 0 fails at rho = 1)
    after = page.eval("document.querySelector('#pb-fig-01-heatmap-success .pb-plot')"
                      ".querySelector('.heatmaplayer image').getAttribute('href')")
    assert before and after  # redrawn in place, the figure kept
    assert page.eval("document.querySelectorAll('#pb-figures figure').length") == 3
    assert page.errors() == []


def test_a_tasks_page_draws_its_own_series(browser, server, page):
    tid = page.eval("document.querySelector('#pb-series input').placeholder.split(' ')[0]")
    p = browser.new_page(width=1300, height=1000)
    p.open(f"{server}/exp/phase/task/{tid}?token={TOKEN}")
    legend = wait_for(p, "(() => { const t = Array.from(document.querySelectorAll("
                         "'#pb-series .legendtext')).map(e => e.textContent); "
                         "return t.length === 1 ? t : null; })()")
    assert legend[0].startswith(tid[:10])
    assert p.eval("document.querySelector('#pb-series input').value") == tid
    assert p.errors() == []
