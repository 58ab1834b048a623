"""The experiment page (`/exp/{name}`): summary, parameter space, failures by cause, the
results table, runs; the charts' divs are filled by static/charts.js where it exists."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from pushbutton.ui.app import render


def exp_or_404(data, name: str) -> dict:
    e = data.experiment(name)
    if e is None:
        raise HTTPException(404, f"no experiment {name!r} in this store")
    return e


async def page(request):
    data = request.app.state.data
    name = request.path_params["name"]

    def load():
        from pushbutton.ui.data import summary
        e = exp_or_404(data, name)
        return {"e": e, "s": summary(data.store(), e)}
    ctx = await run_in_threadpool(load)
    return render(request, "experiment.html", name=name, title=name, **ctx)


def routes() -> list:
    return [Route("/exp/{name}", page)]
