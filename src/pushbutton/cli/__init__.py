"""Top floor: the command line, one module per command group (see main.py)."""
# the `pb` entry point (pyproject.toml: pushbutton.cli:main); pushbutton.cli.main is then this
# function, and the module is sys.modules["pushbutton.cli.main"]
from pushbutton.cli.main import main  # noqa: F401
