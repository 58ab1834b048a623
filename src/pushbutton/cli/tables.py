"""Tables and cells as every command prints them: a results frame as a rich table (`pb results`,
`pb sql`), plain aligned columns for lists (`pb targets list`, `pb cluster list`), durations."""
from __future__ import annotations

import click

# bookkeeping columns a results table leaves out (--format csv has them)
HIDDEN = ("pb_error", "pb_host", "pb_node", "pb_run_id", "pb_finished_at")


def print_frame(df, limit, title=None):
    """A data frame as a rich table, its first `limit` rows (0: all)."""
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title)
    shown = df if not limit else df.head(limit)
    shown = shown.drop(columns=[c for c in HIDDEN if c in shown.columns])
    for c in shown.columns:
        table.add_column(str(c), overflow="fold")
    for row in shown.itertuples(index=False):
        table.add_row(*[cell(v) for v in row])
    Console().print(table)
    if limit and len(df) > limit:
        click.echo(f"... {len(df) - limit:,} more rows (--limit 0, or --format csv)")


def print_rows(rows):
    """Rows of strings (the first: the header) in columns two spaces apart, each as wide as its
    widest value."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def cell(v):
    """A value as a table shows it: floats to 6 significant digits, ids to 8 characters."""
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    if isinstance(v, str) and len(v) == 20 and all(ch in "0123456789abcdef" for ch in v):
        return v[:8]
    return "" if v is None else str(v)


def duration(seconds):
    """12m05s, or 3h07m from an hour on; '-' for none."""
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
