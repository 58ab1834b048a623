"""Fixtures for the report tests (data builders live in _report_data, importable by name)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "shared"))  # _chromium_cdp, shared with ui/

from _report_data import make_context


@pytest.fixture(scope="session")
def built_reports(tmp_path_factory):
    """The three reports, built once for all report tests."""
    from pushbutton.report import html as report
    out = {}
    for states in ("failures", "half", "started"):
        d = tmp_path_factory.mktemp(f"report-{states}")
        out[states] = report.build(make_context(states), d)
    return out
