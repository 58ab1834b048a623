#!/usr/bin/env python3
"""Run bundles of tasks. Standard library only, Python >= 3.8: this file is shipped as-is to
compute nodes, which need nothing installed but Python.

    python worker.py BUNDLE_DIR           run one bundle, then exit
    python worker.py --list FILE [INDEX]  run line INDEX (default $SLURM_ARRAY_TASK_ID) of FILE
    python worker.py --serve [PARENT_PID [NICE]]
                                          read bundle folders from stdin, one per line; answer
                                          "done <folder>" on stdout (the local backend's pool,
                                          NICE steps below its driver's priority)

The file contract (see docs/ARCHITECTURE.md): bundle.json in, outcomes.jsonl (a task's end line)
/ starts.jsonl (its start line) / stdout.log / stderr.log / series.jsonl out, and done.json
written atomically last. Every line is one write() on an O_APPEND descriptor, so a killed
worker leaves at most one torn last line in each file.

Why one long stdlib-only file: it is shipped as one file to SLURM nodes and as source text to
Dask workers, where pushbutton may not be installed. So it imports nothing of ours and keeps its
own small copies of helpers that live once elsewhere (the atomic writes of done.json and
pb_task.json, _signal_name and fill_task_folder: core/files.py's atomic_write, signal_name and
fill_task_folder); it is split into
named steps inside, not into modules.
"""
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import traceback
import types

HOST = socket.gethostname()
# the node as the scheduler names it (pb_node): SLURM's node name, which may differ from the host
# name (NodeHostname, several slurmd on one machine); the Dask worker's address (the Dask backend
# sets PB_NODE); else the host name
NODE = os.environ.get("SLURMD_NODENAME") or os.environ.get("PB_NODE") or HOST
_THIS_FILE = os.path.abspath(__file__) if "__file__" in globals() else None
_ENC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# metrics may be NaN or +-inf (a diverged estimator is data): written as the NaN / Infinity /
# -Infinity tokens that Python's json reads back as floats (the driver's ingest does)
_MENC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True)
_WHERE = '"host": %s, "node": %s' % (json.dumps(HOST), json.dumps(NODE))  # in every end line
_OK = {"ok": True}
LAST_LINE_MAX = 64 << 20  # how far back from the end of a command's output a metrics line may start
_functions = {}  # import each callable once per worker process


class TaskTimeout(Exception):
    pass


