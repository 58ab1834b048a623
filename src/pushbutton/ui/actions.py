"""The only writes: POST actions on an experiment, each confirmed in the page first
(data-confirm) and checked against the token by app.Guard before it runs:

* cancel: `pb cancel`'s function (stops the driver, marks what is not done cancelled);
* retry: `pb retry NAME` started in the background in the project's folder (its output goes to
  `.pushbutton/logs/ui-retry-NAME.log`), so a retry runs exactly as from the terminal;
* report: `pb report`'s functions, written to the report's default folder and served at
  `/exp/{name}/report/` (read-only; its inline script is allowed by its hash, nothing else).
"""
from __future__ import annotations

import hashlib
import base64
import re
import subprocess
import sys
import threading
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.routing import Route

from pushbutton.ui.data import exp_or_404

_REPORT_LOCK = threading.Lock()


def _back(name: str, note: str, **kw):
    from urllib.parse import urlencode
    return RedirectResponse(f"/exp/{quote(name, safe='')}?" + urlencode({"did": note, **kw}),
                            status_code=303)


async def cancel(request):
    data = request.app.state.data
    name = request.path_params["name"]

    def act():
        from pushbutton.execution.operations import cancel as cc
        e = exp_or_404(data, name)
        return cc(data.store(), e["id"], name)
    r = await run_in_threadpool(act)
    data.forget()
    return _back(name, "cancel", n=r["cancelled"])


async def retry(request):
    data = request.app.state.data
    name = request.path_params["name"]

    def act():
        store = data.store()
        e = exp_or_404(data, name)
        if not store.counts(e["id"])["failed"]:
            return None
        log = store.dir / "logs" / f"ui-retry-{e['id']}.log"
        with open(log, "ab") as out:
            subprocess.Popen([sys.executable, "-m", "pushbutton", "retry", "--", name],
                             cwd=store.root, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        return log.relative_to(store.root).as_posix()
    log = await run_in_threadpool(act)
    data.forget()
    return _back(name, "retry", log=log) if log else _back(name, "retry-none")


async def report(request):
    data = request.app.state.data
    name = request.path_params["name"]

    def act():
        from pushbutton.report import html as rep
        store = data.store()
        e = exp_or_404(data, name)
        with _REPORT_LOCK:
            ctx = rep.context_from_store(store, e["id"], name)
            rep.build(ctx, rep.default_outdir(store, name))
    await run_in_threadpool(act)
    return RedirectResponse(f"/exp/{quote(name, safe='')}/report/", status_code=303)


_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


async def served_report(request):
    data = request.app.state.data
    name = request.path_params["name"]
    rel = request.path_params.get("path") or "report.html"

    def find():
        from pushbutton.report import html as rep
        from pushbutton.ui import files
        exp_or_404(data, name)
        folder = rep.default_outdir(data.store(), name).resolve()
        if not (folder / "report.html").is_file():
            raise HTTPException(404, f"no report of {name} yet: press “Make report”")
        try:
            p = files.inside(folder, rel)
        except files.Refused as e:
            raise HTTPException(403, str(e)) from None
        if not p.is_file():
            raise HTTPException(404, f"no file {rel!r} in the report")
        return p
    p = await run_in_threadpool(find)
    if p.suffix != ".html":
        return FileResponse(p)
    html = p.read_bytes()
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
                      for m in _SCRIPT.findall(html))
    # the report's own inline script runs (by its hash), nothing else; sandboxed: it cannot
    # act on the dashboard (no cookie, no same origin)
    csp = (f"default-src 'none'; script-src {hashes or chr(39) + 'none' + chr(39)}; "
           "style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
           "sandbox allow-scripts")
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


def routes() -> list:
    return [Route("/exp/{name}/cancel", cancel, methods=["POST"]),
            Route("/exp/{name}/retry", retry, methods=["POST"]),
            Route("/exp/{name}/report", report, methods=["POST"]),
            Route("/exp/{name}/report/", served_report),
            Route("/exp/{name}/report/{path:path}", served_report)]
