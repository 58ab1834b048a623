"""Floor 0: what every stage shares (errors, ids, pb_ column names, path names, the task-side
API, file helpers, the package version). Imports nothing of pushbutton outside core.
"""

__version__ = "0.1.0"  # also in pyproject.toml; pushbutton.__version__ is this one
