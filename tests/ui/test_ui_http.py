"""pb ui over HTTP: the token check, the cookie, POSTs that a cookie alone cannot make, the
security headers, and every page rendering user strings as text."""
from __future__ import annotations

from starlette.testclient import TestClient

from conftest import HOSTILE, QUOTES, SCRIPT_END


def fresh(app_client):
    """A client of the same app without the cookie."""
    return TestClient(app_client.app, base_url="http://127.0.0.1")


def test_every_request_without_the_token_gets_403(client):
    c = fresh(client)
    for path in ("/", "/events", "/api/experiments", "/static/ui.js", "/exp/x", "/task/ab",
                 "/nothing-here"):
        r = c.get(path)
        assert r.status_code == 403, path
        assert "token" in r.text
    assert c.get("/?token=wrong").status_code == 403
    assert c.get("/", cookies={"pb_ui_x": client.token}).status_code == 403  # wrong name


def test_the_token_sets_an_httponly_strict_cookie_and_leaves_the_address(client):
    c = fresh(client)
    r = c.get(f"/?token={client.token}", headers={"Accept": "text/html"},
              follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert c.get("/").status_code == 200  # the cookie is enough for reading
    assert fresh(client).get(f"/api/experiments?token={client.token}").status_code == 200


def test_a_post_with_only_the_cookie_is_refused(client):
    r = client.post("/exp/x/cancel")  # the client holds the cookie
    assert r.status_code == 403
    r = client.post("/exp/x/cancel", data={"token": "wrong"})
    assert r.status_code == 403


def test_every_response_carries_the_csp(client):
    for r in (client.get("/"), client.get("/static/ui.css"), fresh(client).get("/"),
              client.get("/exp/nope")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def elements(html: str) -> list:
    """(tag, attrs, inline text of a script) of every element, as a browser's parser sees it."""
    from html.parser import HTMLParser
    out = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            out.append([tag, dict(attrs), ""])

        def handle_data(self, data):
            if out and out[-1][0] == "script":
                out[-1][2] += data
    P().feed(html)
    return out


def test_pages_have_no_inline_scripts(client):
    for tag, attrs, text in elements(client.get("/").text):
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/") and not text.strip()


def test_hostile_experiment_name_is_text_on_the_experiments_page(client):
    html = client.get("/").text
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in html
