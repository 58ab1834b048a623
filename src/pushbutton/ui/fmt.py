"""How the pages write numbers, times and durations (Jinja filters; the same rules in
static/ui.js for what the live channel updates)."""
from __future__ import annotations

import datetime as _dt
import math


def duration(s) -> str:
    if s is None or (isinstance(s, float) and not math.isfinite(s)):
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def utc(t) -> str:
    if t is None or (isinstance(t, float) and not math.isfinite(t)):
        return "–"
    return _dt.datetime.fromtimestamp(float(t), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def rate(r) -> str:
    return "–" if r is None else f"{r:,.1f}/s"


def count(n) -> str:
    return "–" if n is None else f"{int(n):,}"


def cell(v) -> str:
    """A table cell: 4 significant digits for floats, '' for missing."""
    if v is None:
        return ""
    try:
        import pandas as pd
        if v is pd.NA or v is pd.NaT:
            return ""
    except ImportError:
        pass
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.4g}"
    if hasattr(v, "item"):  # numpy scalars
        return cell(v.item())
    return str(v)


def seg(v) -> str:
    """A value as one segment of a URL path ('/' escaped too)."""
    from urllib.parse import quote
    return quote(str(v), safe="")


FILTERS = {"duration": duration, "utc": utc, "rate": rate, "count": count, "cell": cell,
           "seg": seg}


def plain(v):
    """A value JSON can carry (NaN and inf as their names, numpy scalars as Python's)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def table_url(path: str, args: dict, **change) -> str:
    """The address of the results table with `change` applied (sort, page, ...)."""
    from urllib.parse import urlencode
    a = {**args, **change}
    pairs = [(k, a[k]) for k in ("where", "sort") if a.get(k)]
    if a.get("desc"):
        pairs.append(("desc", "1"))
    if a.get("page"):
        pairs.append(("page", str(a["page"])))
    if a.get("size") and a["size"] != 50:
        pairs.append(("size", str(a["size"])))
    pairs += [("col", c) for c in a.get("cols") or []]
    return path + ("?" + urlencode(pairs) if pairs else "") + "#results"
