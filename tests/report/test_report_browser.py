"""The report in a real headless Chromium: figures render, no console errors, no network requests,
hostile text stays text, tables sort, partial and failing experiments render.

Skipped when Chromium or websocket-client is missing, except under CI=true (then it fails).
"""
from __future__ import annotations

import os

import pytest

from _chromium_cdp import Browser, find_chromium
from _report_data import IMG, PAYLOAD, QUOTES

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
def pages(browser, built_reports):
    """Each report opened once; the page objects keep their console/network events."""
    out = {}
    for name, path in built_reports.items():
        page = browser.new_page()
        page.open(path.resolve().as_uri())
        out[name] = page
    return out


@pytest.mark.parametrize("name", ["failures", "half", "started"])
def test_loads_cleanly_offline(pages, name):
    page = pages[name]
    assert page.errors() == []
    external = [u for u in page.requests() if not u.startswith(("file:", "data:", "about:"))]
    assert external == []
    # nothing that could fetch lazily either: no external src/href/url() in the DOM
    assert page.eval("""Array.from(document.querySelectorAll('[src],[href]'))
        .map(e => e.getAttribute('src') || e.getAttribute('href'))
        .filter(u => /^(https?:|\\/\\/|ws)/i.test(u)).length""") == 0


@pytest.mark.parametrize("name", ["failures", "half", "started"])
def test_every_figure_renders(pages, name):
    imgs = pages[name].eval("""Array.from(document.images).map(i =>
        ({w: i.naturalWidth, h: i.naturalHeight, done: i.complete, alt: i.alt}))""")
    assert len(imgs) == 4  # all declared figures, even with no finished tasks yet
    for im in imgs:
        assert im["done"] and im["w"] > 100 and im["h"] > 100, im
    # and they are laid out visibly (not collapsed by CSS)
    sizes = pages[name].eval("Array.from(document.images).map(i => i.getBoundingClientRect().width)")
    assert all(w > 100 for w in sizes)


def test_hostile_text_is_escaped(pages):
    page = pages["failures"]
    assert page.eval("window.__pwned === undefined")
    assert page.eval("document.scripts.length") == 1  # only the report's own sorting script
    assert page.eval("document.images.length") == 4  # the <img> payload stayed text
    assert page.eval("document.querySelectorAll('[onmouseover],[onerror]').length") == 0
    text = page.eval("document.body.innerText")
    assert page.eval("document.title").endswith(PAYLOAD)
    assert text.count(PAYLOAD) >= 3  # title, parameter values in tables, failure cause
    assert QUOTES in text and IMG in text
    # the collapsed parts (spec, traceback, diff) hold it as text too
    pre = page.eval("Array.from(document.querySelectorAll('pre')).map(p => p.textContent).join('\\n')")
    assert f'"{PAYLOAD}"' in pre and f"+x = '{PAYLOAD}'" in pre and "FloatingPointError" in pre


def test_results_table_sorts(pages):
    page = pages["failures"]
    col = "Array.from(document.querySelectorAll('table.results tbody tr')).map(r => r.cells[1].dataset.sort)"
    header = "document.querySelectorAll('table.results thead th')[1]"
    page.eval(f"{header}.click()")
    asc = [float(v) for v in page.eval(col)]
    page.eval(f"{header}.click()")
    desc = [float(v) for v in page.eval(col)]
    assert asc == sorted(asc) and desc == sorted(desc, reverse=True) and asc != desc
    assert page.eval(f"{header}.getAttribute('aria-sort')") == "descending"


def test_failures_and_partial_state(pages):
    full, half, started = pages["failures"], pages["half"], pages["started"]
    assert full.eval("document.getElementById('partial-banner')") is None
    assert full.eval("document.querySelectorAll('#failures tbody tr').length") == 2  # 2 causes
    causes = full.eval("document.querySelector('#failures tbody').innerText")
    assert "FloatingPointError" in causes and "timed out" in causes
    for page in (half, started):
        banner = page.eval("document.getElementById('partial-banner').innerText")
        assert "Partial results" in banner
    assert "0 of 240 tasks finished" in started.eval("document.getElementById('partial-banner').innerText")
    assert started.eval("document.getElementById('no-results') !== null")
    assert full.eval("document.getElementById('no-results')") is None
    legend = half.eval("document.querySelector('.legend').innerText")
    assert "pending" in legend and "running" in legend


def test_tasks_per_node_table(pages):
    page = pages["failures"]
    nodes = page.eval("Array.from(document.querySelectorAll('#timing table.nodes tbody tr'))"
                      ".map(r => r.cells[0].innerText)")
    assert sorted(nodes) == sorted([IMG, "node-10", "node-2"])  # the <img> name stayed text
    # the bars are drawn, the busiest node's the widest
    widths = page.eval("Array.from(document.querySelectorAll('#timing .nodebar'))"
                       ".map(b => b.getBoundingClientRect().width)")
    assert len(widths) == 3 and min(widths) > 0
    tasks = "Array.from(document.querySelectorAll('#timing table.nodes tbody tr')).map(r => +r.cells[1].dataset.sort)"
    page.eval("document.querySelectorAll('#timing table.nodes thead th')[1].click()")
    asc = page.eval(tasks)
    assert asc == sorted(asc) and widths[nodes.index("node-10")] == max(widths)
    assert page.eval("document.querySelectorAll('#timing .nodebar')[0].getBoundingClientRect().width") == min(widths)


LAYOUT = """(() => {
  const box = document.querySelector('#results .scroll');
  const table = box.querySelector('table');
  return {inner: innerWidth, page: document.scrollingElement.scrollWidth,
          box: [box.clientWidth, box.scrollWidth], right: table.getBoundingClientRect().right,
          heads: Array.from(table.tHead.rows[0].cells).map(c => c.textContent.trim()),
          column: document.querySelector('#figures').getBoundingClientRect().width,
          imgs: Array.from(document.images).map(i => i.getBoundingClientRect().width)};
})()"""


@pytest.mark.parametrize("width", [1280, 1600])
def test_layout_uses_the_page(browser, built_reports, width):
    """A laptop-wide window shows the whole results table (no column hidden behind a
    scrollbar) and figures at a readable width, and nothing overflows the page."""
    page = browser.new_page(width=width, height=900)
    try:
        page.open(built_reports["failures"].resolve().as_uri())
        got = page.eval(LAYOUT)
    finally:
        page.close()
    assert got["page"] <= got["inner"], got  # no sideways scrolling of the page
    assert got["box"][1] <= got["box"][0], got  # the table fits its box: nothing cut off
    assert got["right"] <= got["inner"], got
    assert got["heads"][3] == "replicates"
    assert len(got["imgs"]) == 4 and all(w >= 900 for w in got["imgs"]), got


def test_narrow_window_scrolls_the_table_not_the_page(browser, built_reports):
    page = browser.new_page(width=760, height=900)
    try:
        page.open(built_reports["failures"].resolve().as_uri())
        got = page.eval(LAYOUT)
    finally:
        page.close()
    assert got["page"] <= got["inner"], got
    assert all(abs(w - got["column"]) < 2 for w in got["imgs"]), got  # figures fill the column
