"""The experiments page (`/`), its JSON (`/api/experiments`) and the live channel (`/events`:
server-sent events, one message of every experiment's summary about once a second)."""
from __future__ import annotations

import asyncio
import json

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from pushbutton.ui.app import render

EVERY_S = 1.0


async def page(request):
    rows = await run_in_threadpool(request.app.state.data.summaries)
    return render(request, "experiments.html", rows=rows, title="Experiments")


async def api(request):
    rows = await run_in_threadpool(request.app.state.data.summaries)
    return JSONResponse(rows)


async def events(request):
    data = request.app.state.data

    async def stream():
        yield "retry: 2000\n\n"
        while True:
            rows = await run_in_threadpool(data.summaries)
            yield f"event: experiments\ndata: {json.dumps(rows, default=str)}\n\n"
            await asyncio.sleep(EVERY_S)  # a closed page cancels this (StreamingResponse)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


def routes() -> list:
    return [Route("/", page), Route("/api/experiments", api), Route("/events", events)]
