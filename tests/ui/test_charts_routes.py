"""The chart endpoints over HTTP (Starlette's TestClient) on a real experiment: the figures
the report draws, throughput from the recorded end times, series of chosen tasks, the ETag
that makes polling cheap, Plotly served locally, and 403 without the token."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from _charts_project import HOSTILE, METRIC, make_project

TOKEN = "charts-token-1"
API = ("/api/exp/phase/figures", "/api/exp/phase/throughput", "/api/exp/phase/series",
       "/static/vendor/plotly.min.js", "/clusters", "/api/clusters")


@pytest.fixture(scope="module")
def charts_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("charts")
    make_project(root)
    return root


@pytest.fixture(scope="module")
def charts_client(charts_project):
    from pushbutton.ui.app import create_app
    c = TestClient(create_app(charts_project, TOKEN), base_url="http://127.0.0.1")
    c.get(f"/?token={TOKEN}", headers={"Accept": "text/html"})
    return c


def test_no_token_no_charts(charts_client):
    c = TestClient(charts_client.app, base_url="http://127.0.0.1")
    for path in API:
        assert c.get(path).status_code == 403, path
    assert c.get("/api/exp/phase/figures?token=wrong").status_code == 403


def test_figures_are_the_reports(charts_project, charts_client):
    from pushbutton.analysis import figure_specs as FS
    from pushbutton.report.html import context_from_store
    from pushbutton.store.database import Store
    r = charts_client.get("/api/exp/phase/figures")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["problems"] == []
    assert [f["kind"] for f in body["figures"]] == ["heatmap", "line", "learning_curves"]
    store = Store(charts_project, create=False)
    ctx = context_from_store(store, store.experiment("phase"), "phase")
    store.close()
    decls = FS.validate(ctx["figures"], ctx["results_df"], ctx["series_df"])
    for d, f in zip(decls, body["figures"]):
        fig = FS.render(d, ctx["results_df"], ctx["series_df"], ctx["units"])
        assert f["title"] == fig.axes[0].get_title()
        assert f["notes"] == getattr(fig, "pb_notes", [])
    heat = body["figures"][0]
    b = FS.render(decls[0], ctx["results_df"], None, ctx["units"]).pb_boundary["table"]
    assert len(b) and [row["x"] for row in heat["boundary"]["rows"]] == b["delta"].tolist()
    # the hostile metric name and parameter value arrive escaped for Plotly, never as markup
    # (title and notes are plain text: the page sets them with textContent)
    text = json.dumps([f["plotly"] for f in body["figures"]])
    assert "<img" not in text and "<b>" not in text
    from pushbutton.ui.charts import esc
    assert esc(METRIC) in text and esc(f"method = {HOSTILE}") in text
    assert body["figures"][1]["title"].startswith(METRIC)


def test_polling_with_the_etag_gets_304_until_something_changes(charts_client):
    r = charts_client.get("/api/exp/phase/figures")
    etag = r.headers["etag"]
    again = charts_client.get("/api/exp/phase/figures", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    thr = charts_client.get("/api/exp/phase/throughput")
    assert thr.headers["etag"] != etag  # each endpoint its own tag
    assert charts_client.get("/api/exp/phase/throughput",
                             headers={"If-None-Match": thr.headers["etag"]}).status_code == 304


def test_throughput_counts_every_finished_task(charts_client):
    body = charts_client.get("/api/exp/phase/throughput").json()
    assert body["now"]["done"] == 20 and body["now"]["failed"] == 4 and body["total"] == 24
    by = {t["name"]: t for t in body["plotly"]["data"]}
    assert by["done"]["y"][-1] == 20 and by["failed"]["y"][-1] == 4
    assert all(a <= b for a, b in zip(by["done"]["y"], by["done"]["y"][1:]))  # cumulative
    assert by["running"]["y"][-1] == 0 and max(by["running"]["y"]) <= 2  # 2 workers
    assert body["notes"] and "end times" in body["notes"][0]


def test_throughput_says_the_reports_task_time(charts_project, charts_client):
    from pushbutton.report.html import _timing, context_from_store
    from pushbutton.store.database import Store
    store = Store(charts_project, create=False)
    ctx = context_from_store(store, store.experiment("phase"), "phase")
    store.close()
    want = _timing(ctx["results_df"], ctx["cpus"])
    got = charts_client.get("/api/exp/phase/throughput").json()["timing"]
    assert got == {k: want[k] for k in got} and got["failure_rate"] == "16.7%"


def test_series_of_chosen_tasks(charts_project, charts_client):
    default = charts_client.get("/api/exp/phase/series").json()
    assert len(default["tasks"]) == 5 and not default["chosen"]
    tid = default["tasks"][2]
    one = charts_client.get(f"/api/exp/phase/series?task={tid[:8]}").json()
    assert one["tasks"] == [tid] and one["chosen"]
    (fig,) = one["figures"]
    (trace,) = fig["plotly"]["data"]
    assert trace["x"] == [0.0, 1.0, 2.0, 3.0] and len(trace["y"]) == 4
    # a task id that is not one, and one that is not there, are clear 400s
    bad = charts_client.get("/api/exp/phase/series?task=';drop")
    assert bad.status_code == 400 and "task id" in bad.json()["error"]
    assert charts_client.get("/api/exp/phase/series?task=ffffffffff").status_code == 400
    assert charts_client.get("/api/exp/nope/series").status_code == 404
    assert charts_client.get("/api/exp/nope/figures").status_code == 404


def test_plotly_is_served_from_the_package(charts_client):
    import plotly
    r = charts_client.get("/static/vendor/plotly.min.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert r.content == (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert "content-security-policy" in r.headers


def test_the_experiment_page_loads_the_charts(charts_client):
    page = charts_client.get("/exp/phase").text
    assert '<script src="/static/charts.js"></script>' in page
    assert charts_client.get("/static/charts.js").status_code == 200


def test_a_stored_name_that_is_no_folder_name_gets_no_charts(charts_project, charts_client):
    """A name in the store that could leave its folder (results/NAME) is never used as a path."""
    import sqlite3
    import time
    db = sqlite3.connect(charts_project / ".pushbutton" / "state.sqlite")
    db.execute("INSERT INTO experiments(name, spec, created) VALUES (?,?,?)",
               ("..", "{}", time.time()))
    db.commit()
    db.close()
    from pushbutton.store.database import Store
    from pushbutton.ui.charts_data import ChartData
    cd = ChartData(lambda: Store(charts_project, create=False))
    with pytest.raises(LookupError, match="not a folder name"):
        cd.snapshot("..")
    with pytest.raises(LookupError):
        cd.series("..", [])
