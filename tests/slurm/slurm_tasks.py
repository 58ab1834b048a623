"""Task functions for the SLURM tests (copied into each test project as slurm_tasks.py)."""
import os
import signal
import sys
import time


def square(x):
    return {"y": x * x}


def nap(x, s=0.0):
    time.sleep(s)
    return {"x": x, "pid": os.getpid()}


def where(x):
    """Which Python ran it, and the marker a target's setup line exported; logs two steps."""
    import pushbutton
    for step in (1, 2):
        pushbutton.log(step=step, loss=x / step)
    return {"x": x, "python": sys.executable, "mark": os.environ.get("PB_TEST_MARK")}


def die_once(x, victim=-1, s=0.0):
    """The victim kills its own worker on the first attempt (PB_TASK_DIR survives retries)."""
    time.sleep(s)
    if x == victim:
        mark = os.path.join(os.environ["PB_TASK_DIR"], "died")
        if not os.path.exists(mark):
            os.makedirs(os.environ["PB_TASK_DIR"], exist_ok=True)
            open(mark, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return {"x": x}


def bulky(x, kb=64):
    return {"x": x, "blob": "z" * (kb * 1024)}


def counted(x, log, s=0.0):
    """Appends its x to the file `log` on every execution (to count double executions)."""
    with open(log, "a") as f:
        f.write("%d\n" % x)
    time.sleep(s)
    return {"x": x}


def fails_at(x, bad=-1):
    if x == bad:
        raise ValueError("bad x on purpose")
    return {"y": x * x}