def _die_with_parent():
    """Under a local pool the worker must not outlive its driver (no double execution on resume)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _install_shim():
    """Let task code `import pushbutton` for log() on nodes where pushbutton is not installed."""
    try:
        importlib.import_module("pushbutton")
        return
    except ImportError:
        pass
    mod = types.ModuleType("pushbutton")

    def log(step=None, **metrics):
        bad = [k for k in metrics if k.startswith("pb_")]
        if bad:
            raise ValueError("pushbutton.log: metric name %r is reserved (pb_ names are "
                             "pushbutton's columns); rename it" % bad[0])
        path = os.environ.get("PB_SERIES")
        if path:
            line = json.dumps({"task": os.environ.get("PB_TASK_ID"), "step": step,
                               "t": time.time(), "m": metrics}, default=_plain) + "\n"
            with open(path, "a") as f:
                f.write(line)

    class _Ctx:
        id = property(lambda self: os.environ.get("PB_TASK_ID"))
        attempt = property(lambda self: int(os.environ.get("PB_ATTEMPT", "1")))

        @property
        def dir(self):
            import pathlib
            p = pathlib.Path(os.environ.get("PB_TASK_DIR") or ".")
            p.mkdir(parents=True, exist_ok=True)
            return p

    mod.log = log
    mod.current_task = _Ctx
    sys.modules["pushbutton"] = mod


def _plain(x):
    try:
        return x.item()  # numpy scalars
    except AttributeError:
        raise TypeError("value %r of type %s is not JSON-serialisable" % (x, type(x).__name__))


def _check_metrics(metrics, params=None):
    """Return (json_text, None) or (None, clear message). Names starting with pb_ are
    pushbutton's columns; a metric named like a parameter is dropped when it only echoes the
    parameter's value, and refused when it differs (one column cannot hold both)."""
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, dict):
        return None, ("the task returned %s, not a dict of metrics; return e.g. "
                      "{'error': 0.1}" % type(metrics).__name__)
    if all(k.__class__ is str and not k.startswith("pb_") for k in metrics):
        try:  # the common case in one encode: what the loop below would write, unchanged
            text = _MENC.encode(metrics)
        except (TypeError, ValueError):
            text = None  # numpy scalars (.item()), a value that cannot be stored: said below
        if text is not None:  # JSON's own types: safe to compare with the parameters
            echoes = [k for k in metrics if k in params] if params else ()
            if not echoes:
                return text, None
            if all(metrics[k] == params[k] and isinstance(metrics[k], str) ==
                   isinstance(params[k], str) for k in echoes):
                return _MENC.encode({k: v for k, v in metrics.items() if k not in params}), None
    clean = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            return None, "metric name %r is not a string" % (k,)
        if k.startswith("pb_"):
            return None, ("metric '%s': names starting with 'pb_' are reserved for pushbutton's "
                          "own columns; rename the metric" % k)
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            try:
                v = v.item()
            except Exception:
                pass
        try:
            _MENC.encode(v)
        except (TypeError, ValueError) as e:
            return None, ("metric '%s' (%s) cannot be stored: %s; return numbers, strings, "
                          "bools, None, or lists/dicts of them" % (k, type(v).__name__, e))
        if params and k in params:
            p = params[k]
            if v == p and isinstance(v, str) == isinstance(p, str):
                continue  # an echo of the input: nothing is lost
            return None, ("metric '%s' = %s differs from parameter %s = %s; rename the metric"
                          % (k, _MENC.encode(v)[:200], k, _MENC.encode(p)[:200]))
        clean[k] = v
    return _MENC.encode(clean), None


class Bundle:
    def __init__(self, folder):
        self.dir = os.path.abspath(folder)
        with open(os.path.join(self.dir, "bundle.json")) as f:
            self.spec = json.load(f)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.out = os.open(os.path.join(self.dir, "outcomes.jsonl"), flags, 0o644)
        # start lines apart from the end lines: only the story of a task that never ended
        # needs them, so the driver's ingest does not read them at all
        self.starts = os.open(os.path.join(self.dir, "starts.jsonl"), flags, 0o644)
        if os.lseek(self.starts, 0, os.SEEK_END):
            with open(os.path.join(self.dir, "starts.jsonl"), "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    os.write(self.starts, b"\n")  # a killed worker's torn start line
        self.finished = self._already_finished()

    def _already_finished(self):
        """A re-run bundle (requeue, resume) skips tasks that already have an end line."""
        path = os.path.join(self.dir, "outcomes.jsonl")
        done = set()
        with open(path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            os.write(self.out, b"\n")  # keep the torn line detectable, start clean
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("ev") == "end" and "id" in rec:
                done.add(rec["id"])
        return done

    def emit(self, rec):
        os.write(self.out, (json.dumps(rec, default=_plain) + "\n").encode())

    def finish(self, n_end):
        os.close(self.out)
        os.close(self.starts)
        h = hashlib.sha256()
        path = os.path.join(self.dir, "outcomes.jsonl")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        done = {"exit": 0, "n_end": n_end, "sha256": h.hexdigest(),
                "bytes": os.path.getsize(path), "host": HOST, "node": NODE, "t": time.time()}
        tmp = os.path.join(self.dir, ".done.json.tmp")
        with open(tmp, "w") as f:
            json.dump(done, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.dir, "done.json"))


def _resolve(target, root, extra_path):
    fn = _functions.get(target)
    if fn is None:
        for p in [root] + list(extra_path or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        mod_name, _, attr = target.partition(":")
        if mod_name.endswith(".py"):  # a file path: import it by location

            path = os.path.join(root, mod_name)
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(path))[0], path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
        fn = mod
        for part in attr.split("."):
            fn = getattr(fn, part)
        fn = _drop_rep_unless_wanted(fn)
        _functions[target] = fn
    return fn


def _drop_rep_unless_wanted(fn):
    """`reps(n)` adds `rep` (bookkeeping) and `seed`; a function that takes `seed` but not
    `rep` (nor **kwargs) is called without `rep`."""
    import inspect
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn
    if "rep" in params or any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fn

    def call(**kw):
        kw.pop("rep", None)
        return fn(**kw)
    return call


def _fd_offset(fd):
    return os.lseek(fd, 0, os.SEEK_END)


def _classify_exception(e):
    if isinstance(e, TaskTimeout):
        return "timeout"
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, SystemExit):
        return "exit"
    return "exception"


