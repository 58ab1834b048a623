"""The live page's figures (ui/charts.py) against the static report's (matplotlib) on the same
experiments: the same numbers, titles and notes, and hostile names stay text."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from _report_data import IMG, PAYLOAD, make_context  # noqa: E402

from pushbutton.analysis import figure_specs as FS  # noqa: E402
from pushbutton.analysis.figure_base import notes as mpl_notes  # noqa: E402
from pushbutton.ui import charts as C  # noqa: E402


def _pairs(states):
    ctx = make_context(states)
    df, series = ctx["results_df"], ctx["series_df"]
    for d in FS.validate(ctx["figures"], df, series):
        yield d, FS.render(d, df, series, ctx["units"]), C.render(d, df, series, ctx["units"])


def _f(a):
    return np.array([np.nan if v is None else v for v in a], dtype=float)


def _check_line(fig, out):
    ax = fig.axes[0]
    traces = out["plotly"]["data"]
    assert len(ax.containers) == len(traces) == 2
    for cont, tr in zip(ax.containers, traces):
        data_line, _, (bars,) = cont.lines[0], cont.lines[1], cont.lines[2]
        np.testing.assert_allclose(_f(tr["y"]), data_line.get_ydata(), rtol=1e-12)
        np.testing.assert_allclose(_f(tr["x"]), data_line.get_xdata(), rtol=1e-12)
        segs = np.array(bars.get_segments())  # [(x, lo), (x, hi)] per point
        y = _f(tr["y"])
        np.testing.assert_allclose(y - _f(tr["error_y"]["arrayminus"]), segs[:, 0, 1], rtol=1e-9)
        np.testing.assert_allclose(y + _f(tr["error_y"]["array"]), segs[:, 1, 1], rtol=1e-9)
        # the hover's interval is the same as the bars
        np.testing.assert_allclose([c[0] for c in tr["customdata"]], segs[:, 0, 1], rtol=1e-9)
    assert out["plotly"]["layout"]["yaxis"]["type"] == "log"  # logy = true
    # the legend names the hostile hue value escaped (Plotly shows it as text)
    assert C.esc(f"method = {PAYLOAD}") in [t["name"] for t in traces]


def _check_heatmap(fig, out):
    mesh = fig.axes[0].collections[0]
    shape = np.array(out["plotly"]["data"][0]["z"], dtype=float).shape
    z = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(shape)
    np.testing.assert_allclose(_f(np.ravel(out["plotly"]["data"][0]["z"])), z.ravel(),
                               rtol=1e-12, equal_nan=True)
    tr = out["plotly"]["data"][0]
    assert (tr["zmin"], tr["zmax"]) == (0.0, 1.0)  # a rate
    # cell edges as the report's (drawn to scale)
    xe, ye = mesh.get_coordinates()[0, :, 0], mesh.get_coordinates()[:, 0, 1]
    np.testing.assert_allclose(tr["x"], xe)
    np.testing.assert_allclose(tr["y"], ye)
    b = fig.pb_boundary["table"]
    rows = out["boundary"]["rows"]
    assert [r["x"] for r in rows] == b["delta"].tolist()
    np.testing.assert_allclose(_f([r["y"] for r in rows]), b["rho"].to_numpy(float),
                               equal_nan=True)
    assert [r["direction"] for r in rows] == b["pb_direction"].tolist()
    line = [t for t in out["plotly"]["data"] if t["type"] == "scatter"][0]
    found = b.dropna(subset=["rho"])
    np.testing.assert_allclose(line["y"], found["rho"].to_numpy(float))


def _check_curves(fig, out):
    ax = fig.axes[0]
    means = [t for t in out["plotly"]["data"] if t.get("fill") is None and "customdata" in t]
    assert len(ax.lines) == len(means) == 5  # one per delta
    for ln, tr, band in zip(ax.lines, means, ax.collections):
        np.testing.assert_allclose(_f(tr["y"]), ln.get_ydata(), rtol=1e-12)
        verts = band.get_paths()[0].vertices
        lo, hi = [c[0] for c in tr["customdata"]], [c[1] for c in tr["customdata"]]
        assert np.isclose(verts[:, 1].min(), min(lo)) and np.isclose(verts[:, 1].max(), max(hi))


def _check_histogram(fig, out):
    (tr,) = out["plotly"]["data"]
    xy = fig.axes[0].patches[0].get_xy()
    pts = {(round(a, 9), round(b, 9)) for a, b in xy}
    for (lo, hi), c in zip(tr["customdata"], tr["y"]):
        assert (round(lo, 9), float(c)) in pts and (round(hi, 9), float(c)) in pts


CHECKS = {"line": _check_line, "heatmap": _check_heatmap, "learning_curves": _check_curves,
          "histogram": _check_histogram}


@pytest.mark.parametrize("states", ["failures", "half"])
def test_same_numbers_titles_and_notes_as_the_report(states):
    kinds = set()
    for d, fig, out in _pairs(states):
        assert out["title"] == fig.axes[0].get_title(), d["name"]
        assert out["notes"] == mpl_notes(fig), d["name"]
        CHECKS[d["kind"]](fig, out)
        kinds.add(d["kind"])
        json.dumps(out, allow_nan=False)  # strict JSON: NaN is null
    assert kinds == set(CHECKS)


def test_histogram_counts_every_done_task():
    ctx = make_context("failures")
    df = ctx["results_df"]
    out = C.render({"kind": "histogram", "column": "pb_duration_s", "name": "h"}, df)
    assert sum(out["plotly"]["data"][0]["y"]) == int((df["pb_status"] == "done").sum())


def test_hostile_names_are_escaped_in_every_plotly_string():
    df = make_context("failures")["results_df"].rename(columns={"err": IMG})
    df.attrs["metrics"] = ["success", IMG]
    out = C.render({"kind": "line", "x": "method", "y": IMG, "name": "l"}, df)
    text = json.dumps(out["plotly"])
    assert "<img" not in text and "<script" not in text
    assert C.esc(IMG) in text and C.esc(IMG) == "&#60;img src=x onerror=&#34;window.__pwned=3&#34;&#62;"
    # categories on x: escaped values, in a category axis
    assert out["plotly"]["layout"]["xaxis"]["type"] == "category"
    assert C.esc(PAYLOAD) in out["plotly"]["data"][0]["x"]
    # plain text for the page (set with textContent there)
    assert out["title"].startswith('<img src=x onerror="window.')


def test_nothing_finished_yet_is_an_empty_figure_with_a_message():
    ctx = make_context("started")
    res = C.figures(ctx["results_df"], ctx["series_df"], ctx["figures"], ctx["units"])
    assert res["problems"] == [] and len(res["figures"]) == 4
    heat = res["figures"][0]["plotly"]
    assert heat["data"] == [] and heat["layout"]["annotations"][0]["text"] == "no finished tasks yet"


def test_categorical_heatmap_matches_the_report():
    ctx = make_context("failures")
    df = ctx["results_df"]
    d = {"kind": "heatmap", "x": "method", "y": "rho", "value": "err < 0.1", "boundary": True,
         "name": "h"}
    fig, out = FS.render(d, df), C.render(d, df)
    tr = out["plotly"]["data"][0]
    assert out["plotly"]["layout"]["xaxis"]["type"] == "category"
    assert tr["x"] == ["lasso", C.esc(PAYLOAD)]
    mesh = fig.axes[0].collections[0]
    z = np.ma.filled(mesh.get_array().astype(float), np.nan).ravel()
    np.testing.assert_allclose(_f(np.ravel(tr["z"])), z, equal_nan=True)
    assert out["notes"] == mpl_notes(fig)
    b = fig.pb_boundary["table"]
    np.testing.assert_allclose(_f([r["y"] for r in out["boundary"]["rows"]]),
                               b["rho"].to_numpy(float), equal_nan=True)
    # hover text names the cell's point, escaped
    assert "method = " + C.esc(PAYLOAD) in tr["text"][0][1]


def test_a_boundary_that_never_crosses_in_a_column_is_valid_json():
    """A column whose rate never crosses the level has no boundary point and no direction:
    null in the JSON, not NaN (which the figures endpoint refuses to send: a 500 before)."""
    import pandas as pd
    rows = [{"x": x, "y": y, "ok": ok, "pb_status": "done"}
            for x, col in ((1, (0, 0, 1)), (2, (1, 1, 1))) for y, ok in zip((1, 2, 3), col)]
    df = pd.DataFrame(rows)
    df.attrs["metrics"] = ["ok"]
    out = C.render({"kind": "heatmap", "x": "x", "y": "y", "value": "ok", "boundary": True,
                    "name": "h"}, df)
    json.dumps(out, allow_nan=False)
    by_x = {r["x"]: r for r in out["boundary"]["rows"]}
    assert by_x[2]["y"] is None and by_x[2]["direction"] is None
    assert by_x[1]["direction"] == "up" and by_x[1]["crossings"] == 1
