"""What `--help` says: every command ends with a one-line example, options show their defaults,
and no description is cut (`pb --help` lists each command's whole first sentence; option help
is wrapped between words, never inside `--an-option`)."""
from __future__ import annotations

import re
import textwrap

import click
from click.formatting import iter_rows, measure_table, term_len

# one example per command, as a researcher would type it (`pb targets add` etc. by full path)
EXAMPLES = {
    "init": "pb init --example",
    "run": 'pb run experiment.toml -j 8 -m "first sweep"',
    "status": "pb status sweep",
    "watch": "pb watch sweep",
    "history": "pb history sweep",
    "show": "pb show 3f2a9c01e4b5   (a task; `pb show sweep`: the experiment)",
    "results": 'pb results sweep --where "n > 100" --format csv -o sweep.csv',
    "sql": 'pb sql "SELECT n, avg(error) AS e FROM results GROUP BY n ORDER BY n"',
    "logs": "pb logs 3f2a9c01e4b5",
    "retry": "pb retry sweep",
    "cancel": "pb cancel sweep",
    "clean": "pb clean sweep --bundles",
    "report": "pb report sweep --open",
    "ui": "pb ui --open   (--port 0: a free port; --store PROJECT: another project)",
    "parrun": "pb parrun sweep.py -j 4 --timeout 10m",
    "gather": "pb gather results.csv parrun-sweep --format csv -o all.csv",
    "doctor": "pb doctor",
    "repair": "pb repair sweep",
    "harvest": "pb harvest sweep --wait",
    "targets": "pb targets list",
    "targets list": "pb targets list",
    "targets add": "pb targets add hpc --host login.hpc.example.org --scheduler slurm",
    "targets show": "pb targets show hpc",
    "targets check": "pb targets check hpc",
    "cluster": "pb cluster up netns lab --nodes 3",
    "cluster up": "pb cluster up netns lab --nodes 3 --cpus 1   (ssh lab --host ws1 --host ws2)",
    "cluster down": "pb cluster down lab --delete   (--force: a machine is gone for good)",
    "cluster status": "pb cluster status lab",
    "cluster list": "pb cluster list",
    "cluster templates": "pb cluster templates",
    "cluster start": "pb cluster start dev --cpus 4",
    "cluster stop": "pb cluster stop dev",
    "cluster resize": "pb cluster resize lab +1   (ssh: --host ws1 --host ws3)",
    "cluster ssh": "pb cluster ssh lab n1",
    "cluster _power": "pb cluster _power resume 'n[2-3]' --dir FOLDER   (SLURM runs it)",
}


class Formatter(click.HelpFormatter):
    """Click's formatter, wrapping option and command help between words only."""

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        rows = list(rows)
        widths = measure_table(rows)
        first_col = min(widths[0], col_max) + col_spacing
        for first, second in iter_rows(rows, len(widths)):
            self.write(f"{'':>{self.current_indent}}{first}")
            if not second:
                self.write("\n")
                continue
            if term_len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - term_len(first)))
            else:
                self.write("\n" + " " * (first_col + self.current_indent))
            width = max(self.width - first_col - 2, 10)
            lines = textwrap.wrap(second, width, break_on_hyphens=False,
                                  break_long_words=False) or [""]
            self.write(lines[0] + "\n")
            for line in lines[1:]:
                self.write(f"{'':>{first_col + self.current_indent}}{line}\n")


    def write_text(self, text: str) -> None:
        """Paragraphs wrapped between words; a paragraph that starts with a \\b line keeps its
        lines (click's rule)."""
        indent = " " * self.current_indent
        width = max(self.width - self.current_indent, 11)
        out = []
        for para in re.split(r"\n\s*\n", text.strip("\n")):
            lines = para.splitlines()
            if lines and lines[0].strip() == "\b":
                out.append("\n".join(indent + line for line in lines[1:]))
                continue
            out.append("\n".join(textwrap.wrap(" ".join(para.split()), width,
                                               initial_indent=indent, subsequent_indent=indent,
                                               break_on_hyphens=False,
                                               break_long_words=False)))
        self.write("\n\n".join(out) + "\n")


class Context(click.Context):
    formatter_class = Formatter


def _format_commands(group):
    """A group's command list with each command's whole first sentence (click cuts it to the
    width with '...')."""
    def format_commands(ctx, formatter):
        rows = []
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, first_sentence(cmd)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
    return format_commands


def first_sentence(cmd) -> str:
    text = " ".join((cmd.short_help or cmd.help or "").split("\n\n")[0].split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def polish(group, path: str = "") -> None:
    """Examples, defaults shown and uncut descriptions for `group` and every command under it."""
    for name, cmd in group.commands.items():
        full = f"{path} {name}".strip()
        cmd.context_class = Context
        cmd.context_settings.setdefault("show_default", True)
        example = EXAMPLES.get(full)
        if example and not cmd.epilog:
            cmd.epilog = f"\b\nExample:\n  {example}"
        if isinstance(cmd, click.Group):
            cmd.format_commands = _format_commands(cmd)
            polish(cmd, full)
    group.context_class = Context
    group.context_settings.setdefault("show_default", True)
    if not path:
        group.format_commands = _format_commands(group)
