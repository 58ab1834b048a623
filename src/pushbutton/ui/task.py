"""The task page (`/exp/{name}/task/{tid}`): parameters, metrics, attempts with their cause
and traceback, stdout/stderr, its folder's files (`.../file/{path}`, ui/files.py).
Task ids are per experiment (two experiments with the same parameters share them), so a
task's address names its experiment; `/task/{id prefix}` finds it when only one has it."""
from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route

from pushbutton.ui.app import render
from pushbutton.ui.data import exp_or_404


def task_url(exp: str, tid: str) -> str:
    return f"/exp/{quote(exp, safe='')}/task/{quote(tid, safe='')}"


def _task(store, eid: int, tid: str) -> dict:
    from pushbutton.core.errors import StoreError
    from pushbutton.execution.operations import logs
    try:
        return logs(store, eid, tid)
    except StoreError as e:
        raise HTTPException(404, str(e)) from None


async def page(request):
    data = request.app.state.data
    name, tid = request.path_params["name"], request.path_params["tid"]

    def load():
        from pushbutton.core import names as N
        from pushbutton.core.causes import cause
        from pushbutton.execution.taskdirs import task_folder
        from pushbutton.ui import files
        from pushbutton.ui.results import row
        store = data.store()
        e = exp_or_404(data, name)
        t = _task(store, e["id"], tid)
        from pushbutton.ui.results import NotReady
        try:
            r, pending = row(data.tables.get(store, e["id"], name,
                                    wait=data.tables.page_wait), t["task"]), None
        except NotReady as err:  # the first copy of the table: said instead of waited for
            r, pending = {}, str(err)
        params = set(t["params"])
        metrics = {k: v for k, v in r.items() if k not in params and not N.reserved(k)
                   and not _missing(v)}
        facts = {k: r.get(k) for k in (N.ATTEMPTS, N.DURATION, N.HOST, N.NODE, N.RUN_ID,
                                       N.FINISHED_AT)}
        for a in t["attempts"]:
            a["cause"] = cause(a["kind"], a["error"], a["traceback"])
        folder = files.folder_of(store, t["task"], e["id"])
        return {"t": t, "exp": name, "metrics": metrics, "facts": facts,
                "folder": task_folder(store, t["task"], e["id"])["path"],
                "files": files.listing(folder) if folder else None,
                "base": task_url(name, t["task"]), "pending": pending}
    ctx = await run_in_threadpool(load)
    return render(request, "task.html", title=f"task {ctx['t']['task'][:12]}", **ctx)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


async def file(request):
    data = request.app.state.data
    name, tid, rel = (request.path_params[k] for k in ("name", "tid", "path"))

    def load():
        from pushbutton.ui import files
        store = data.store()
        e = exp_or_404(data, name)
        t = _task(store, e["id"], tid)
        folder = files.folder_of(store, t["task"], e["id"])
        if folder is None:
            raise HTTPException(404, "this task has no folder on this machine")
        try:
            p = files.inside(folder, rel)
        except files.Refused as err:
            raise HTTPException(403, str(err)) from None
        if not p.is_file():
            raise HTTPException(404, f"no file {rel!r} in the task's folder")
        text, cut = files.read(p)
        return text + (f"\n[... cut at {files.MAX_SHOW:,} bytes]" if cut else "")
    text = await run_in_threadpool(load)
    # text/plain (and nosniff): a file's content is never run as a page
    return PlainTextResponse(text, headers={"Content-Disposition": "inline"})


async def find(request):
    """`/task/{prefix}`: the task's page, when one experiment has such a task."""
    data = request.app.state.data
    prefix = request.path_params["tid"]

    def load():
        store = data.store()
        rows = store.db.execute(
            "SELECT e.name, t.id FROM tasks t JOIN experiments e ON e.id = t.exp "
            "WHERE t.id >= ? AND t.id < ? LIMIT 20", (prefix, prefix + "\uffff")).fetchall()
        return rows
    rows = await run_in_threadpool(load)
    if len(rows) == 1:
        return RedirectResponse(task_url(*rows[0]), status_code=303)
    if not rows:
        raise HTTPException(404, f"no task with id {prefix!r}")
    return render(request, "task_which.html", title=f"task {prefix}", prefix=prefix,
                  rows=[(n, t, task_url(n, t)) for n, t in rows])


def routes() -> list:
    return [Route("/exp/{name}/task/{tid}", page),
            Route("/exp/{name}/task/{tid}/file/{path:path}", file),
            Route("/task/{tid}", find)]
