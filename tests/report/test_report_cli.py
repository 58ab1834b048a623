"""The statistics and figures of a report as a researcher gets them: `pb run` then `pb report`
in a real project, read back from the HTML and the terminal. One sweep (48 tasks, a 0/1 and a
non-negative metric, string parameters, a point where every task fails) serves every test."""
from __future__ import annotations

import html as htmlmod
import math
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

TASK = textwrap.dedent('''
    import random

    def trial(dist, size, delta, rep, seed=None):
        if dist == "cauchy" and size == "large":
            raise FloatingPointError("diverged")
        r = random.Random(seed)
        p = min(1.0, delta + (0.3 if size == "large" else 0.0))
        return {"success": r.random() < p, "err": abs(r.gauss(0, 1)) * delta}
''')

SPEC = textwrap.dedent('''
    name = "cells"
    function = "task:trial"
    [space]
    reps = 4
    [space.grid]
    dist = ["normal", "cauchy"]
    size = ["small", "large"]
    delta = [0.1, 0.5, 0.9]
    [resources]
    cpus = 2
    [run]
    workers = 2
    [[figures]]
    kind = "heatmap"
    x = "dist"
    y = "size"
    value = "success"
    [[figures]]
    kind = "heatmap"
    x = "dist"
    y = "delta"
    value = "success"
    boundary = 0.5
    [[figures]]
    kind = "line"
    x = "delta"
    y = "success"
    hue = "dist"
''')

EXTRA = '''
[[figures]]
kind = "histogram"
column = "err"
name = "err-histogram"
'''


