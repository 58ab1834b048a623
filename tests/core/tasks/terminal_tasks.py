"""Task functions for tests/core/test_terminal.py (what the terminal says)."""
import os
import signal
import time


def check(a, b):
    """a <= 18: a ValueError whose message differs per task, raised from one line; a > 18: a
    ZeroDivisionError raised one call deeper."""
    if a <= 18:
        raise ValueError("bad a=%d" % a)
    return {"r": _divide(a, b)}


def _divide(a, b):
    return a / b


def kill_once(i):
    """Its first attempt dies as a lost or killed worker would (SIGKILL of its own process)."""
    if os.environ.get("PB_ATTEMPT") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"i2": i * 2}


def nap(i, t=0.0):
    time.sleep(t)
    return {"i2": i * 2}


def wide(a_long_parameter_name, b):
    """Many metrics with long values: a table wider than 80 columns."""
    x = a_long_parameter_name * 1234567.891
    return {"first_metric": x, "second_metric": x / 3, "third_metric": -x,
            "fourth_metric": x * 1e-9, "fifth_metric": x + 0.5, "label": "v%d" % b}
