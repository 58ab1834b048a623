"""Errors a user sees. Each names where the problem is (file, key) and how to fix it."""
from __future__ import annotations


class PushbuttonError(Exception):
    """Base class: the CLI prints these as one clear message, never a traceback."""


class SpecError(PushbuttonError):
    """Bad input in an experiment spec, a parameter space or a target file."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 fix: str | None = None):
        self.file, self.key, self.fix, self.message = file, key, fix, message
        where = ""
        if file:
            where += f"{file}"
        if key:
            where += f"{': ' if file else ''}key '{key}'"
        text = f"{where}: {message}" if where else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class StoreError(PushbuttonError):
    """The project store is missing, locked or inconsistent."""


class BusyError(PushbuttonError):
    """Another driver is already running this experiment."""

