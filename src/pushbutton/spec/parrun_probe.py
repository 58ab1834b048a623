"""The evaluated path of reading a `pb parrun` Python script's grid: the script's top and its
loop headers run in a subprocess (parrun_boot.py --probe), in a scratch folder holding the
script's files like a task's, with a timeout; it records every loop's values (JSON, or repr /
index for values that have none). The loop bodies never run; the statements before an inner
loop run only when that loop's values depend on the outer loops.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pushbutton.core.errors import SpecError
from pushbutton.core.files import fill_task_folder

BOOT = Path(__file__).with_name("parrun_boot.py")
FIX = ("make `python SCRIPT.py` get through its top (its imports installed here: pb parrun runs "
       "it with this Python to read the grid), or write the loops over literal values")


def _err(path, line, msg, fix=FIX):
    return SpecError(msg, file=f"{path}:{line}" if line else str(path), fix=fix)


def _tail(p: Path, n=5) -> str:
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln for ln in lines if ln.strip()][-n:]
    return ("; its last output: " + " | ".join(ln.strip()[:200] for ln in lines)) if lines else ""


_STACK = re.compile(r'File "(.*)", line (\d+) in ')


def evaluate(path: Path, text: str, loops: list, timeout: float) -> tuple[list, float]:
    """(each loop's record from the probe, seconds it took). loops: [{"line", "col", "target",
    "names", "source", "dependent"}]. A SpecError naming the script's line when its top raises,
    exits, runs past `timeout` or never reaches the loops."""
    work = Path(tempfile.mkdtemp(prefix="pb-parrun-"))
    scratch = work / "folder"
    try:
        fill_task_folder(path.parent, scratch)
        spec = {"script": path.name, "text": text, "loops": loops, "timeout": timeout,
                "out": str(work / "out.json"), "stack": str(work / "stack.txt")}
        (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PB_PARRUN_PROBE="1")
        for k in ("PB_PARAMS", "PB_RESULT", "PB_TASK_ID", "PB_SERIES", "PB_TASK_DIR"):
            env.pop(k, None)
        t0 = time.time()
        with open(work / "output.log", "wb") as log:
            p = subprocess.Popen([sys.executable, str(BOOT), "--probe", str(work / "spec.json")],
                                 cwd=scratch, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                p.wait(timeout=timeout + 10)  # the probe's own watchdog fires at `timeout`
            except subprocess.TimeoutExpired:
                pass
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # what the script started goes with it
                except OSError:
                    pass
                p.wait()
        seconds = time.time() - t0
        out = work / "out.json"
        if not out.exists():
            raise _timed_out(path, work, timeout, p.returncode)
        rec = json.loads(out.read_text(encoding="utf-8"))
        if not rec.get("ok"):
            raise _failure(path, rec["error"], loops, work)
        return rec["loops"], seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed_out(path, work, timeout, rc):
    stack = (work / "stack.txt").read_text(errors="replace") \
        if (work / "stack.txt").exists() else ""
    where = [int(ln) for f, ln in _STACK.findall(stack) if Path(f).name == path.name]
    if not stack.strip():   # neither an answer nor the watchdog: it died (a signal, os._exit)
        return _err(path, None, f"reading the grid failed: the script's top ended without an "
                    f"answer (exit status {rc}){_tail(work / 'output.log')}")
    line = where[0] if where else None
    at = f" (it was at line {line}" + (f", called from line {where[-1]}" if len(where) > 1
                                       else "") + ")" if line else ""
    return _err(path, line, f"the script's top did not reach the end of its loop headers "
                f"within {timeout:g} s{at}: pb parrun runs the script up to the loops to read "
                "the grid", "make the code before the loops finish (a loop that never ends? "
                "input()?), or give more time: pb parrun SCRIPT --grid-timeout 5m")


def _failure(path, e, loops, work):
    kind = e.get("type")
    if kind == "unreached":
        return _err(path, e["line"], "the script ended before reaching its loops (the code "
                    "around them did not run them: an `if` that is false?)",
                    "put the loop nest at the end of the script (at the top level, or inside "
                    "`with` or `if __name__ == \"__main__\":`)")
    frames = e.get("frames") or []
    line = frames[-1][0] if frames else None
    if e.get("grid"):
        return _err(path, line, e["message"], "see the loop's values with pb parrun SCRIPT "
                    "--dry-run")
    header = next((lp for lp in loops if lp["line"] == line), None)
    where = (f"in the loop header `for ... in {header['source']}`" if header else
             "before the loops" if e.get("reached") is False else "between the loops")
    msg = e.get("message") or ""
    what = f"{kind}: {msg}" if msg else kind
    if kind == "SystemExit":
        what = f" (SystemExit: {msg})" if msg not in ("", "None") else ""
        return _err(path, line, f"the script exited {where}{what}, while pb parrun read the "
                    f"grid (it runs the script's top and the loop headers){_tail(work / 'output.log')}",
                    "the script must run without arguments or input; or write the loops over "
                    "literal values")
    return _err(path, line, f"the script raised {what} {where}, while pb parrun read the grid "
                f"(it runs the script's top and the loop headers){_tail(work / 'output.log')}")
