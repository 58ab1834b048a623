"""Task functions used by the core tests."""
import ctypes
import json
import os
import sys
import time

import pushbutton


def square(x, **_):
    return {"y": x * x}


def echo(**params):
    """Returns its parameters as metrics (to check values arrive verbatim)."""
    return {"got": json.dumps(params, sort_keys=True, ensure_ascii=False)}


def faulty(kind, **_):
    if kind == "ok":
        print("fine", kind)
        return {"ok": 1}
    if kind == "raise":
        raise ValueError("deliberate failure")
    if kind == "exit":
        sys.exit(3)
    if kind == "segv":
        ctypes.string_at(0)  # segmentation fault: kills the worker process
    if kind == "sleep":
        time.sleep(30)
        return {"ok": 1}
    if kind == "alloc":
        block = bytearray(3 * 1024 ** 3)  # past the memory limit
        return {"ok": len(block)}
    if kind == "nan":
        return {"loss": float("nan")}
    if kind == "object":
        return {"model": object()}
    if kind == "notdict":
        return 42
    raise AssertionError(kind)


def flaky(i, **_):
    """Fails on its first attempt, succeeds on the second."""
    if pushbutton.current_task().attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"i": i}


def curve(lr, steps=5, **_):
    loss = 1.0
    for step in range(steps):
        loss *= (1 - lr)
        pushbutton.log(step=step, loss=loss)
    return {"final": loss}


def slow(i, t=0.05, **_):
    time.sleep(t)
    return {"i": i, "pid": os.getpid()}
