"""Expressions over the columns of a results table (`success=`, `value=` of analysis and figures).

They use the safe language of a space's `where` (spec/where.py): the text is parsed and every
node checked against a whitelist (comparisons, and/or/not, arithmetic, `in`, abs/min/max/round/
len/int/float/str/bool), so attribute access, `__import__` or any other call is refused with a
SpecError naming the key, and nothing runs. Values are computed row by row.
"""
from __future__ import annotations

import math


def expression(text: str, columns, key: str = "success"):
    """The compiled expression; names must be columns."""
    from pushbutton.spec.where import _Expr
    return _Expr(text, [c for c in columns if isinstance(c, str)], key, None, what="column")


def evaluate(df, text: str, key: str = "success"):
    """The expression's value per row of df; NaN where a column it uses is missing."""
    import pandas as pd
    expr = expression(text, df.columns, key)
    used = sorted(expr.used)
    cols = {c: df[c].tolist() for c in used}
    out = []
    for i in range(len(df)):
        point = {c: cols[c][i] for c in used}
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in point.values()):
            out.append(math.nan)
        else:
            out.append(expr.value(point))
    return pd.Series(out, index=df.index, dtype=object)
