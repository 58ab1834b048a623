"""The clusters and targets page (`/clusters`): each target's reachability and queue, each
cluster's nodes and their SLURM state (clusters_data.py polls them in the background; the page
waits for a poll a moment at most). `/clusters/part` is the page's content alone (what
static/clusters.js swaps in every few seconds), `/api/clusters` the same as JSON."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from pushbutton.ui.app import render

WAIT_S = 1.5  # the longest a page waits for a poll that is due


def poller(app):
    p = getattr(app.state, "clusters_poller", None)
    if p is None:
        from pushbutton.ui.clusters_data import Poller
        p = app.state.clusters_poller = Poller(app.state.store_root)
    return p


async def _snapshot(request, wait=WAIT_S):
    return await run_in_threadpool(poller(request.app).snapshot, wait)


async def page(request):
    return render(request, "clusters.html", title="Clusters and targets",
                  s=await _snapshot(request))


async def part(request):
    return render(request, "clusters_part.html", s=await _snapshot(request, 0.0))


async def api(request):
    return JSONResponse(await _snapshot(request, 0.0))


def routes() -> list:
    return [Route("/clusters", page), Route("/clusters/part", part),
            Route("/api/clusters", api)]
