"""Fixtures for the pb ui tests: a finished project, and the app over it (starlette's
TestClient: real HTTP semantics, no socket). Data and helpers live in _ui_data."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "shared"))  # _chromium_cdp

from _ui_data import add_hostile_experiment, make_project, pb  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _pages_wait_for_the_first_copy():
    """The pages of these tests wait for an experiment's first results copy (under load it can
    take longer than the second a page waits before saying it is being made);
    test_ui_copy.py sets its own wait."""
    from pushbutton.ui import results
    before = results.__dict__.get("FIRST_WAIT_S", 1.0)
    results.FIRST_WAIT_S = 120.0
    yield
    results.FIRST_WAIT_S = before


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A project whose sweep has run (done and failed tasks, hostile text in its parameters,
    metric names, messages and logs), and an experiment with a hostile name (the path-name
    rule keeps `pb run` from making one; the store is not trusted to hold only such names)."""
    root = make_project(tmp_path_factory.mktemp("ui") / "proj", name="sweep")
    pb("run", "experiment.toml", cwd=root, check=False)
    add_hostile_experiment(root)
    return root


@pytest.fixture(scope="module")
def client(finished):
    from starlette.testclient import TestClient

    from pushbutton.ui.app import create_app
    token = "test-token-123"
    c = TestClient(create_app(finished, token), base_url="http://127.0.0.1")
    c.token = token
    c.get(f"/?token={token}", headers={"Accept": "text/html"})  # sets the cookie
    return c
