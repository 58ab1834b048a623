"""`pb ui` from the command line: the address it prints, --host's warning, --store, and
clear errors instead of tracebacks."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

from _ui_data import UiServer, pb


def status_of(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_pb_ui_prints_its_address_and_serves_the_store_named_by_store(finished, tmp_path):
    s = UiServer(tmp_path, "--store", str(finished))  # started outside the project
    try:
        assert status_of(s.base + "/api/experiments") == 403
        assert status_of(f"{s.base}/api/experiments?token={s.token}") == 200
        body = urllib.request.urlopen(f"{s.base}/api/experiments?token={s.token}").read()
        assert b'"sweep"' in body
    finally:
        s.close()


def test_host_other_than_loopback_warns_that_the_token_guards_it(finished):
    s = UiServer(finished, "--host", "0.0.0.0")
    try:
        err = s.proc.stderr.readline()
        assert "reachable from other machines" in err and "token" in err
        assert s.url.startswith("http://127.0.0.1:")
        assert status_of(s.base + "/") == 403
    finally:
        s.close()


def test_no_store_and_a_busy_port_are_clear_errors(tmp_path, finished):
    r = pb("ui", "--port", "0", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "no pushbutton store" in r.stderr
    assert "Traceback" not in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = pb("ui", "--port", port, cwd=finished, check=False, timeout=30)
    assert r.returncode != 0 and "cannot listen" in r.stderr and "--port" in r.stderr
    assert "Traceback" not in r.stderr


def readme_ui_commands() -> list[str]:
    from pathlib import Path
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = text.split("## The live dashboard: `pb ui`\n```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].split() for line in block.splitlines() if line.strip()]


def test_the_readme_pb_ui_examples(finished, tmp_path, monkeypatch):
    """Each `pb ui` line of the README's dashboard section, as written (`../other-project`:
    the finished project, seen from a folder beside it; --open: a browser command that only
    records the address it was given)."""
    import time
    cmds = readme_ui_commands()
    assert [c[:2] for c in cmds] == [["pb", "ui"], ["pb", "ui"]]
    here = finished.parent / "elsewhere"
    here.mkdir(exist_ok=True)
    (finished.parent / "other-project").symlink_to(finished) \
        if not (finished.parent / "other-project").exists() else None
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))
    for cmd in cmds:
        args = cmd[2:]
        cwd = here if "--store" in args else finished
        # UiServer adds --port 0 (the default port may be taken on a shared machine)
        s = UiServer(cwd, *[a for a in args if a not in ("--port", "0")])
        try:
            assert status_of(f"{s.base}/api/experiments?token={s.token}") == 200
            if "--open" in args:
                deadline = time.monotonic() + 10
                while not opened.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert opened.read_text().strip() == s.url
        finally:
            s.close()
