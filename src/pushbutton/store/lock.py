"""One writer per experiment: a driver, a harvest or a repair holds the experiment's lock."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from pushbutton.core.errors import BusyError


class ExperimentLock:
    """One driver per experiment: a flock that the OS releases when the holder dies."""

    def __init__(self, store, exp_id: int, name: str):
        self.path = store.dir / "locks" / f"{exp_id}.lock"
        self.name = name
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.holder()
            raise BusyError(
                f"experiment '{self.name}' is already being run (pid {who.get('pid')} on "
                f"{who.get('host')}); follow it with `pb watch {self.name}`, or stop it with "
                f"`pb cancel {self.name}`") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "t": time.time()}).encode())
        self.fd = fd
        return self

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def held_by_other(self) -> bool:
        return file_locked(self.path)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def file_locked(path) -> bool:
    """Whether another process holds the flock on `path` (opens it read-only: creates nothing,
    so it works on a read-only store too)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no driver ever ran here
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
