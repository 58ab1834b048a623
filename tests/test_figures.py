"""pushbutton.analysis.figures: each kind draws what it should; figure_specs: spec declarations
validate with clear errors."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from pushbutton.analysis import figure_specs as S
from pushbutton.analysis import figures as F
from pushbutton.core.errors import SpecError


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(0)
    rows = []
    for a in (1.0, 2.0, 4.0):
        for b in (0.1, 0.2, 0.3):
            for g in ("x", "y"):
                for rep in range(5):
                    rows.append({"pb_task_id": f"{len(rows)}", "a": a, "b": b, "g": g, "rep": rep,
                                 "loss": a * b + rng.normal(0, 0.01), "ok": bool(b > 0.15),
                                 "pb_status": "done", "pb_duration_s": float(rng.uniform(1, 2))})
    out = pd.DataFrame(rows)
    out.attrs["params"] = ["a", "b", "g", "rep"]
    return out


@pytest.fixture(scope="module")
def series():
    return pd.DataFrame([{"pb_task_id": f"{lr}-{r}", "lr": lr, "rep": r, "pb_step": s, "pb_time": s,
                          "loss": 1 / (1 + lr * s)} for lr in (0.1, 1.0) for r in range(3)
                         for s in range(10)])


def test_line_plots_means_with_error_bars(df):
    fig = F.line(df, "a", "loss", hue="g", err="ci", units={"a": "m/s"})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "a [m/s]" and ax.get_ylabel() == "loss"
    lines = [c.lines[0] for c in ax.containers]  # errorbar containers: data line first
    assert len(lines) == 2  # one per hue value
    y = lines[0].get_ydata()
    expect = [df[(df.a == a) & (df.g == "x")]["loss"].mean() for a in (1, 2, 4)]
    assert np.allclose(y, expect)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["g = x", "g = y"]


def test_heatmap_and_boundary(df):
    fig = F.heatmap(df, "a", "b", "ok", boundary=0.5, units={"b": "1/s"})
    ax = fig.axes[0]
    mesh = ax.collections[0]
    assert mesh.get_array().reshape(3, 3).tolist() == [[0, 0, 0], [1, 1, 1], [1, 1, 1]]
    bline = [ln for ln in ax.get_lines() if ln.get_label().startswith("ok")][0]
    assert np.allclose(bline.get_ydata(), 0.15)  # midway between b = 0.1 and 0.2
    assert ax.get_ylabel() == "b [1/s]" and len(fig.axes) == 2  # with a colorbar
    # an expression works as the value
    fig2 = F.heatmap(df, "a", "b", "loss < 0.5")
    assert fig2.axes[0].collections[0].get_array().max() == 1


def test_learning_curves_and_histogram(df, series):
    fig = F.learning_curves(series, "loss", hue="lr")
    curves = fig.axes[0].get_lines()
    assert len(curves) == 2 and len(curves[0].get_xdata()) == 10
    assert np.allclose(curves[1].get_ydata(), [1 / (1 + s) for s in range(10)])
    h = F.histogram(df, "pb_duration_s", hue="g", bins=5)
    assert len(h.axes[0].patches) == 2
    empty = F.histogram(df.iloc[:0], "pb_duration_s")
    assert "no finished tasks" in empty.axes[0].texts[0].get_text()


def test_figures_work_in_notebooks_and_save(df, tmp_path):
    fig = F.line(df, "a", "loss")
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    paths = F.save(fig, tmp_path / "sub" / "loss")
    assert [p.name for p in paths] == ["loss.png", "loss.svg", "loss.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    again = F.save(fig, tmp_path / "sub2" / "loss", formats=("svg",))
    assert again[0].read_bytes() == paths[1].read_bytes()  # no dates: reproducible files


def test_figures_from_spec(df, series, tmp_path):
    decls = [{"kind": "heatmap", "x": "a", "y": "b", "value": "ok", "boundary": True},
             {"kind": "line", "x": "b", "y": "loss", "hue": "a", "logy": True, "name": "loss-b"},
             {"kind": "learning_curves", "metric": "loss", "hue": "lr"},
             {"kind": "histogram", "column": "pb_duration_s"}]
    out = S.figures_from_spec(decls, df, series, tmp_path, formats=("png",))
    assert [o["name"] for o in out] == ["01-heatmap-ok", "loss-b", "03-learning_curves-loss",
                                        "04-histogram-pb_duration_s"]
    assert all((tmp_path / f"{o['name']}.png").exists() and o["png"] for o in out)


@pytest.mark.parametrize("decl,key,fix", [
    ({"kind": "heatmap", "x": "aa", "y": "b", "value": "ok"}, "figures[0].x", "did you mean 'a'"),
    ({"kind": "pie"}, "figures[0].kind", "heatmap"),
    ({"kind": "line", "x": "a"}, "figures[0].y", "loss"),
    ({"kind": "line", "x": "a", "y": "loss", "colour": "red"}, "figures[0].colour", "hue"),
    ({"kind": "line", "x": "a", "y": "loss", "err": "iqr"}, "figures[0].err", "sem"),
    ({"kind": "heatmap", "x": "a", "y": "b", "value": "ok", "boundary": "half"},
     "figures[0].boundary", None),
    ({"kind": "learning_curves", "metric": "acc"}, "figures[0].metric", "loss"),
])
def test_declaration_errors_name_the_key_and_the_choices(df, series, decl, key, fix):
    with pytest.raises(SpecError) as e:
        S.validate([decl], df, series, file="exp.toml")
    assert e.value.key == key and e.value.file == "exp.toml"
    if fix:
        assert fix in (e.value.fix or "")


def test_duplicate_names_rejected(df):
    d = {"kind": "histogram", "column": "loss", "name": "h"}
    with pytest.raises(SpecError, match="unique"):
        S.validate([d, dict(d)], df)
    assert S.validate([], df) == [] and S.validate(None, df) == []
    assert math.isfinite(S.validate([d], df)[0].get("bins", 1))


def test_0_1_metric_error_bars_are_the_wilson_interval_and_the_caption_says_so(df):
    fig = F.line(df, "b", "ok", hue="g")  # default err: Wilson for a 0/1 metric
    ax = fig.axes[0]
    from pushbutton.analysis import stats as A
    agg = A.aggregate(df, by=["b", "g"], metrics=["ok"])
    part = agg[agg.g == "x"].sort_values("b")
    bars = ax.containers[0].lines[2][0].get_segments()  # the error bar segments, per point
    for seg, lo, hi in zip(bars, part["ok_ci_low"], part["ok_ci_high"]):
        assert seg[:, 1].min() == pytest.approx(lo) and seg[:, 1].max() == pytest.approx(hi)
        assert 0 <= lo and hi <= 1
    assert "Wilson" in ax.get_title()
    assert any("Wilson score interval" in n for n in F.notes(fig))
    sem = F.line(df, "b", "loss")  # other metrics: s.e.m., said as such
    assert any("standard error of the mean" in n for n in F.notes(sem))


def test_a_mean_over_an_unnamed_parameter_says_so(df):
    fig = F.line(df, "a", "loss", hue="g")  # b varies and is neither x nor hue
    said = [t.get_text() for t in fig.axes[0].texts]
    assert "averaged over b (3 values)" in said
    assert any(n.startswith("Averaged over b (3 values)") for n in F.notes(fig))
    whole = F.line(df, "a", "loss")
    assert "averaged over b (3 values), g (2 values)" in [t.get_text() for t in whole.axes[0].texts]
    named = F.line(df[df.b == 0.1], "a", "loss", hue="g")  # b fixed: nothing to say
    assert not named.axes[0].texts and not any("veraged" in n for n in F.notes(named))
    hm = F.heatmap(df, "a", "b", "loss")
    assert "averaged over g (2 values)" in [t.get_text() for t in hm.axes[0].texts]


def test_continuous_hue_colour_scale_spans_the_data():
    import matplotlib.colors as mc
    rows = [{"pb_task_id": f"{h}-{x}", "x": x, "h": h, "y": x * h, "pb_status": "done"}
            for h in (2.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0, 19.0) for x in (1, 2)]
    t = pd.DataFrame(rows)
    t.attrs["params"] = ["x", "h"]
    fig = F.line(t, "x", "y", hue="h")
    bar = fig.axes[1]._colorbar  # a colorbar instead of an 8-entry legend
    assert (bar.norm.vmin, bar.norm.vmax) == (2.0, 19.0)  # the data's range, no more
    assert fig.axes[1].get_ylim() == pytest.approx((2.0, 19.0))
    colours = [mc.to_hex(c.lines[0].get_color()) for c in fig.axes[0].containers]
    # the lowest and highest hue get the two ends of the scale the colorbar shows
    assert colours[0] == mc.to_hex(bar.cmap(0.0)) and colours[-1] == mc.to_hex(bar.cmap(1.0))
    wide = t.assign(h=t["h"] ** 3)  # 8 .. 6859: more than two decades, a log scale
    assert isinstance(F.line(wide, "x", "y", hue="h").axes[1]._colorbar.norm, mc.LogNorm)


def _cells():
    """dist x size (strings) x 3 reps: uniform/large all failed, cauchy/small pending, and
    cauchy/large outside the space."""
    rows = []
    for dist in ("normal", "uniform", "cauchy"):
        for size in ("small", "medium", "large"):
            if (dist, size) == ("cauchy", "large"):
                continue
            state = {("uniform", "large"): "failed", ("cauchy", "small"): "pending"}.get(
                (dist, size), "done")
            for rep in range(3):
                rows.append({"pb_task_id": f"{dist}{size}{rep}", "dist": dist, "size": size,
                             "n": 10 * (1 + ["small", "medium", "large"].index(size)), "rep": rep,
                             "ok": (rep < 2) if state == "done" else None,
                             "pb_status": state})
    t = pd.DataFrame(rows)
    t.attrs["params"] = ["dist", "size", "n", "rep"]
    t.attrs["metrics"] = ["ok"]
    return t


def test_heatmap_over_categories_marks_failed_cells_apart_from_cells_outside_the_grid():
    t = _cells()
    fig = F.heatmap(t, "dist", "size", "ok")
    ax = fig.axes[0]
    assert [x.get_text() for x in ax.get_xticklabels()] == ["normal", "uniform", "cauchy"]
    assert [y.get_text() for y in ax.get_yticklabels()] == ["small", "medium", "large"]
    z = ax.collections[0].get_array().reshape(3, 3)  # rows: size, columns: dist
    assert z[0, 0] == pytest.approx(2 / 3) and np.ma.is_masked(z[2, 2])
    marks = {c.get_hatch(): c for c in ax.collections[1:]}
    failed = marks["xx"].get_paths()
    assert len(failed) == 1  # uniform (x = 1) x large (y = 2): every task failed
    assert failed[0].get_extents().bounds == pytest.approx((0.5, 1.5, 1.0, 1.0))
    assert len(marks["//"].get_paths()) == 1  # cauchy x small: not finished yet
    notes = " ".join(F.notes(fig))
    assert "every task at that point failed" in notes and "White cells (1)" in notes
    assert "veraged" not in notes  # n = 10 x size never varies within a cell: nothing averaged
    # a numeric y with categorical x: the boundary is drawn and kept as numbers
    b = F.heatmap(t, "dist", "n", "ok", boundary=0.5)
    assert b.pb_boundary["level"] == 0.5 and list(b.pb_boundary["table"]["dist"]) == \
        ["cauchy", "normal", "uniform"]
    no = F.heatmap(t, "dist", "size", "ok", boundary=0.5)  # interpolating needs a numeric y
    assert any("No boundary drawn" in n for n in F.notes(no))


def test_every_kind_and_key_is_documented():
    from pathlib import Path

    from pushbutton.spec import figure_keys as K
    doc = (Path(__file__).parent.parent / "docs" / "REPORTS.md").read_text(encoding="utf-8")
    common = doc[doc.index("Keys every kind takes"):doc.index("### kind")]
    for key in K.COMMON:
        assert f"| `{key}` |" in common, key
    for kind, (required, optional) in K.KEYS.items():
        part = doc[doc.index(f'### kind = "{kind}"'):]
        part = part[:part.index("\n### ", 5)] if "\n### " in part[5:] else part
        for key in required | optional:
            assert re.search(rf"\| `{key}`(, `\w+`)* \||\| `\w+`, `{key}` \|", part), (kind, key)
        for key in required:
            assert re.search(rf"\| `{key}` \| required", part), (kind, key)


def test_declarations_are_checked_when_a_spec_is_loaded(tmp_path):
    import pushbutton as pb
    spec = tmp_path / "e.toml"
    spec.write_text('name = "f"\nfunction = "t:f"\n[space]\ngrid = {x = [1]}\n'
                    '[[figures]]\nkind = "heatmap"\nx = "x"\ny = "x"\nvalue = "y"\nvmin = "0"\n')
    with pytest.raises(SpecError) as e:
        pb.load(spec, project=tmp_path)
    assert e.value.key == "figures[0].vmin" and e.value.file == str(spec)
    assert not (tmp_path / ".pushbutton").exists()  # loading a spec writes nothing