def _user_frames(stack):
    """A traceback's frames without this file's (the worker's call into the task) and without
    importlib's machinery: what the user's code did."""
    keep = [f for f in stack if os.path.abspath(f.filename) != _THIS_FILE
            and not f.filename.startswith("<frozen importlib")]
    return traceback.StackSummary.from_list(keep)


def _user_traceback(e):
    """The formatted traceback of `e` (and of the exceptions chained to it) showing the user's
    frames only."""
    te = traceback.TracebackException(type(e), e, e.__traceback__)
    seen, todo = set(), [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = _user_frames(t.stack)
        todo += [c for c in (t.__cause__, t.__context__) if c is not None]
    return "".join(te.format())


def _on_alarm(signum, frame):
    raise TaskTimeout("task exceeded its timeout")


class _Watchdog:
    """One thread per worker process (not one per task): native code can ignore SIGALRM, so if
    a task overruns its timeout by 10 s the worker records the timeout and exits; the driver then
    reschedules the rest of the bundle."""

    def __init__(self):
        self.cond = threading.Condition()
        self.job = None  # (deadline, bundle, task, timeout)
        threading.Thread(target=self._loop, daemon=True).start()

    def arm(self, bundle, task, timeout):
        with self.cond:
            self.job = (time.monotonic() + timeout + 10, bundle, task, timeout)
            self.cond.notify()

    def disarm(self):
        with self.cond:
            self.job = None

    def _loop(self):
        with self.cond:
            while True:
                if self.job is None:
                    self.cond.wait()
                    continue
                left = self.job[0] - time.monotonic()
                if left > 0:
                    self.cond.wait(left)
                    continue
                _hard_timeout(*self.job[1:])


_watchdog = None


def _ensure_watchdog():
    global _watchdog
    if _watchdog is None:
        signal.signal(signal.SIGALRM, _on_alarm)
        _watchdog = _Watchdog()


def run_python(bundle, task, fn, timeout, out_fd, err_fd):
    """Call fn(**params) in this process; returns the end record's fields."""
    if timeout:
        _ensure_watchdog()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        _watchdog.arm(bundle, task, timeout)
    try:
        metrics = fn(**task["params"])
        text, problem = _check_metrics(metrics, task["params"])
        if problem:
            return {"ok": False, "kind": "metric", "error": problem}
        return {"ok": True, "metrics_json": text}
    except BaseException as e:  # the task's own failure, whatever it is, is data
        if isinstance(e, KeyboardInterrupt):
            raise
        tb = _user_traceback(e)
        os.write(err_fd, tb.encode("utf-8", "replace"))
        kind = _classify_exception(e)
        msg = "%s: %s" % (type(e).__name__, e)
        if kind == "timeout":
            msg = "task exceeded its timeout of %ss" % timeout
        elif kind == "exit":
            msg = "the task called sys.exit(%r)" % (e.code,)
        return {"ok": False, "kind": kind, "error": msg[:2000], "traceback": tb[-4000:]}
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _watchdog.disarm()


def _hard_timeout(bundle, task, timeout):
    bundle.emit({"id": task["id"], "ev": "end", "ok": False, "kind": "timeout", "t1": time.time(),
                 "host": HOST, "node": NODE, "error": "task exceeded its timeout of %ss "
                 "(stuck in native code; worker stopped)" % timeout})
    os._exit(70)


def substitute(argv, params):
    """{name} inside an argument becomes the parameter's value; never through a shell."""
    fmt = string.Formatter()
    return [fmt.vformat(a, (), params) for a in argv]


_libc = None


def _child_setup(memory_mb, parent):
    """Runs in a command task's process between fork and exec: it dies with this worker
    (PR_SET_PDEATHSIG, Linux), and gets the memory limit."""
    def setup():
        if _libc is not None:
            try:
                _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except Exception:
                pass
            if os.getppid() != parent:  # the worker died before prctl took effect
                os._exit(75)
        if memory_mb:
            import resource
            b = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (b, b))
    return setup


