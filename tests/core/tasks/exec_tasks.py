"""Task functions for the execution-trust tests: task folders, crashes, process trees, NaN."""
import ctypes
import os
import subprocess
import sys
import time

import pushbutton


def checkpoint(i, **_):
    """Resumes from a checkpoint-like file in its task folder if there is one."""
    path = pushbutton.current_task().dir / "ckpt.txt"
    seen = path.read_text() if path.exists() else ""
    path.write_text(os.environ.get("PB_TAG", "?"))
    return {"seen": seen}


def resume_after_failure(i, **_):
    """Attempt 1 writes a checkpoint and fails; a retry must find it."""
    path = pushbutton.current_task().dir / "ckpt.txt"
    if not path.exists():
        path.write_text("attempt %s" % pushbutton.current_task().attempt)
        raise RuntimeError("fails after its checkpoint")
    return {"seen": path.read_text()}


def always_fails(i, **_):
    raise RuntimeError("attempt %s fails" % os.environ.get("PB_ATTEMPT"))


def crash(kind, **_):
    print("last words of", kind, flush=True)
    sys.stderr.write("on stderr too\n")
    sys.stderr.flush()
    if kind == "segv":
        ctypes.string_at(0)
    os._exit(3)


def diverged(i, **_):
    return {"x": float("nan"), "y": float("inf"), "z": float("-inf"), "i": i}


def spawn_and_sleep(i, folder):
    """A command's program: starts a child, records both pids, then sleeps."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(os.path.join(folder, "pids-%s.tmp" % i), "w") as f:
        f.write("%d %d" % (os.getpid(), child.pid))
    os.replace(os.path.join(folder, "pids-%s.tmp" % i), os.path.join(folder, "pids-%s" % i))
    time.sleep(300)


if __name__ == "__main__":
    spawn_and_sleep(sys.argv[1], sys.argv[2])
