"""pb ui over HTTP: the token check, the cookie, POSTs that a cookie alone cannot make, the
security headers, and every page rendering user strings as text."""
from __future__ import annotations

from starlette.testclient import TestClient

from _ui_data import HOSTILE, SCRIPT_END, make_project, pb


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


# -- the experiment page --------------------------------------------------------------------
def table_rows(html: str) -> list[list[str]]:
    """The cells' text of the results table (#pb-results)."""
    from html.parser import HTMLParser
    rows, state = [], {"in": False, "depth": 0}

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "table" and a.get("id") == "pb-results":
                state["in"] = True
            elif state["in"] and tag == "tr":
                rows.append([])
            elif state["in"] and tag == "td":
                rows[-1].append("")

        def handle_endtag(self, tag):
            if tag == "table":
                state["in"] = False

        def handle_data(self, data):
            if state["in"] and rows and rows[-1]:
                rows[-1][-1] += data
    P().feed(html)
    return [[c.strip() for c in r] for r in rows if r]


def header(html: str) -> list[str]:
    import re
    block = html.split('id="pb-results"')[1].split("</thead>")[0]
    return re.findall(r'data-col="([^"]*)"', block)


def test_results_are_sorted_filtered_and_paged_on_the_server(client):
    html = client.get("/exp/sweep?sort=x&desc=1").text
    cols = header(html)
    rows = table_rows(html)
    assert len(rows) == 24  # 6 x values x 4 labels
    xs = [int(r[cols.index("x")]) for r in rows]
    assert xs == sorted(xs, reverse=True)
    html = client.get("/exp/sweep", params={"where": "x >= 4 AND pb_status = 'done'",
                                            "sort": "score"}).text
    rows = table_rows(html)
    assert len(rows) == 8 and {r[cols.index("x")] for r in rows} == {"4", "5"}
    scores = [float(r[cols.index("score")]) for r in rows]
    assert scores == sorted(scores)
    html = client.get("/exp/sweep", params={"size": 20, "page": 1}).text
    assert len(table_rows(html)) == 4 and "page 2 of 2" in html
    html = client.get("/exp/sweep", params={"col": ["x", "score"]}).text
    assert header(html) == ["pb_task_id", "x", "score"]


def test_a_bad_filter_is_a_message_not_an_error_page(client):
    for where in ("x >", "1) OR (1", "x = 1; DROP TABLE t", "nope = 3",
                  "x IN (SELECT 1 FROM read_csv('/etc/passwd'))"):
        r = client.get("/exp/sweep", params={"where": where})
        assert r.status_code == 200, where
        assert 'id="pb-table-error"' in r.text and table_rows(r.text) == [], where


def test_failures_are_grouped_by_cause_with_a_task_link(client):
    html = client.get("/exp/sweep").text
    causes = html.split('id="pb-causes"')[1].split("</table>")[0]
    assert "ValueError at uitasks.py" in causes
    assert ">4<" in causes  # the four labels of x == 3 fail for one cause
    assert 'href="/exp/sweep/task/' in causes
    assert "&lt;img src=x onerror" in causes and HOSTILE not in html


def test_runs_show_provenance_and_the_parameter_space(client):
    html = client.get("/exp/sweep").text
    assert 'id="pb-runs"' in html and "provenance" in html and "code_version" in html
    assert "&#34;x&#34;" in html.split('id="pb-space"')[1]


def test_the_results_api_gives_the_same_page_as_json(client):
    j = client.get("/api/exp/sweep/results", params={"where": "x = 1", "sort": "label"}).json()
    assert j["total"] == 4 and j["error"] is None
    labels = [r[j["columns"].index("label")] for r in j["rows"]]
    assert labels == sorted(labels)
    assert client.get("/api/exp/nope/results").status_code == 404


# -- the task page ----------------------------------------------------------------------------
def task_ids(client, where):
    j = client.get("/api/exp/sweep/results", params={"where": where}).json()
    return ["/exp/sweep/task/" + r[0] for r in j["rows"]]