class _Guard:
    """A helper process forked once per worker that kills the process groups of the command
    tasks still running when the worker ends, however it ends (SIGKILL included: the helper
    sees its pipe from the worker close). A task's own children are in its group, so they go
    too. The helper is in a session of its own, so killing the worker's group spares it."""

    def __init__(self):
        self.w = self.pid = None

    def start(self):
        if self.w is not None:
            return
        try:
            r, w = os.pipe()
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # the helper
            try:
                os.close(w)
                _guard_loop(r)
            finally:
                os._exit(0)
        os.close(r)
        self.w, self.pid = w, pid

    def send(self, text):
        if self.w is not None:
            try:
                os.write(self.w, text.encode())
            except OSError:
                self.w = None

    def close(self):
        if self.w is not None:
            os.close(self.w)
            self.w = None
            try:
                os.waitpid(self.pid, 0)  # it exits at once on end of file
            except OSError:
                pass


def _guard_loop(r):
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        fds = [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, 1024)
    for fd in fds:
        if fd > 2 and fd != r:
            try:
                os.close(fd)
            except OSError:
                pass
    groups = set()

    def kill_all(*_):
        for g in list(groups):
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)
    signal.signal(signal.SIGTERM, kill_all)
    signal.signal(signal.SIGHUP, kill_all)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    buf = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for ln in lines:
            if ln[:1] == b"+":
                groups.add(int(ln[1:]))
            elif ln[:1] == b"-":
                groups.discard(int(ln[1:]))
    kill_all()


_guard = _Guard()


def _killpg(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def run_command(bundle, task, call, timeout, memory_mb, out_fd, err_fd, env):
    """Run the task's command. Its stdout goes straight to the bundle's stdout.log (never held
    in memory); its metrics are the last line of what it wrote there, or $PB_RESULT."""
    params = task["params"]
    try:
        argv = substitute(call["argv"], params)
    except (KeyError, IndexError, ValueError) as e:
        return {"ok": False, "kind": "spec", "error": "cannot fill the command's placeholders: %s"
                % e}
    result_path = os.path.join(bundle.dir, ".result-%s.json" % task["id"])
    if os.path.exists(result_path):
        os.unlink(result_path)
    env = dict(env, PB_PARAMS=_ENC.encode(params), PB_RESULT=result_path)
    cwd = bundle.spec.get("root") or None
    if call.get("workdir") == "task":  # a fresh folder of its own for each attempt
        try:
            fill_task_folder(cwd or os.getcwd(), env["PB_TASK_DIR"])
        except OSError as e:
            return {"ok": False, "kind": "exit",
                    "error": "cannot make the task's folder %s: %s" % (env["PB_TASK_DIR"], e)}
        cwd = env["PB_TASK_DIR"]
    out_start = _fd_offset(out_fd)
    failed = _run_process(argv, env, cwd, timeout, memory_mb, out_fd, err_fd)
    if failed:
        return failed
    metrics, failed = _command_metrics(bundle, result_path, out_start, out_fd)
    if failed:
        return failed
    text, problem = _check_metrics(metrics, params)
    if problem:
        return {"ok": False, "kind": "metric", "error": problem}
    return {"ok": True, "metrics_json": text}


_SMALL_FILE = 1 << 20


def fill_task_folder(src, dst):
    """A fresh folder `dst` in which `src`'s files are visible: small files copied, folders and
    big files linked, hidden ones and __pycache__ left out (a copy of core/files.py's: see the
    top of this file)."""
    import shutil
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    os.makedirs(dst)
    for entry in os.scandir(src):
        name = entry.name
        if name.startswith(".") or name == "__pycache__":
            continue
        target = os.path.join(dst, name)
        try:
            if entry.is_file() and entry.stat().st_size <= _SMALL_FILE:
                shutil.copy2(entry.path, target)
            elif os.path.exists(entry.path):
                os.symlink(os.path.realpath(entry.path), target)
        except FileNotFoundError:
            continue


def _run_process(argv, env, cwd, timeout, memory_mb, out_fd, err_fd):
    """Run argv in a process group of its own, watched by the guard; None when it exits 0,
    else the failure (cannot start, timeout, signal, memory, exit status)."""
    global _libc
    if _libc is None:
        try:
            import ctypes
            _libc = ctypes.CDLL(None)
        except Exception:
            _libc = False
    _guard.start()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd,
                             env=env, cwd=cwd, start_new_session=True,
                             preexec_fn=_child_setup(memory_mb, os.getpid()))
    except OSError as e:
        return {"ok": False, "kind": "exit", "error": "cannot start %r: %s" % (argv[0], e)}
    _guard.send("+%d\n" % p.pid)
    try:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p.pid)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): move on
                pass
            return {"ok": False, "kind": "timeout",
                    "error": "task exceeded its timeout of %ss" % timeout}
    finally:
        _killpg(p.pid)  # what the task left running in the background ends with it
        _guard.send("-%d\n" % p.pid)
    return _exit_failure(rc, memory_mb, err_fd) if rc != 0 else None


