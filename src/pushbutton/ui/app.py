"""The dashboard's application: routes from the page modules, the token check every request
passes, the security headers every response carries, and the templates.

Auth (as Jupyter does it): `?token=T` sets an HttpOnly, SameSite=Strict cookie and redirects to
the same page without the token; any request without a valid token or cookie gets 403. A POST
also needs the token itself (header `X-PB-Token` or form field `token`), so a cookie alone
cannot act: another site can make the browser send the cookie, never read the token."""
from __future__ import annotations

import hashlib
import hmac
import importlib
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"

# the page modules: each has routes() -> list of Starlette routes
PAGE_MODULES = [
    "pushbutton.ui.experiments",
    "pushbutton.ui.experiment",
    "pushbutton.ui.task",
    "pushbutton.ui.actions",
    "pushbutton.ui.charts_routes", "pushbutton.ui.clusters",
]

# the nav of base.html: (label, path)
NAV = [
    ("Experiments", "/"),
    ("Clusters", "/clusters"),
]

CSP = ("default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY"),
           (b"cache-control", b"no-store")]
TOKEN_HEADER = "x-pb-token"
MAX_FORM = 1 << 20  # bytes of a POST body read for its token field
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def cookie_name(token: str) -> str:
    """One cookie per server (cookies ignore ports): named after a hash of its token."""
    return "pb_ui_" + hashlib.blake2b(token.encode(), digest_size=6).hexdigest()


def _same(a, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def check(token: str, method: str, headers: dict, query: dict, cookies: dict,
          form: dict | None = None) -> bool:
    """The one token check every request passes: reading needs the token (query) or the
    cookie; a write (POST ...) needs the token itself, in the X-PB-Token header or the
    form field `token`."""
    if method.upper() in WRITE_METHODS:
        return _same(headers.get(TOKEN_HEADER), token) or _same((form or {}).get("token"), token)
    return _same(query.get("token"), token) or _same(cookies.get(cookie_name(token)), token)


def _cookies(header: str) -> dict:
    out = {}
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k:
            out[k] = v
    return out


class Guard:
    """ASGI middleware: the token check for every HTTP request (403 otherwise), the cookie
    set from `?token=`, and the security headers on every response."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # no websockets are served
            return await send({"type": "websocket.close", "code": 1008})

        async def send_headers(msg):
            if msg["type"] == "http.response.start":
                have = {k.lower() for k, _ in msg.get("headers", [])}
                msg["headers"] = list(msg.get("headers", [])) + [
                    h for h in HEADERS if h[0] not in have]
            await send(msg)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        cookies = _cookies(headers.get("cookie", ""))
        method = scope["method"]
        form, body = None, None
        if method in WRITE_METHODS and TOKEN_HEADER not in headers:
            body = await _read_body(receive)
            if body is None:
                return await _deny(send_headers, "request body too large")
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if not check(self.token, method, headers, query, cookies, form):
            why = ("this action needs the token (header X-PB-Token or form field token)"
                   if method in WRITE_METHODS else
                   "no valid token: open the address `pb ui` printed (with ?token=...)")
            return await _deny(send_headers, why)
        if method == "GET" and "token" in query and "text/html" in headers.get("accept", ""):
            # a page opened with the token: set the cookie, drop the token from the address
            rest = urlencode([(k, v) for k, v in parse_qsl(
                scope.get("query_string", b"").decode("latin-1")) if k != "token"])
            resp = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""),
                                    status_code=303)
            resp.set_cookie(cookie_name(self.token), self.token, httponly=True,
                            samesite="strict", path="/")
            return await resp(scope, receive, send_headers)
        if body is not None:
            done = False

            async def receive():  # noqa: F811 - hand the read body on to the app
                nonlocal done
                if done:
                    return {"type": "http.disconnect"}
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, receive, send_headers)


async def _read_body(receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_FORM:
            return None
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


async def _deny(send, why: str):
    resp = PlainTextResponse(f"403 forbidden: {why}\n", status_code=403)
    await resp({"type": "http"}, None, send)


def templates() -> Jinja2Templates:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    t = Jinja2Templates(env=env)
    t.env.globals["nav"] = NAV
    from pushbutton.ui.fmt import FILTERS, table_url
    t.env.filters.update(FILTERS)
    t.env.globals["table_url"] = table_url
    t.env.globals["has_static"] = lambda name: (STATIC / name).is_file()
    return t


def create_app(store_root, token: str) -> Starlette:
    """The dashboard over the store at `store_root`; every request needs `token`."""
    from pushbutton.ui import data
    routes = []
    for name in PAGE_MODULES:
        routes += importlib.import_module(name).routes()
    routes.append(Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"))
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])
    app.state.store_root = Path(store_root).resolve()
    app.state.token = token
    app.state.data = data.Data(app.state.store_root)
    app.state.templates = templates()
    return app


def render(request, template: str, **ctx):
    """A page: the template with the request, the token (for POST forms) and `ctx`."""
    app = request.app
    return app.state.templates.TemplateResponse(request, template,
                                                {"token": app.state.token, **ctx})
