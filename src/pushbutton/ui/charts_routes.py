"""The chart endpoints of the experiment page (JSON for ui/static/charts.js) and Plotly's
JavaScript, served from the plotly package itself (no CDN: the page works offline).

GET /api/exp/{name}/figures     the spec's figures (charts.py), with problems
GET /api/exp/{name}/throughput  counts per state over time, and the counts now
GET /api/exp/{name}/series?task=ID[&task=ID...]  per-step series of chosen tasks
GET /static/vendor/plotly.min.js

The first two carry an ETag (the experiment's version, charts_data.py): the page polls with
If-None-Match and gets an empty 304 while nothing changed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route


def plotly_js() -> Path:
    """plotly.min.js as the plotly Python package ships it."""
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def chart_data(app):
    """The app's ChartData (made on first use, over the app's store)."""
    cd = getattr(app.state, "charts", None)
    if cd is None:
        from pushbutton.store.database import Store
        from pushbutton.ui.charts_data import ChartData
        root = app.state.store_root
        data = getattr(app.state, "data", None)
        cd = app.state.charts = ChartData(lambda: Store(root, create=False),
                                          tables=getattr(data, "tables", None))
    return cd


def _json(payload, status: int = 200, etag: str | None = None) -> Response:
    try:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:  # a NaN/inf the figure code missed: null (a gap to Plotly), not a 500
        body = json.dumps(_finite(payload), allow_nan=False, separators=(",", ":"),
                          default=str)
    headers = {"etag": f'"{etag}"', "cache-control": "no-cache"} if etag else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _finite(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _snapshot(request, part: str) -> Response:
    name = request.path_params["name"]
    try:
        snap = await run_in_threadpool(chart_data(request.app).snapshot, name)
    except LookupError as e:
        return _error(404, str(e.args[0]))
    etag = f"{snap['version']}-{part}"
    if request.headers.get("if-none-match", "").strip('" ') == etag:
        return Response(status_code=304, headers={"etag": f'"{etag}"'})
    payload = dict(snap[part]) if isinstance(snap[part], dict) else {"value": snap[part]}
    payload["version"] = snap["version"]
    return _json(payload, etag=etag)


async def figures(request):
    return await _snapshot(request, "figures")


async def throughput(request):
    return await _snapshot(request, "throughput")


async def series(request):
    name = request.path_params["name"]
    given = []
    for v in request.query_params.getlist("task"):
        given += [t for t in v.replace(",", " ").split() if t]
    try:
        payload = await run_in_threadpool(chart_data(request.app).series, name, given)
    except LookupError as e:
        return _error(404, str(e.args[0]))
    except ValueError as e:
        return _error(400, str(e))
    return _json(payload)


async def plotly(request):
    return FileResponse(plotly_js(), media_type="text/javascript",
                        headers={"cache-control": "private, max-age=86400"})


def routes() -> list:
    return [Route("/api/exp/{name}/figures", figures),
            Route("/api/exp/{name}/throughput", throughput),
            Route("/api/exp/{name}/series", series),
            Route("/static/vendor/plotly.min.js", plotly)]