def _signal_name(num):
    """'SIGSEGV' for 11 (a copy of core/files.py's signal_name: see the top of this file)."""
    try:
        return signal.Signals(abs(num)).name
    except ValueError:
        return str(abs(num))


def _exit_failure(rc, memory_mb, err_fd):
    """What a non-zero exit status means: a signal, the memory limit (as the task's stderr
    tells), or a plain exit status with the end of stderr."""
    if rc < 0:
        return {"ok": False, "kind": "signal", "error": "killed by signal %s" % _signal_name(rc)}
    tail = _tail(err_fd)
    if memory_mb and ("MemoryError" in tail or "Cannot allocate memory" in tail
                      or "bad_alloc" in tail):
        return {"ok": False, "kind": "memory",
                "error": "exceeded the memory limit of %s MB (exit %d)" % (memory_mb, rc)}
    return {"ok": False, "kind": "exit", "error": "exit status %d" % rc,
            "traceback": tail[-2000:]}


def _command_metrics(bundle, result_path, out_start, out_fd):
    """(metrics or None, failure or None): the JSON in $PB_RESULT, else a JSON object on the
    last line the command wrote to stdout."""
    if os.path.exists(result_path) and os.path.getsize(result_path):
        try:
            with open(result_path) as f:
                return json.load(f), None
        except ValueError as e:
            return None, {"ok": False, "kind": "metric",
                          "error": "$PB_RESULT does not hold a JSON object: %s" % e}
        finally:
            os.unlink(result_path)
    last = _last_line(os.path.join(bundle.dir, "stdout.log"), out_start, _fd_offset(out_fd))
    if last is None:
        return None, {"ok": False, "kind": "metric", "error": "the last stdout line is longer "
                      "than %d MB; write the metrics to $PB_RESULT" % (LAST_LINE_MAX >> 20)}
    if last.startswith("{"):
        try:
            return json.loads(last), None
        except ValueError as e:
            return None, {"ok": False, "kind": "metric",
                          "error": "the last stdout line looks like JSON but is not: %s" % e}
    return None, None


def _last_line(path, start, end):
    """The last non-blank line of path[start:end] (stripped text; "" if none), read backwards
    in growing blocks; None if it is longer than LAST_LINE_MAX and looks like JSON."""
    if end <= start:
        return ""
    buf, pos = b"", end
    with open(path, "rb") as f:
        while pos > start:
            n = min(max(1 << 16, len(buf)), pos - start)
            pos -= n
            f.seek(pos)
            buf = f.read(n) + buf
            s = buf.rstrip()
            if s:
                i = max(s.rfind(b"\n"), s.rfind(b"\r"))
                if i >= 0:
                    return s[i + 1:].decode("utf-8", "replace").strip()
            if end - pos > LAST_LINE_MAX:
                return None if s.endswith(b"}") else ""
    return buf.decode("utf-8", "replace").strip()