def pb(*args, cwd, check=True):
    r = subprocess.run([sys.executable, "-m", "pushbutton", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=180, env=dict(os.environ))
    if check and r.returncode != 0:
        raise AssertionError(f"pb {' '.join(map(str, args))} exited {r.returncode}\n"
                             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    (root / "task.py").write_text(TASK)
    (root / "experiment.toml").write_text(SPEC)
    r = pb("run", "experiment.toml", "--quiet", cwd=root, check=False)
    assert r.returncode == 1 and "12 failed" in r.stdout, r.stdout + r.stderr  # cauchy x large
    assert "warning" not in r.stderr  # metrics are not known before a run: no noise
    return root


@pytest.fixture(scope="module")
def report(project):
    """`pb report cells -o out`: (its terminal output, the page's text, the folder)."""
    out = project / "out"
    r = pb("report", "cells", "-o", out, cwd=project)
    return r, (out / "report.html").read_text(encoding="utf-8"), out


def _rows(page: str, table_class: str) -> list[list[str]]:
    body = re.search(rf'<table class="[^"]*{table_class}[^"]*".*?</table>', page, re.S).group(0)
    return [[htmlmod.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
            for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_report_goes_under_the_store_not_into_the_project(project, report):
    r = pb("report", "cells", cwd=project)
    out = project / ".pushbutton" / "reports" / "cells"
    assert f"report: {out / 'report.html'}" in r.stdout
    assert not (project / "reports").exists()
    assert (out / "aggregated.csv").exists() and (out / "figures").is_dir()
    r, _, other = report  # -o: anywhere the user asks
    assert (other / "report.html").exists() and f"report: {other / 'report.html'}" in r.stdout
    assert ".pushbutton/reports/" in pb("report", "--help", cwd=project).stdout


def test_0_1_metric_has_the_wilson_interval_in_the_table_the_csv_and_the_figure(report):
    from pushbutton.analysis import stats as A
    _, page, out = report
    rows = _rows(page, "results")
    head = rows[0]
    assert head[:4] == ["dist", "size", "delta", "replicates"]
    i = head.index("success: rate (k/n)")
    assert head[i + 1] == "success: 95% Wilson interval"
    csv = pd.read_csv(out / "aggregated.csv")
    for row in rows[1:]:
        rate, interval = row[i], row[i + 1]
        if rate == "–":  # cauchy x large: no finished replicate
            continue
        k, n = map(int, re.search(r"\((\d+)/(\d+)\)", rate).groups())
        lo, hi = A.wilson(k, n)
        shown = [float(v) for v in interval.strip("[]").split(",")]
        assert shown == pytest.approx([lo, hi], rel=1e-3, abs=1e-12)
        rec = csv[(csv.dist == row[0]) & (csv["size"] == row[1]) & (csv.delta == float(row[2]))]
        assert rec["success_ci_low"].item() == pytest.approx(lo)  # the CSV holds the same
    # the line plot of the 0/1 metric draws that interval, and its caption says so
    caption = page[page.index('id="fig-03-line-success"'):]
    caption = caption[:caption.index("</figure>")]
    assert "Error bars: 95% Wilson score interval" in caption
    assert "Averaged over size (2 values)" in caption  # size is neither x nor hue
    # err is never negative: its t intervals are said to bound the mean
    assert "err: mean ± standard error of the mean" in page
    note = [p for p in re.findall(r'<p class="note">(.*?)</p>', page, re.S) if "never negative" in p]
    assert len(note) <= 1 and all("bounds the mean, not the values" in n for n in note)


def test_numbers_have_consistent_significant_digits(report):
    _, page, _ = report
    rows = _rows(page, "results")
    head = rows[0]
    cols = range(4, len(head))  # every statistic: after dist, size, delta and the count
    assert len(cols) == 5 and all(h.startswith(("success: ", "err: ")) for h in head[4:])
    for row in rows[1:]:
        for j in cols:
            for num in re.findall(r"-?\d+\.?\d*(?:e[-+]\d+)?", row[j].split("(")[0]):
                if float(num) == 0 or "±" in row[j] and num == row[j].split("± ")[-1]:
                    continue  # an exact 0 has no digits to count; standard errors have 2
                digits = re.sub(r"e.*", "", num).lstrip("-").replace(".", "").lstrip("0")
                assert len(digits) == 4, (head[j], row[j])


def test_categorical_heatmap_draws_and_failed_cells_are_marked(report):
    r, page, _ = report
    assert 'class="banner problem"' not in page and "warning" not in r.stderr
    fig = page[page.index('id="fig-01-heatmap-success"'):]
    fig = fig[:fig.index("</figure>")]
    assert 'src="data:image/png;base64,' in fig
    assert "Hatched × cells (1): every task at that point failed" in fig  # cauchy x large


def test_boundary_is_printed_as_numbers(report, project):
    import pushbutton as pb_api
    from pushbutton.analysis import stats as A
    _, page, _ = report
    rows = _rows(page, "boundary")
    assert rows[0] == ["dist", "delta at success = 0.5", "direction", "crossings"]
    exp = pb_api.load(project / "experiment.toml", project=project)
    b = A.boundary(exp.results(), "dist", "delta", rate="success").set_index("dist")
    assert [r[0] for r in rows[1:]] == list(b.index)
    for dist, y, direction, crossings in rows[1:]:
        want = b.loc[dist, "delta"]
        if math.isnan(want):
            assert y == "no crossing"
        else:
            assert float(y) == pytest.approx(want, rel=1e-3)
            assert direction == "rises with delta"
        assert int(crossings.split()[0]) == b.loc[dist, "pb_n_crossings"]


def test_task_time_is_not_called_cpu_hours(report):
    _, page, _ = report
    timing = page[page.index('id="timing"'):page.index('id="provenance"')]
    assert "CPU-hours" not in timing
    assert re.search(r"<dt>task time</dt><dd>[\d.]+ (s|min|h|d) \(the sum of task durations\)",
                     timing)
    assert "CPU time reserved" in timing and "(2 CPUs per task)" in timing  # cpus = 2


def test_pb_report_spec_uses_the_figures_of_that_file(project):
    spec = project / "edited.toml"
    spec.write_text(SPEC + EXTRA)  # the same experiment, one figure more, no rerun
    r = pb("report", spec.name, "-o", project / "edited", cwd=project)
    page = (project / "edited" / "report.html").read_text(encoding="utf-8")
    assert 'id="fig-err-histogram"' in page and page.count('<figure id="fig-') == 4, r.stdout
    by_name = (project / "edited-by-name")
    pb("report", "cells", "-o", by_name, cwd=project)  # by name: the spec stored by pb run
    assert (by_name / "report.html").read_text(encoding="utf-8").count('<figure id="fig-') == 3


def test_a_figure_that_cannot_be_drawn_is_said_in_the_terminal(project):
    spec = project / "broken.toml"
    spec.write_text(SPEC.replace('value = "success"\n', 'value = "success"\ncmap = "nosuch"\n', 1))
    r = pb("report", spec.name, "-o", project / "broken", cwd=project)
    assert r.returncode == 0 and "could not be drawn" in r.stderr and "figures[0]" in r.stderr
    assert "nosuch" in r.stderr
    strict = pb("report", spec.name, "-o", project / "broken", "--strict", cwd=project,
                check=False)
    assert strict.returncode == 1 and "could not be drawn" in strict.stderr
    assert (project / "broken" / "report.html").exists()  # written all the same


def test_figure_declarations_are_checked_at_dry_run(project):
    bad = project / "bad-kind.toml"
    bad.write_text(SPEC.replace('kind = "line"', 'kind = "lines"'))
    r = pb("run", bad.name, "--dry-run", cwd=project, check=False)
    assert r.returncode == 2 and "figures[2].kind" in r.stderr and "bad-kind.toml" in r.stderr
    assert "line, heatmap" in r.stderr and "Traceback" not in r.stderr
    key = project / "bad-key.toml"
    key.write_text(SPEC.replace('hue = "dist"', 'colour = "dist"'))
    r = pb("run", key.name, "--dry-run", cwd=project, check=False)
    assert r.returncode == 2 and "figures[2].colour" in r.stderr and "hue" in r.stderr
    typo = project / "typo.toml"
    typo.write_text(SPEC.replace('x = "delta"', 'x = "detla"'))
    r = pb("run", typo.name, "--dry-run", cwd=project)
    assert "figures[2].x: no parameter or metric 'detla'" in r.stderr
    assert "did you mean 'delta'" in r.stderr
    assert "figures" not in pb("run", "experiment.toml", "--dry-run", cwd=project).stderr