def test_a_failed_task_shows_its_traceback_and_cause(client):
    url = task_ids(client, "pb_status = 'failed'")[0]
    html = client.get(url[:-10]).text  # an id prefix, as `pb logs` takes
    assert "Traceback (most recent call last)" in html
    assert "ValueError at uitasks.py" in html
    assert HOSTILE not in html and "&lt;img src=x onerror" in html
    assert SCRIPT_END not in html and "&lt;/script&gt;" in html
    assert client.get("/exp/sweep/task/ffffffffffffffff").status_code == 404
    assert client.get("/task/ffffffffffffffff").status_code == 404
    r = client.get("/task/" + url.rsplit("/", 1)[1], follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == url  # found by id alone

def test_a_done_task_shows_parameters_metrics_logs_and_files(client):
    tid = task_ids(client, "x = 2 AND pb_status = 'done'")[0]
    html = client.get(tid).text
    metrics = html.split('id="pb-metrics"')[1].split("</table>")[0]
    assert "score" in metrics and "20" in metrics
    assert "stdout of 2" in html.split('id="pb-stdout"')[1]
    assert "stderr says" in html.split('id="pb-stderr"')[1]
    files = html.split('id="pb-files"')[1].split("</table>")[0]
    assert f'href="{tid}/file/note.txt"' in files
    assert "sub/deep.txt" in files and "not served" in files  # the link out is only listed
    assert client.get(f"{tid}/file/note.txt").text.startswith("file of 2")
    assert client.get(f"{tid}/file/sub/deep.txt").text == "deep"
    r = client.get(f"{tid}/file/note.txt")
    assert r.headers["content-type"].startswith("text/plain")


def test_task_files_cannot_leave_the_folder(client):
    tid = task_ids(client, "x = 2 AND pb_status = 'done'")[0]
    for rel in ("out-link", "..%2F..%2F..%2F..%2Fexperiment.toml", "%2Fetc%2Fhostname",
                "sub%2F..%2F..%2Fnote.txt", "%2E%2E/%2E%2E/%2E%2E/%2E%2E/experiment.toml",
                "sub/..%2F..%2F..%2F..%2F..%2Fstate.sqlite"):
        r = client.get(f"{tid}/file/{rel}")
        assert r.status_code in (403, 404), rel
        assert "file of" not in r.text and "uitasks" not in r.text and "SQLite" not in r.text


# -- actions -----------------------------------------------------------------------------------
def test_actions_need_the_token_and_a_post(client):
    assert client.get("/exp/sweep/cancel").status_code == 405
    assert client.post("/exp/sweep/retry").status_code == 403  # cookie only
    r = client.post("/exp/sweep/retry", headers={"X-PB-Token": "nope"})
    assert r.status_code == 403


def test_the_hostile_named_experiment_has_a_page_with_its_name_as_text(client):
    from urllib.parse import quote
    assert 'href="/exp/%3Cimg' in client.get("/").text
    r = client.get(f"/exp/{quote(HOSTILE, safe='')}")
    assert r.status_code == 200
    assert HOSTILE not in r.text and SCRIPT_END not in r.text
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in r.text
    for tag, attrs, text in elements(r.text):
        assert tag != "img" and not any(a.startswith("on") for a in attrs)


def test_make_the_report_and_serve_it_with_only_its_own_script_allowed(client):
    r = client.post("/exp/sweep/report", data={"token": client.token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/exp/sweep/report/"
    r = client.get("/exp/sweep/report/")
    assert r.status_code == 200 and "<html" in r.text.lower()
    csp = r.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split(";")[1]
    assert "sandbox" in csp
    assert client.get("/exp/sweep/report/..%2F..%2Fstate.sqlite").status_code == 403
    assert client.get("/exp/sweep/report/aggregated.csv").status_code in (200, 404)


def test_retry_runs_the_failed_tasks_again_in_the_background(tmp_path):
    from pushbutton.store.database import Store
    from pushbutton.ui.app import create_app
    import time
    root = make_project(tmp_path / "p", name="again", xs=[2, 3])
    pb("run", "experiment.toml", cwd=root, check=False)
    c = TestClient(create_app(root, "tok"), base_url="http://127.0.0.1")
    h = {"X-PB-Token": "tok"}
    c.get("/?token=tok", headers={"Accept": "text/html"})  # the cookie
    where = {"where": "x = 3", "col": ["pb_attempts"]}

    def attempts():
        return {r[1] for r in c.get("/api/exp/again/results", params=where).json()["rows"]}
    assert attempts() == {1}  # the table is made (and kept) before the retry
    r = c.post("/exp/again/retry", headers=h, follow_redirects=False)
    assert r.status_code == 303 and "did=retry" in r.headers["location"]
    store = Store(root, create=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # x == 3 fails again: a second attempt is recorded
        n = store.db.execute("SELECT max(attempts) FROM tasks WHERE state='failed'").fetchone()[0]
        if n == 2:
            break
        time.sleep(0.3)
    assert n == 2
    deadline = time.monotonic() + 20  # the table follows the store (a refresh, then the new copy)
    while attempts() != {2} and time.monotonic() < deadline:
        time.sleep(0.3)
    assert attempts() == {2}
    assert "retrying 4 failed tasks" in (root / ".pushbutton/logs/ui-retry-1.log").read_text()


def test_two_experiments_sharing_a_task_id_each_show_their_own_task(tmp_path):
    """Task ids are hashes of the parameters: two experiments over one space share them."""
    from pushbutton.ui.app import create_app
    root = make_project(tmp_path / "p", name="one", xs=[2])
    pb("run", "experiment.toml", cwd=root)
    (root / "two.toml").write_text((root / "experiment.toml").read_text()
                                   .replace('name = "one"', 'name = "two"'))
    pb("run", "two.toml", cwd=root)
    c = TestClient(create_app(root, "tok"), base_url="http://127.0.0.1")
    c.get("/?token=tok", headers={"Accept": "text/html"})
    tid = c.get("/api/exp/two/results").json()["rows"][0][0]
    assert tid in c.get("/api/exp/one/results").text
    r = c.get(f"/task/{tid}")
    assert r.status_code == 200 and "/exp/one/task/" in r.text and "/exp/two/task/" in r.text
    html = c.get(f"/exp/two/task/{tid}").text
    assert 'href="/exp/two"' in html and "/exp/two/task/" + tid + "/file/note.txt" in html