def _tail(fd, n=4000):
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        with open("/proc/self/fd/%d" % fd, "rb") as f:
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_bundle(folder, parent=None):
    """Run the bundle's tasks not yet finished (a restarted bundle resumes), then write
    done.json. Stops early, without done.json, when the driver that started it has died."""
    bundle = Bundle(folder)
    run = _BundleRun(bundle)
    n_end = 0
    try:
        for task in bundle.spec["tasks"]:
            if task["id"] in bundle.finished:
                continue
            if parent is not None and os.getppid() != parent:
                return  # the driver died: stop, it will reschedule
            run.task(task)
            n_end += 1
    finally:
        run.close()
    bundle.finish(n_end)


class _BundleRun:
    """One bundle's run in this process: its log descriptors, and how its tasks are called (a
    Python function in this process, its output sent to the logs; or a command)."""

    def __init__(self, bundle):
        spec = self.spec = bundle.spec
        self.bundle = bundle
        self.root = spec.get("root") or os.getcwd()
        self.call = spec["call"]
        self.timeout = spec.get("timeout")
        self.memory_mb = spec.get("memory_mb")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self.out_fd = os.open(os.path.join(bundle.dir, "stdout.log"), flags, 0o644)
        self.err_fd = os.open(os.path.join(bundle.dir, "stderr.log"), flags, 0o644)
        self.series = os.path.join(bundle.dir, "series.jsonl")
        # task folders belong to one experiment: the same parameters in another experiment (or
        # a --rerun, which starts a new generation) never see this one's checkpoints
        self.task_root = os.path.join(
            spec.get("task_root") or os.path.join(self.root, ".pushbutton", "tasks"),
            _safe_name(spec.get("experiment")))
        self.inline = self.call["kind"] == "python"
        self.saved = None  # this process's stdout and stderr while a Python bundle runs
        self.fn = self.load_failure = None
        self.env = dict(os.environ)
        if self.inline:
            self._redirect()
            self._load()

    def _redirect(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.out_fd, 1)
        os.dup2(self.err_fd, 2)
        os.chdir(self.root)

    def _load(self):
        """Import the task function (its import output goes to the logs); a failure to import
        becomes every task's failure."""
        target = self.call["target"]
        try:
            self.fn = _resolve(target, self.root, self.spec.get("sys_path"))
        except Exception as e:
            self.load_failure = {"ok": False, "kind": "exception",
                                 "error": "cannot load %s: %s: %s" % (target, type(e).__name__, e),
                                 "traceback": _user_traceback(e)[-4000:]}

    def task(self, task):
        """One task: its start line, the call, its end line (with its slices of the logs)."""
        tid = task["id"]
        task_dir = _task_dir(self.task_root, tid, task.get("gen") or 0)
        task_env = (("PB_TASK_ID", tid), ("PB_ATTEMPT", str(task.get("attempt", 1))),
                    ("PB_SERIES", self.series), ("PB_TASK_DIR", task_dir))
        if self.inline:
            sys.stdout.flush()
            sys.stderr.flush()
        offs = [_fd_offset(self.out_fd), 0, _fd_offset(self.err_fd), 0]
        t0 = time.time()
        # fixed layout: the driver recognises start lines without parsing JSON; the log
        # offsets let it slice out the output of a task that dies without an end line
        os.write(self.bundle.starts, ('{"id":"%s","ev":"start","t":%r,"log":[%d,%d]}\n'
                                   % (tid, t0, offs[0], offs[2])).encode())
        if self.inline:
            res = self._call_function(task, task_env)
        else:
            self.env.update(task_env)
            res = run_command(self.bundle, task, self.call, self.timeout, self.memory_mb,
                              self.out_fd, self.err_fd, self.env)
        offs[1] = _fd_offset(self.out_fd)
        offs[3] = _fd_offset(self.err_fd)
        _describe(task_dir, self.spec.get("experiment"), task)
        os.write(self.bundle.out, _end_line(tid, t0, offs, res).encode())

    def _call_function(self, task, task_env):
        environ = os.environ
        for k, v in task_env:  # only what changed (a putenv each: most of a no-op's cost)
            if environ.get(k) != v:
                _task_env.set(k, v)
        if self.fn is None:
            res = dict(self.load_failure)
        else:
            # the limit is per task: this task's allowance on top of what the worker holds now
            # (interpreter, imported modules, earlier tasks' leftovers)
            old_limit = _limit_self(self.memory_mb, self.timeout) if self.memory_mb else None
            try:
                res = run_python(self.bundle, task, self.fn, self.timeout, self.out_fd,
                                 self.err_fd)
            finally:
                _unlimit_self(old_limit)
        sys.stdout.flush()
        sys.stderr.flush()
        return res

    def close(self):
        if self.saved:
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            os.close(self.saved[0])
            os.close(self.saved[1])
        os.close(self.out_fd)
        os.close(self.err_fd)


