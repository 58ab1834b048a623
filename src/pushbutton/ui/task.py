"""The task page (`/task/{tid}`): parameters, metrics, attempts, logs, its folder's files."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Route

from pushbutton.ui.app import render


async def page(request):
    data = request.app.state.data
    tid = request.path_params["tid"]

    def load():
        from pushbutton.execution.operations import logs
        from pushbutton.core.errors import StoreError
        store = data.store()
        try:
            t = logs(store, None, tid)
        except StoreError as e:
            raise HTTPException(404, str(e)) from None
        eid = store.find_task(None, t["task"])["exp"]
        exp = next(e["name"] for e in store.experiments() if e["id"] == eid)
        return {"t": t, "exp": exp}
    ctx = await run_in_threadpool(load)
    return render(request, "task.html", title=f"task {ctx['t']['task'][:12]}", **ctx)


def routes() -> list:
    return [Route("/task/{tid}", page)]
