"""The command line starts fast: its help imports none of the heavy libraries (they are imported
inside the commands that use them)."""
import subprocess
import sys

HEAVY = ("pandas", "pyarrow", "duckdb", "matplotlib")


def _imported(importtime_log: str) -> set:
    """Top-level names of the modules `python -X importtime` reports."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_pb_help_imports_no_heavy_library():
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pushbutton", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Usage: pb" in r.stdout
    names = _imported(r.stderr)
    assert "pushbutton" in names and "click" in names  # the log is read right
    assert not names & set(HEAVY), f"pb --help imports {sorted(names & set(HEAVY))}"


WALK = """
import sys
import click
from pushbutton.cli.main import cli

def walk(group, path):
    for name, command in group.commands.items():
        yield path + [name]
        if isinstance(command, click.Group):
            yield from walk(command, path + [name])

seen = 0
for args in walk(cli, []):
    assert cli.main(args=args + ["--help"], prog_name="pb", standalone_mode=False) == 0, args
    seen += 1
print(seen, *sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])))
"""


def test_every_command_help_imports_no_heavy_library():
    r = subprocess.run([sys.executable, "-c", WALK, *HEAVY], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    seen, *heavy = r.stdout.split("\n")[-2].split()
    assert int(seen) >= 20, r.stdout
    assert not heavy, f"a command's --help imports {heavy}"
