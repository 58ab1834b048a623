"""`pb ui`: the live web dashboard (Starlette + uvicorn, Jinja2 templates, local assets only).

`app.create_app(store_root, token)` assembles the routes of the page modules; `server.serve`
runs it. Readers only, except the POST actions (cancel, retry, report)."""
