"""Phase diagrams: the mean of a value over an x × y grid of parameters, with the level curve
where it crosses a boundary level.

Axes may be numbers (cells drawn to scale, uneven grids included) or categories (strings,
booleans: one evenly spaced cell per value, labelled). A cell is coloured by its mean; a point
of the grid where every task failed is hatched ×, one with tasks but no value yet (pending,
cancelled, NaN) hatched /, and only a point with no task at all (outside the space) stays
white. The boundary is kept as numbers too (`fig.pb_boundary`), for the report's table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.analysis.figure_base import (_empty, _numeric_col, _style, _units, add_note,
                                             averaged_over, label, log_worthy, new_figure,
                                             say_averaged)
from pushbutton.core import names as N

FAILED = {"facecolor": "0.80", "edgecolor": "0.35", "hatch": "xx"}
NO_VALUE = {"facecolor": "0.94", "edgecolor": "0.6", "hatch": "//"}


def _edges(v: np.ndarray, log: bool = False) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; uneven grids are drawn to scale). On a
    log axis the midpoints are geometric: 10, 100, 1000 get cells of one width each."""
    if log:
        return 10 ** _edges(np.log10(v))
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[:-1] + v[1:]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _levels(s: pd.Series) -> list:
    """The axis' values in order: numbers sorted, categories as first seen (the space's order:
    "small", "medium", "large" stay so)."""
    vals = s.dropna().unique().tolist()
    if _numeric_col(s):
        return sorted(vals)
    return vals


class _Axis:
    """Positions and cell edges of one axis: numbers to scale, categories evenly spaced."""

    def __init__(self, s: pd.Series, log: bool | None = None):
        self.levels = _levels(s)
        self.numeric = _numeric_col(s) and len(self.levels) > 0 and \
            bool(np.isfinite(np.asarray(self.levels, dtype=float)).all())
        # a log axis when asked, or by default for positive numbers over two decades or more
        self.log = self.numeric and (log_worthy(self.levels) if log is None else bool(log))
        if self.log and min(self.levels) <= 0:
            raise ValueError("a logarithmic axis needs positive values, got "
                             f"{min(self.levels)!r} in {s.name!r}")
        if self.numeric:
            self.pos = np.asarray(self.levels, dtype=float)
            self.edges = _edges(self.pos, self.log)
        else:
            self.pos = np.arange(len(self.levels), dtype=float)
            self.edges = np.arange(len(self.levels) + 1, dtype=float) - 0.5

    def where(self, values) -> np.ndarray:
        if self.numeric:
            return np.asarray(values, dtype=float)
        index = {v: i for i, v in enumerate(self.levels)}
        return np.array([index.get(v, np.nan) for v in values], dtype=float)

    def ticks(self, ax, which: str) -> None:
        """Category names at the cell centres (numbers keep matplotlib's ticks)."""
        if self.numeric:
            return
        names = [str(v) for v in self.levels]
        if which == "x":
            slant = max((len(n) for n in names), default=0) > 6
            ax.set_xticks(self.pos, labels=names, rotation=30 if slant else 0,
                          ha="right" if slant else "center")
        else:
            ax.set_yticks(self.pos, labels=names)


def _cell_counts(df: pd.DataFrame, x: str, y: str, ys: list, xs: list) -> dict:
    """Per cell (y rows, x columns): how many tasks, and how many failed."""
    st = df[[x, y]].copy()
    st["_s"] = df[N.STATUS].to_numpy() if N.STATUS in df.columns else "done"

    def grid(part):
        if not len(part):
            return np.zeros((len(ys), len(xs)))
        g = part.groupby([y, x], sort=False).size().unstack(x)
        return g.reindex(index=ys, columns=xs).fillna(0).to_numpy(float)
    return {"total": grid(st), "failed": grid(st[st["_s"] == "failed"])}


def _mark(ax, xa: _Axis, ya: _Axis, cells: np.ndarray, style: dict):
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle
    rects = [Rectangle((xa.edges[j], ya.edges[i]), xa.edges[j + 1] - xa.edges[j],
                       ya.edges[i + 1] - ya.edges[i]) for i, j in zip(*np.nonzero(cells))]
    if rects:
        ax.add_collection(PatchCollection(rects, linewidth=0.0, zorder=2, **style))


