"""Task functions for tests/core/test_integrity.py."""
import os
import signal
import time

import pushbutton

GARBAGE = '[1,2]\nnull\n{"id": "%s", "ev": "end", "ok": true, "metrics": [1]}\n'


def _counted(i):
    with open(os.path.join(os.environ.get("PB_COUNT_DIR", "."), "executions.log"), "a") as f:
        f.write("%d\n" % i)


def poison(i, kill=False, **_):
    """Once (task 5): appends valid-JSON lines that are not outcomes to its bundle's
    outcomes.jsonl; with kill, then kills its driver (the resume must read past them)."""
    _counted(i)
    if i == 5 and not os.path.exists("poisoned-once"):
        open("poisoned-once", "w").close()
        out = os.path.join(os.path.dirname(os.environ["PB_SERIES"]), "outcomes.jsonl")
        with open(out, "a") as f:
            f.write(GARBAGE % pushbutton.current_task().id)
        if kill:
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
    return {"sq": i * i}