class _EnvSlots:
    """Sets a Python task's PB_ variables in this process's environment without a leak.
    os.environ[k] = v calls setenv(3), and glibc's setenv keeps every "NAME=value" string it was
    ever given (so that a pointer from an earlier getenv stays valid): a new PB_TASK_ID and
    PB_TASK_DIR per task grew a serving worker by ~300 bytes a task, a GB over 5e6 tasks. Here
    each name gets one buffer of our own, handed to putenv(3), whose string *becomes* the
    environment entry: a new value is written into it in place (a longer one gets a bigger
    buffer), so getenv, os.environ and any child started by the task all see the current task,
    and nothing accumulates. Without ctypes (or if the entry was replaced behind our back, e.g.
    the task set os.environ itself) it falls back to os.environ, i.e. setenv."""

    def __init__(self):
        self.bufs = {}  # name -> (ctypes buffer, its value's address, room for it, name bytes)
        self.libc = None
        if os.name != "posix":
            return
        try:
            import ctypes
            libc = ctypes.CDLL(None)
            libc.putenv.argtypes = [ctypes.c_void_p]
            libc.putenv.restype = ctypes.c_int
            libc.getenv.argtypes = [ctypes.c_char_p]
            libc.getenv.restype = ctypes.c_void_p
            os.environ._data, os.environ.encodekey, os.environ.encodevalue  # noqa: B018
            self.ctypes, self.libc = ctypes, libc
        except Exception:
            pass

    def set(self, name, value):
        environ = os.environ
        if self.libc is None:
            environ[name] = value
            return
        val = environ.encodevalue(value) + b"\0"
        slot = self.bufs.get(name)
        if slot is not None and len(val) <= slot[2] and "\0" not in value \
                and self.libc.getenv(slot[3]) == slot[1]:  # still the environment's entry
            self.ctypes.memmove(slot[1], val, len(val))  # the common case: written in place
        else:
            key = environ.encodekey(name)
            entry = key + b"=" + val
            if b"\0" in entry[:-1]:
                environ[name] = value  # refused as before (ValueError: embedded null byte)
                return
            buf = self.ctypes.create_string_buffer(entry, max(len(entry) + 64, 2 * len(entry)))
            if self.libc.putenv(self.ctypes.addressof(buf)) != 0:
                environ[name] = value
                return
            # the old buffer is no longer the environment's entry: it may go now
            addr = self.ctypes.addressof(buf) + len(key) + 1
            self.bufs[name] = slot = (buf, addr, len(buf) - len(key) - 1, key)
        environ._data[slot[3]] = val[:-1]  # what os.environ[name] = value stores, no setenv


_task_env = _EnvSlots()