def heatmap(df: pd.DataFrame, x: str, y: str, value: str, boundary: float | bool | None = None,
            units: dict | None = None, title: str | None = None, cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, ax=None,
            status: str | None = "done", logx: bool | None = None, logy: bool | None = None):
    """Phase diagram: the mean of `value` (a metric, a boolean, or an expression such as
    "err < 1e-3") over an x-y grid, optionally with the `boundary` level curve (True = 0.5).
    x and y may be numeric or categorical parameters. A numeric axis is logarithmic when
    `logx` / `logy` say so, and by default when its values are positive and span two decades
    or more."""
    from matplotlib.patches import Patch
    units = _units(df, units)
    own = ax is None
    fig, ax = new_figure(figsize=(6.4, 4.8)) if own else (ax.figure, ax)
    with _style():
        data = A._done(df, status)
        vals = data[[x, y]].copy()
        vals["_v"] = A._success_values(data, value, "value")
        xa, ya = _Axis(df[x], logx), _Axis(df[y], logy)
        if len(vals):
            surf = vals.groupby([y, x], sort=False, dropna=False)["_v"].mean().unstack(x)
        else:
            surf = pd.DataFrame()
        z = surf.reindex(index=ya.levels, columns=xa.levels).to_numpy(float)
        counts = _cell_counts(df, x, y, ya.levels, xa.levels)
        empty = np.isnan(z) & (counts["total"] > 0)
        all_failed = empty & (counts["failed"] == counts["total"])
        no_value = empty & ~all_failed
        pad = None
        if z.size == 0 or (np.isnan(z).all() and not all_failed.any()):
            _empty(ax)
        else:
            if A.is_binary(vals["_v"]) and vmin is None and vmax is None:
                vmin, vmax = 0.0, 1.0  # a rate: the same colours mean the same in every figure
            mesh = ax.pcolormesh(xa.edges, ya.edges, np.ma.masked_invalid(z), cmap=cmap,
                                 vmin=vmin, vmax=vmax, shading="flat")
            if np.isfinite(z).any():
                cb = fig.colorbar(mesh, ax=ax)
                cb.set_label(label(value, units))
            _mark(ax, xa, ya, all_failed, FAILED)
            _mark(ax, xa, ya, no_value, NO_VALUE)
            handles = _marks_said(fig, all_failed, no_value, counts["total"])
            handles = [Patch(label=lab, **style) for lab, style in handles]
            if boundary is not None and boundary is not False:
                handles += _boundary(fig, ax, df, x, y, value, boundary, status, xa, ya)
            if handles and own:  # below the axes: inside, it would hide cells
                fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                           frameon=False, fontsize=9)
            elif handles:
                ax.legend(handles=handles, frameon=True, loc="best", fontsize=8)
            if xa.log:
                ax.set_xscale("log")
            if ya.log:
                ax.set_yscale("log")
            ax.set_xlim(xa.edges[0], xa.edges[-1])
            ax.set_ylim(ya.edges[0], ya.edges[-1])
            xa.ticks(ax, "x")
            ya.ticks(ax, "y")
            ax.grid(False)
            pad = say_averaged(fig, ax, averaged_over(data, [x, y]))
        ax.set_xlabel(label(x, units))
        ax.set_ylabel(label(y, units))
        ax.set_title(title or f"{label(value)} over {label(x)} × {label(y)}", pad=pad)
    return fig


def _marks_said(fig, all_failed, no_value, total) -> list[tuple[str, dict]]:
    """Caption sentences and legend entries for the marked cells."""
    out = []
    if all_failed.any():
        n = int(all_failed.sum())
        add_note(fig, f"Hatched × cells ({n}): every task at that point failed (see Failures).")
        out.append(("every task failed", FAILED))
    if no_value.any():
        n = int(no_value.sum())
        add_note(fig, f"Hatched / cells ({n}): no value yet (tasks not finished or cancelled, "
                      "or the value is NaN).")
        out.append(("no value yet", NO_VALUE))
    outside = int((total == 0).sum())
    if outside:
        add_note(fig, f"White cells ({outside}): no task at that point (outside the space).")
    return out


def _boundary(fig, ax, df, x, y, value, boundary, status, xa: _Axis, ya: _Axis) -> list:
    """Draw the level curve; keep its numbers on the figure. Returns legend handles."""
    level = 0.5 if boundary is True else float(boundary)
    if not ya.numeric:
        add_note(fig, f"No boundary drawn: it is interpolated along y, and {y!r} is not "
                      "numeric.")
        return []
    b = A.boundary(df, x, y, rate=value, level=level, status=status)
    fig.pb_boundary = {"x": x, "y": y, "value": value, "level": level, "table": b}
    add_note(fig, f"Line: where the mean of {value} crosses {level:g}, interpolated linearly "
                  f"in {y} between grid points (the table lists it per {x}).")
    found = b.dropna(subset=[y])
    if not len(found):
        return []
    px = xa.where(found[x].tolist())
    ax.plot(px, found[y], color="white", lw=3.2, zorder=3)
    (ln,) = ax.plot(px, found[y], color="black", lw=1.6, zorder=4, marker=".",
                    label=f"{label(value)} = {level:g}")
    return [ln]
