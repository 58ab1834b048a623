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


def tear(i, **_):
    """Simulates a worker killed in the middle of writing this task's outcome line, once."""
    marker = pushbutton.current_task().dir / "torn-once"
    if i == 3 and not marker.exists():
        marker.write_text("x")
        out = os.path.join(os.path.dirname(os.environ["PB_SERIES"]), "outcomes.jsonl")
        with open(out, "a") as f:
            f.write('{"id":"%s","ev":"end","ok":true,"metrics":{"i":' % os.environ["PB_TASK_ID"])
        os.kill(os.getpid(), 9)
    return {"i": i}


def counted(i, t=0.01, **_):
    """Records every execution (to count double executions) and sleeps a little."""
    with open(os.path.join(os.environ.get("PB_COUNT_DIR", "."), "executions.log"), "a") as f:
        f.write("%d\n" % i)
    time.sleep(t)
    return {"i": i, "sq": i * i}


def mixed(i, **_):
    """Metrics of every storable kind, and some failures, for the two ingest paths."""
    if i % 97 == 5:
        raise ValueError("failure %d" % i)
    out = {"int": i, "flt": i / 7 if i % 3 else i // 7, "ok": i % 2 == 0, "name": "r%d" % i,
           "maybe": None if i % 5 == 0 else 1.5, "vec": [i, i + 1], "cfg": {"a": i}}
    if i % 4 == 0:
        out["sometimes"] = i
    return out


def stuck(i, **_):
    """Like native code that ignores SIGALRM: only the worker's watchdog can end it."""
    import signal
    if i == 1:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(30)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    return {"i": i}
