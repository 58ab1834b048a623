"""Task functions for the store-size tests: output on both streams, one failure, counted."""
import os
import sys


def chatty(i, **_):
    with open(os.path.join(os.environ.get("PB_COUNT_DIR", "."), "executions.log"), "a") as f:
        f.write("%d\n" % i)
    print("out %d" % i)
    print("err %d" % i, file=sys.stderr)
    if i == 7:
        raise ValueError("seven is refused")
    return {"sq": i * i}


def quiet(i, **_):
    return {"i": i}
