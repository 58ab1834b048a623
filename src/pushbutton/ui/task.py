"""The task page (`/task/{tid}`): parameters, metrics, attempts with their cause and
traceback, stdout/stderr, its folder's files (`/task/{tid}/file/{path}`, ui/files.py)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from pushbutton.ui.app import render


def _task(store, tid: str) -> dict:
    from pushbutton.core.errors import StoreError
    from pushbutton.execution.operations import logs
    try:
        return logs(store, None, tid)
    except StoreError as e:
        raise HTTPException(404, str(e)) from None


async def page(request):
    data = request.app.state.data
    tid = request.path_params["tid"]

    def load():
        from pushbutton.core import names as N
        from pushbutton.core.causes import cause
        from pushbutton.ui import files
        from pushbutton.ui.results import row
        store = data.store()
        t = _task(store, tid)
        eid = store.find_task(None, t["task"])["exp"]
        exp = next(e["name"] for e in store.experiments() if e["id"] == eid)
        r = row(data.tables.get(store, eid, exp), t["task"])
        params = set(t["params"])
        metrics = {k: v for k, v in r.items() if k not in params and not N.reserved(k)}
        facts = {k: r.get(k) for k in (N.ATTEMPTS, N.DURATION, N.HOST, N.NODE, N.RUN_ID,
                                       N.FINISHED_AT)}
        for a in t["attempts"]:
            a["cause"] = cause(a["kind"], a["error"], a["traceback"])
        folder = files.folder_of(store, t["task"])
        from pushbutton.execution.taskdirs import task_folder
        return {"t": t, "exp": exp, "metrics": metrics, "facts": facts,
                "folder": task_folder(store, t["task"])["path"],
                "files": files.listing(folder) if folder else None}
    ctx = await run_in_threadpool(load)
    return render(request, "task.html", title=f"task {ctx['t']['task'][:12]}", **ctx)


async def file(request):
    data = request.app.state.data
    tid, rel = request.path_params["tid"], request.path_params["path"]

    def load():
        from pushbutton.ui import files
        store = data.store()
        t = _task(store, tid)
        folder = files.folder_of(store, t["task"])
        if folder is None:
            raise HTTPException(404, "this task has no folder on this machine")
        try:
            p = files.inside(folder, rel)
        except files.Refused as e:
            raise HTTPException(403, str(e)) from None
        if not p.is_file():
            raise HTTPException(404, f"no file {rel!r} in the task's folder")
        text, cut = files.read(p)
        return text + (f"\n[... cut at {files.MAX_SHOW:,} bytes]" if cut else "")
    text = await run_in_threadpool(load)
    # text/plain (nosniff): a file's content is never run as a page
    return PlainTextResponse(text, headers={"Content-Disposition": "inline"})


def routes() -> list:
    return [Route("/task/{tid}", page), Route("/task/{tid}/file/{path:path}", file)]