def _end_line(tid, t0, offs, res):
    """A task's end record as one line; metrics the worker has already checked are spliced in
    as the JSON text they are, not parsed again."""
    metrics_json = res.pop("metrics_json", None)
    if metrics_json is not None and res == _OK:  # a success: what json.dumps would write
        return '{"id": "%s", "ev": "end", "t0": %r, "t1": %r, %s, "log": [%d, %d, %d, %d], ' \
            '"ok": true,"metrics":%s}\n' % (tid, t0, time.time(), _WHERE, offs[0], offs[1],
                                             offs[2], offs[3], metrics_json)
    rec = {"id": tid, "ev": "end", "t0": t0, "t1": time.time(), "host": HOST, "node": NODE,
           "log": offs}
    rec.update(res)
    line = json.dumps(rec, default=_plain)
    if metrics_json is not None:
        line = line[:-1] + ',"metrics":' + metrics_json + "}"
    return line + "\n"


def _safe_name(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name or "_")).lstrip(".") \
        or "_"


def _task_dir(task_root, tid, gen):
    """<task_root>/<ab>/<id> for a task's first generation, <id>.<gen> after a --rerun. A new
    generation's folder starts empty: the older ones are removed the first time it is used."""
    base = "%s/%s/%s" % (task_root, tid[:2], tid)  # os.path.join's result, for a hex id
    if not gen:
        return base
    d = "%s.%d" % (base, gen)
    if not os.path.isdir(d):
        import shutil
        for g in range(gen):
            old = base if g == 0 else "%s.%d" % (base, g)
            if os.path.lexists(old):
                shutil.rmtree(old, ignore_errors=True)
    return d


def _describe(task_dir, experiment, task):
    """A task folder that was used says whose it is (pb_task.json), like a signac workspace."""
    if not os.path.isdir(task_dir):  # the task made no folder (most tasks)
        return
    path = os.path.join(task_dir, "pb_task.json")
    if not os.path.exists(path):
        try:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"experiment": experiment, "task_id": task["id"],
                           "generation": task.get("gen") or 0, "params": task["params"]}, f,
                          indent=1, sort_keys=True, default=str)
            os.replace(tmp, path)
        except OSError:
            pass


def _limit_self(memory_mb, timeout=None):
    """A Python task's memory limit (RLIMIT_AS, soft): the address space in use when the task
    starts plus the allowance. Returns the limits to restore when the task is over."""
    try:
        import resource
        if timeout:
            _ensure_watchdog()  # its thread's stack is the worker's, not the task's
        old = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        b = vm + int(memory_mb) * 1024 * 1024
        if old[1] != resource.RLIM_INFINITY:
            b = min(b, old[1])
        resource.setrlimit(resource.RLIMIT_AS, (b, old[1]))
        return old
    except (OSError, ValueError, ImportError):
        return None


def _unlimit_self(old):
    if old is not None:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, old)


def serve(parent=None, nice=0):
    _die_with_parent()
    if nice:
        try:
            os.nice(nice)  # (here, not in a preexec_fn: the driver has threads)
        except OSError:
            pass
    # the driver may have died before prctl took effect: then nobody would stop this worker,
    # and it would run bundles already handed to a new driver
    parent = parent or os.getppid()
    if os.getppid() != parent:
        return
    proto = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        folder = line.strip()
        if not folder:
            continue
        run_bundle(folder, parent=parent)
        proto.write("done %s\n" % folder)
        proto.flush()


def main(argv=None):
    try:
        return _main(argv)
    finally:
        _guard.close()


def _main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    os.environ["PB_WORKER"] = "1"  # lets Experiment.run() refuse to start a sweep from a task
    _install_shim()
    if argv and argv[0] == "--serve":
        serve(int(argv[1]) if len(argv) > 1 else None, int(argv[2]) if len(argv) > 2 else 0)
    elif argv and argv[0] == "--list":
        index = int(argv[2]) if len(argv) > 2 else int(os.environ["SLURM_ARRAY_TASK_ID"])
        with open(argv[1]) as f:
            folders = [ln.strip() for ln in f if ln.strip()]
        base = os.path.dirname(os.path.abspath(argv[1]))
        run_bundle(os.path.join(base, folders[index]))
    elif len(argv) == 1:
        run_bundle(argv[0])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
