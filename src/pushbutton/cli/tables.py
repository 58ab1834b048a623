"""Tables and cells as every command prints them: a results frame as a rich table (`pb results`,
`pb sql`), plain aligned columns for lists (`pb targets list`, `pb cluster list`), durations and
times."""
from __future__ import annotations

import click

from pushbutton.core.names import reserved

# the bookkeeping columns a results table shows by default; every other pb_ column is left
# out unless --all-columns (--format csv|json|parquet have them all)
SHOWN = ("pb_task_id", "pb_status")
TEXT_WIDTH = 32  # the widest a text column gets in a table (--format csv has it all)
# columns holding a time (seconds since the epoch): shown as UTC ISO timestamps
TIME_COLUMNS = ("pb_finished_at", "pb_t0", "pb_t1", "pb_time")


def bookkeeping_hidden(df, all_columns: bool = False) -> list[str]:
    """The pb_ columns a table leaves out: all but SHOWN (pb_status too when every row is
    done: a table of done tasks needs no status column)."""
    if all_columns:
        return []
    hide = [c for c in df.columns if reserved(c) and c not in SHOWN]
    if "pb_status" in df.columns and len(df) and (df["pb_status"] == "done").all():
        hide.append("pb_status")
    return hide


def print_frame(df, limit, title=None, all_columns=True, width=None) -> list[str]:
    """A data frame as a rich table, its first `limit` rows (0: all). Without `all_columns`,
    bookkeeping columns are left out (bookkeeping_hidden). A value is never wrapped: columns
    that do not fit the terminal's width are left out, from the right, and named in a note.
    Returns the columns left out for width."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    console = Console(width=width) if width else Console()
    shown = df if not limit else df.head(limit)
    shown = shown.drop(columns=bookkeeping_hidden(shown, all_columns))
    if "pb_status" in shown.columns:  # next to the id: the first column cut for width was it
        cols = [c for c in shown.columns if c != "pb_status"]
        at = cols.index("pb_task_id") + 1 if "pb_task_id" in cols else 0
        shown = shown[cols[:at] + ["pb_status"] + cols[at:]]
    cells = {c: [cell(v, c) for v in shown[c].tolist()] for c in shown.columns}
    fit, cut, used = [], [], 1  # the table's left border
    for c in shown.columns:
        w = _column_width(str(c), cells[c], _numeric(shown[c]))
        if cut or (fit and used + w + 3 > console.width):
            cut.append(c)
            continue
        fit.append((c, w))
        used += w + 3  # a space of padding either side, and a border
    table = Table()
    for c, w in fit:  # fixed widths: a header longer than its column folds, a value never
        table.add_column(Text(str(c), no_wrap=False, overflow="fold"), width=w, no_wrap=True,
                         overflow="ellipsis", justify="right" if _numeric(shown[c]) else "left")
    for i in range(len(shown)):
        table.add_row(*[cells[c][i] for c, _ in fit])
    if title:  # its own line: a title wider than a narrow table would wrap inside it
        click.echo(title)
    console.print(table)
    if cut:
        names = ", ".join(map(str, cut[:6])) + (", ..." if len(cut) > 6 else "")
        click.echo(_wrap(f"{len(cut)} more column{'s' * (len(cut) != 1)} not shown at this "
                         f"width: {names} (--format csv has every column)", console.width))
    if limit and len(df) > limit:
        click.echo(f"... {len(df) - limit:,} more rows (--limit 0, or --format csv)")
    return cut


def _column_width(header: str, values: list[str], numeric: bool) -> int:
    """The width a column gets: its widest value (a number is never cut; text beyond
    TEXT_WIDTH ends in '…'), and room for a header of up to 14 characters (a longer
    header folds onto a second line)."""
    widest = max((len(v) for v in values), default=0)
    if not numeric:
        widest = min(widest, TEXT_WIDTH)
    return max(widest, min(len(header), max(widest, 14)), 1)


def _numeric(series) -> bool:
    from pushbutton.store.head import Col
    if isinstance(series, Col):  # the first rows, read without pandas (store/head.py)
        return series.numeric
    import pandas as pd
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _wrap(text: str, width: int) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width=max(width, 40)))


def iso_utc(t, digits: int = 0) -> str:
    """Seconds since the epoch -> '2024-05-01T12:00:03Z' (UTC; `digits` of the second's
    fraction); '' for none."""
    import datetime as dt
    if t is None or t != t:
        return ""
    d = dt.datetime.fromtimestamp(float(t), tz=dt.timezone.utc)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += f"{d.microsecond / 1e6:.{digits}f}"[1:]
    return text + "Z"


def times_as_timestamps(df, text: bool = True):
    """The time columns (TIME_COLUMNS) of a frame as UTC ISO text (CSV, JSON) or, with
    text=False, as timezone-aware timestamps (Parquet); a copy."""
    import pandas as pd
    df = df.copy()
    for c in TIME_COLUMNS:
        if c in df.columns and pd.api.types.is_numeric_dtype(df[c]) and \
                not pd.api.types.is_bool_dtype(df[c]):
            if text:
                df[c] = [iso_utc(v, 3) or None for v in df[c].tolist()]
            else:
                df[c] = pd.to_datetime(df[c], unit="s", utc=True)
    return df


def print_rows(rows):
    """Rows of strings (the first: the header) in columns two spaces apart, each as wide as its
    widest value."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def cell(v, column=None):
    """A value as a table shows it: floats to 6 significant digits, ids to 8 characters,
    times (TIME_COLUMNS) as UTC ISO timestamps."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if not isinstance(v, (str, int, float)):  # (plain values need no pandas to tell)
        import pandas as pd
        if pd.api.types.is_scalar(v) and pd.isna(v):
            return ""
    if column in TIME_COLUMNS and isinstance(v, (int, float)) and not isinstance(v, bool):
        return iso_utc(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and len(v) == 20 and all(ch in "0123456789abcdef" for ch in v):
        return v[:8]
    return "" if v is None else str(v)


def duration(seconds):
    """0.4s or 42s under a minute, 12m05s, or 3h07m from an hour on; '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 10:  # a short run reads as what it took, not as 0m00s
        return f"{max(seconds, 0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def seconds(s) -> str:
    """A task's duration as people read it: 0.42 ms, 1.3 s, 12m05s; '-' for none."""
    if s is None or s != s:
        return "-"
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    return duration(s)


def write_frame(df, fmt: str, output=None) -> None:
    """A results-like frame as `pb results --format csv|json|parquet [-o FILE]` writes it (times
    as UTC ISO timestamps; Parquet needs -o)."""
    import sys
    from pathlib import Path
    from pushbutton.core.errors import PushbuttonError
    if fmt == "csv":
        times_as_timestamps(df).to_csv(output or sys.stdout, index=False)
    elif fmt == "json":
        text = times_as_timestamps(df).to_json(orient="records", lines=True, force_ascii=False)
        if output:
            Path(output).write_text(text)
        else:
            click.echo(text, nl=False)
    else:
        if not output:
            raise PushbuttonError("--format parquet needs -o FILE.parquet")
        times_as_timestamps(df, text=False).to_parquet(output, index=False)
    if output:
        click.echo(f"wrote {len(df):,} rows to {output}", err=True)
