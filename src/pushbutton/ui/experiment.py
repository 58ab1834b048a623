"""The experiment page (`/exp/{name}`): summary, parameter space, failures grouped by cause,
the results table (sorted, filtered, paged, columns chosen on the server: ui/results.py),
runs with provenance and messages. The charts' divs are filled by static/charts.js where it
exists. `/api/exp/{name}/results` gives the same table page as JSON."""
from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from pushbutton.ui.app import render
from pushbutton.ui.data import exp_or_404

NOTES = {"cancel": "cancelled: {n} tasks", "retry": "retry started (its output: {log})",
         "retry-none": "no failed tasks to retry"}  # what an action says after its redirect
PROVENANCE_SKIP = ("git_diff", "spec", "code_files")  # long; `pb show` leaves them out too


def table_args(request) -> dict:
    q = request.query_params

    def number(key, default):
        try:
            return int(q.get(key, default))
        except ValueError:
            return default
    return {"where": q.get("where", "").strip() or None, "sort": q.get("sort") or None,
            "desc": q.get("desc") == "1", "page": number("page", 0),
            "size": number("size", 50), "cols": q.getlist("col")}


def table(data, e: dict, args: dict) -> dict:
    """The table's page; while a newer copy is made, `updating`; while the first one is made,
    `pending` (its message) and no rows."""
    from pushbutton.ui import results
    try:
        snap = data.tables.get(data.store(), e["id"], e["name"],
                               wait=data.tables.page_wait)
    except results.NotReady as err:
        return {"columns": [], "rows": [], "total": 0, "page": 0, "pages": 1,
                "size": args.get("size") or 50, "sort": None, "desc": False,
                "where": args.get("where") or "", "error": None, "as_of": None,
                "all_columns": [], "pending": str(err), "updating": True}
    out = results.query(snap, **args)
    out.update(pending=None, updating=data.tables.updating(e["name"]))
    return out


async def page(request):
    data = request.app.state.data
    name = request.path_params["name"]
    args = table_args(request)
    args.pop("did", None)

    def load():
        from pushbutton.store.failures import top_causes
        from pushbutton.ui.data import summary
        store = data.store()
        e = exp_or_404(data, name)
        runs = store.runs(e["id"])
        for r in runs:
            p = r["provenance"]
            r["provenance_text"] = json.dumps({k: v for k, v in p.items()
                                               if k not in PROVENANCE_SKIP},
                                              indent=2, default=str, ensure_ascii=False)
        spec = e["spec"]
        # the summary the live channel shares (at most SUMMARY_TTL old), else a fresh one
        s = next((r for r in data.summaries() if r["name"] == name), None) or summary(store, e)
        return {"e": e, "s": s, "failures": top_causes(store, e["id"], 0),
                "runs": list(reversed(runs)),
                "space_text": json.dumps(spec.get("space"), default=str,
                                         ensure_ascii=False) if spec.get("space") else "",
                "description": spec.get("description") or "",
                "spec_file": spec.get("_spec_file") or "",
                "table": table(data, e, args)}
    ctx = await run_in_threadpool(load)
    note = _note(request.query_params)
    return render(request, "experiment.html", name=name, title=name, args=args, note=note,
                  **ctx)


def _note(q) -> str | None:
    """What an action just did (the redirect after a POST names it)."""
    text = NOTES.get(q.get("did", ""))
    if text is None:
        return None
    n = q.get("n", "")
    return text.format(n=int(n) if n.isdigit() else "?", log=q.get("log", ""))


async def api_results(request):
    data = request.app.state.data
    name = request.path_params["name"]
    args = table_args(request)

    def load():
        t = table(data, exp_or_404(data, name), args)
        from pushbutton.ui.fmt import plain
        t["rows"] = [[plain(v) for v in r] for r in t["rows"]]
        return t
    return JSONResponse(await run_in_threadpool(load))


def routes() -> list:
    return [Route("/exp/{name}", page), Route("/api/exp/{name}/results", api_results)]
