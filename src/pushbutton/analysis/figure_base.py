"""What every figure kind shares: the figure class, the print style, axis labels, saving, the
notes a figure carries (what its error bars are, what it averaged over) and colour scales for a
numeric hue. The plots themselves are in figures.py and phase.py.

A figure made here carries `fig.pb_notes` (sentences for a caption: what the error bars are,
which parameters were averaged over, which cells are marked) and, for a phase diagram with a
boundary, `fig.pb_boundary` (the crossing points as numbers); the report prints both.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A

# Sizes for print: a 6.4 in wide figure scaled to one column stays legible at these sizes.
_STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 10,
          "ytick.labelsize": 10, "legend.fontsize": 9, "legend.title_fontsize": 10,
          "lines.linewidth": 1.8, "lines.markersize": 5, "axes.grid": True, "grid.alpha": 0.3,
          "svg.fonttype": "path", "pdf.fonttype": 42,
          "svg.hashsalt": "pushbutton"}  # fixed ids: the same figure gives the same SVG

_FigureClass = None


def _figure_class():
    """A Figure subclass that draws itself in notebooks; created lazily with matplotlib."""
    global _FigureClass
    if _FigureClass is None:
        from matplotlib.figure import Figure

        class PBFigure(Figure):
            def _repr_png_(self):
                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=100)
                return buf.getvalue()

        _FigureClass = PBFigure
    return _FigureClass


def new_figure(figsize=(6.4, 4.4)):
    """A figure with one axes, constrained layout (room for labels and colorbars)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context(_STYLE):
        fig = _figure_class()(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    fig.pb_notes = []
    return fig, ax


def _style():
    import matplotlib
    return matplotlib.rc_context(_STYLE)


def label(name: str, units: dict | None = None) -> str:
    """Axis label for a parameter/metric: "delta [n/N]" where units are declared."""
    text = str(name).replace("_", " ")
    u = (units or {}).get(name)
    return f"{text} [{u}]" if u else text


def _units(df, units):
    merged = dict(getattr(df, "attrs", {}).get("units", {}) or {})
    merged.update(units or {})
    return merged


def _empty(ax, msg="no finished tasks yet"):
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _numeric_col(s):
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def notes(fig) -> list[str]:
    """The caption sentences a figure carries (empty for a figure made elsewhere)."""
    return list(getattr(fig, "pb_notes", None) or [])


def add_note(fig, text: str) -> None:
    if not hasattr(fig, "pb_notes"):
        fig.pb_notes = []
    fig.pb_notes.append(text)


def averaged_over(df: pd.DataFrame, shown: Sequence[str | None],
                  params: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """Parameters (not replicates) that vary within a point of the figure (a group of its axis
    and hue values) without being axis or hue: a mean over them is a mean over different
    experiments, and the figure has to say so. (A parameter tied to a shown one, such as n =
    10 × size, does not vary within a point and is not named.)"""
    params = A.param_columns(df) if params is None else params
    keys = [c for c in shown if c is not None and c in df.columns]
    out = []
    for p in params:
        if p in shown or p in A.REPLICATE or p not in df.columns or not len(df):
            continue
        col = df[p].map(repr) if df[p].dtype == object else df[p]  # lists, dicts, mixed types
        within = col.groupby([df[k] for k in keys], dropna=False).nunique(dropna=False).max() \
            if keys else col.nunique(dropna=False)
        if within > 1:
            out.append((p, int(col.nunique(dropna=False))))
    return out


def say_averaged(fig, ax, over: list[tuple[str, int]]) -> float | None:
    """Write "averaged over g (2 values)" just above the axes and into the figure's notes;
    returns the title padding that leaves room for it (None: nothing written)."""
    if not over:
        return None
    text = "averaged over " + ", ".join(f"{p} ({n} values)" for p, n in over)
    add_note(fig, text[0].upper() + text[1:] + ": name it as hue (or x, y) to tell them apart.")
    ax.annotate(text, xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 4),
                textcoords="offset points", ha="center", va="bottom", fontsize=9, color="0.35")
    return 18.0


def log_worthy(values) -> bool:
    """Numbers that read best on a logarithmic scale: all positive, spanning two decades or
    more (10, 100, 1000 drawn evenly, not 10 squeezed against 0)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and float(v.min()) > 0 and float(v.max()) / float(v.min()) >= 100


def hue_scale(keys: Sequence[float]):
    """(colormap, norm) for a numeric hue: viridis without its palest tenth (lines stay visible
    on white), spanning exactly the data; logarithmic when the values are positive and span
    two decades or more."""
    import matplotlib
    from matplotlib.colors import ListedColormap, LogNorm, Normalize
    keys = np.asarray(keys, dtype=float)
    lo, hi = float(np.nanmin(keys)), float(np.nanmax(keys))
    cmap = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, 256)),
                          name="viridis_0.9")
    if log_worthy(keys):
        return cmap, LogNorm(lo, hi)
    if hi == lo:
        return cmap, Normalize(lo - 0.5, hi + 0.5)
    return cmap, Normalize(lo, hi)


def save(fig, stem: str | Path, formats: Sequence[str] = ("png", "svg", "pdf"),
         dpi: int = 150) -> list[Path]:
    """Write `stem.png`, `stem.svg`, ... (folders created); returns the paths.
    Metadata dates are left out so re-rendering the same data gives the same files."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None},
                "png": {"Software": None}}.get(fmt)
        with _style():
            fig.savefig(p, format=fmt, dpi=dpi, metadata=meta)
        out.append(p)
    return out
