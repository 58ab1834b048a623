"""report.build without a browser: files written, self-contained, escaped, robust to odd input."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from _report_data import IMG, PAYLOAD, make_context
from pushbutton.report import html as report
from pushbutton.core.errors import SpecError


def test_build_writes_one_self_contained_file_and_figure_files(built_reports):
    path = built_reports["failures"]
    html = path.read_text(encoding="utf-8")
    names = sorted(p.name for p in (path.parent / "figures").iterdir())
    assert len(names) == 12 and {n.rsplit(".", 1)[1] for n in names} == {"png", "svg", "pdf"}
    assert (path.parent / "aggregated.csv").exists()
    # figures are embedded; nothing is loaded from elsewhere
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)\s*=\s*"(https?:|//)', html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<link rel=\"stylesheet\"" not in html and "<script src" not in html


def test_text_is_escaped_in_the_markup(built_reports):
    html = built_reports["failures"].read_text(encoding="utf-8")
    assert PAYLOAD not in html  # never raw
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # the report's own


def test_sections_present(built_reports):
    html = built_reports["failures"].read_text(encoding="utf-8")
    for anchor in ("overview", "results", "figures", "failures", "timing", "provenance"):
        assert f'id="{anchor}"' in html
    assert "task time" in html and "0123abcd" in html and "uncommitted changes" in html
    assert "partial-banner" not in html
    assert "partial-banner" in built_reports["half"].read_text(encoding="utf-8")


def test_aggregated_csv_matches_analysis(built_reports):
    from pushbutton.analysis import stats as A
    csv = pd.read_csv(built_reports["failures"].parent / "aggregated.csv")
    df = make_context("failures")["results_df"]
    agg = A.aggregate(df, quantiles=(0.5,))
    assert len(csv) == len(agg) == 60
    assert csv["err_mean"].sum() == pytest.approx(agg["err_mean"].sum())
    # boolean metrics get the Wilson interval (always inside [0, 1])
    assert csv["success_ci_low"].min() >= 0 and csv["success_ci_high"].max() <= 1


def test_minimal_context_and_automatic_figures(tmp_path):
    ctx = make_context("failures")
    minimal = {"title": "t", "results_df": ctx["results_df"]}
    html = report.build(minimal, tmp_path).read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') >= 2  # heatmap(s) and run time
    assert "No runs recorded" in html
    empty = report.build({"title": "nothing yet"}, tmp_path / "e").read_text(encoding="utf-8")
    assert "nothing yet" in empty


def test_bad_figure_declaration_is_a_spec_error(tmp_path):
    ctx = make_context("failures")
    ctx["figures"] = [{"kind": "heatmap", "x": "delta", "y": "rho", "value": "success"},
                      {"kind": "line", "x": "dleta", "y": "err"}]
    with pytest.raises(SpecError) as e:
        report.build(ctx, tmp_path)
    assert e.value.key == "figures[1].x" and "did you mean 'delta'" in str(e.value)
    assert e.value.file == "experiment.toml"


def test_fmt():
    assert report.fmt(None) == "–" and report.fmt(float("nan")) == "–"
    assert report.fmt(3.0) == "3" and report.fmt(0.123456) == "0.1235" and report.fmt(True) == "true"
    assert report.fmt(pd.NA) == "–" and report.fmt("x") == "x"


def _node_rows(html: str) -> list[dict]:
    """The report's tasks-per-node table: one dict per row, cells by header, with the raw
    values of data-sort."""
    from html import unescape
    m = re.search(r'<table class="sortable nodes">(.*?)</table>', html, re.S)
    assert m, "no tasks-per-node table"
    heads = [unescape(h) for h in re.findall(r"<th[^>]*>([^<]*)</th>", m.group(1))]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", m.group(1).split("<tbody>")[1], re.S):
        cells = re.findall(r'<td[^>]*data-sort="([^"]*)"[^>]*>(.*?)</td>', tr, re.S)
        rows.append({h: (unescape(raw), unescape(re.sub(r"<[^>]+>", "", shown)).strip())
                     for h, (raw, shown) in zip(heads, cells)})
    return rows


@pytest.mark.parametrize("states", ["failures", "half", "started"])
def test_tasks_per_node_agree_with_the_results_table(built_reports, states):
    html = built_reports[states].read_text(encoding="utf-8")
    df = make_context(states)["results_df"]
    fin = df[df["pb_status"].isin(["done", "failed"])]
    if fin.empty:
        assert 'class="sortable nodes"' not in html  # nothing has run anywhere yet
        return
    rows = _node_rows(html)
    assert [r["node"][1] for r in rows] == sorted(fin["pb_node"].unique())
    for r in rows:
        part = fin[fin["pb_node"] == r["node"][1]]
        assert int(r["tasks"][1]) == len(part)
        assert int(r["failures"][1]) == int((part["pb_status"] == "failed").sum())
        assert float(r["total task time"][0]) == pytest.approx(part["pb_duration_s"].sum())
        done = part.loc[part["pb_status"] == "done", "pb_duration_s"]
        assert float(r["mean duration"][0]) == pytest.approx(done.mean())
    assert sum(int(r["tasks"][1]) for r in rows) == len(fin)
    # the node payload (an <img> tag) is text in the table, never markup
    assert IMG in [r["node"][1] for r in rows] and IMG not in html
    assert max(float(re.search(r"width: ([\d.]+)%", h).group(1)) for h in
               re.findall(r'class="nodebar"[^>]*', html)) == 100.0

