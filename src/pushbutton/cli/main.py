"""The `pushbutton` / `pb` command line: the click group, its global options and the commands of
every module of this package. Heavy imports happen inside commands, so `pb --help` and
`pb status` start fast."""
from __future__ import annotations

import click

from pushbutton.cli import (cluster, doctor, gather, manage, parrun, report, results, run,
                            status, targets, ui)
from pushbutton.cli.errors import exit_for
from pushbutton.cli.help import polish


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pushbutton")
def cli():
    """pushbutton: state what to compute, press one button, get one results table."""


# `pb --help` lists the commands in alphabetical order, whatever the order here
for _module in (run, status, results, manage, targets, report, parrun, gather, cluster,
                doctor, ui):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
polish(cli)  # a one-line example each, defaults shown, no description cut


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="pb", standalone_mode=False)
    except SystemExit as e:
        run.leave_now(e.code)  # a finished `pb run` ends at once (cli/run.py)
        raise
    except (Exception, KeyboardInterrupt) as e:
        exit_for(e)  # exits with a message; returns only for a bug, whose traceback is needed
        raise
    run.leave_now(0)


if __name__ == "__main__":
    main()
