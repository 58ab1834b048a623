"""What the Dask backend runs on the Dask workers: a worker plugin holding the project's code,
and the small function each bundle calls.

The code (a zip of the project's .py files, and worker.py's source) travels once per worker, in
a worker plugin: the scheduler keeps it and hands it to every worker that joins, later ones and
restarted ones included. Each bundle's call carries only the bundle.json text and the plugin's
name. On the worker the plugin unpacks the zip once per host and content hash (a changed file is
a new folder, an unchanged project reuses it across runs) and keeps persistent `worker.py
--serve` processes (one per bundle running at once on this worker), so a bundle costs neither a
Python start nor the import of the task's module: the local backend's model.

Both the plugin class and the bundle function are shipped by value (`by_value` below): a
cluster needs neither pushbutton nor the project installed, so their methods use only the stdlib
and no module-level names (they import inside, and their helpers are methods).
"""
from __future__ import annotations

import builtins
import types

REMOTE_MODULE = "__pushbutton_remote__"


class _OnWorker:
    """The worker plugin (made a `WorkerPlugin` subclass by `code_plugin`)."""

    idempotent = True

    def __init__(self, digest, code_zip, worker_src):
        self.digest, self.code_zip, self.worker_src = digest, code_zip, worker_src

    # -- life on the worker --------------------------------------------------------------
    def setup(self, worker):
        import queue
        import threading
        self.worker = worker
        # how often the code reached this worker process (what the tests count)
        arrivals = worker.__dict__.setdefault("_pushbutton_arrivals", {})
        arrivals[self.digest] = arrivals.get(self.digest, 0) + 1
        self.lock = threading.Lock()
        self.idle = {}       # environment key -> [(Popen, stderr path, last use)]
        self.busy = set()
        self.spawns = queue.Queue()
        self.code_dir = self.unpack()
        # serve processes die with the thread that started them (PR_SET_PDEATHSIG): one
        # thread that lives as long as this worker starts them all
        threading.Thread(target=self.spawner, daemon=True, name="pushbutton-spawner").start()

    def teardown(self, worker):
        self.spawns.put(None)
        with self.lock:
            procs = [p for ps in self.idle.values() for p, _, _ in ps] + list(self.busy)
            self.idle, self.busy = {}, set()
        for p in procs:
            self.stop(p)

    def unpack(self):
        """The code under <tmp>/pushbutton-dask-code/<digest>/ (code/ and worker.py), once
        per host: unpacked aside and renamed into place, so a half-written folder is never
        used and two workers of one host do not clash."""
        import io
        import os
        import shutil
        import tempfile
        import zipfile
        top = os.path.join(tempfile.gettempdir(), "pushbutton-dask-code")
        base = os.path.join(top, self.digest)
        if not os.path.isfile(os.path.join(base, "worker.py")):
            os.makedirs(top, exist_ok=True)
            tmp = tempfile.mkdtemp(dir=top, prefix=".unpack-")
            code = os.path.join(tmp, "code")
            os.makedirs(code)
            if self.code_zip:
                with zipfile.ZipFile(io.BytesIO(self.code_zip)) as z:
                    z.extractall(code)
            with open(os.path.join(tmp, "worker.py"), "w") as f:
                f.write(self.worker_src)
            try:
                os.rename(tmp, base)
            except OSError:  # another worker of this host was first
                shutil.rmtree(tmp, ignore_errors=True)
        return os.path.join(base, "code")

    def spawner(self):
        import os
        import queue
        import subprocess
        import sys
        import time
        while True:
            try:
                job = self.spawns.get(timeout=60)
            except queue.Empty:
                self.reap(time.time() - 600)
                continue
            if job is None:
                return
            env, err_path, box, done = job
            try:
                with open(err_path, "ab") as err:
                    box.append(subprocess.Popen(
                        [sys.executable, os.path.join(os.path.dirname(self.code_dir),
                                                      "worker.py"),
                         "--serve", str(os.getpid())], cwd=self.code_dir, env=env,
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, bufsize=0,
                        start_new_session=True))
            except Exception as e:
                box.append(e)
            done.set()

    def reap(self, before):
        """Serve processes idle since `before` end (a driver that died never unregisters)."""
        with self.lock:
            old = [p for ps in self.idle.values() for p, _, t in ps if t < before]
            for k in list(self.idle):
                self.idle[k] = [x for x in self.idle[k] if x[2] >= before]
        for p in old:
            self.stop(p)

    # -- serve processes -----------------------------------------------------------------
    def take(self, env):
        """An idle serve process for this environment, or a new one."""
        import os
        import tempfile
        import threading
        key = repr(sorted(env.items()))
        with self.lock:
            ps = self.idle.setdefault(key, [])
            while ps:
                p, err_path, _ = ps.pop()
                if p.poll() is None:
                    self.busy.add(p)
                    return key, p, err_path
        if not os.path.isdir(self.code_dir):  # a tmp cleaner removed it: unpack again
            self.code_dir = self.unpack()
        fd, err_path = tempfile.mkstemp(prefix="pb-dask-serve-", suffix=".log")
        os.close(fd)
        box, done = [], threading.Event()
        self.spawns.put((env, err_path, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        with self.lock:
            self.busy.add(box[0])
        return key, box[0], err_path

    def give_back(self, key, p, err_path):
        import time
        with self.lock:
            self.busy.discard(p)
            self.idle.setdefault(key, []).append((p, err_path, time.time()))

    def stop(self, p):
        import os
        import subprocess
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            os.killpg(p.pid, 9)  # worker.py's guard then kills its command tasks
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        with self.lock:
            self.busy.discard(p)

    # -- one bundle ----------------------------------------------------------------------
    def run(self, bundle_text, env_extra, report_every, thread_vars, topic):
        """Run the bundle in a serve process; returns its output files as bytes and the
        process's exit status (0 once it answered "done"), or {"cancelled": True}."""
        import os
        import shutil
        import socket
        import tempfile
        from distributed.worker import thread_state
        key = thread_state.key
        base = tempfile.mkdtemp(prefix="pb-dask-")
        try:
            folder = self.write_bundle(base, bundle_text)
            env = dict(os.environ)
            for v in thread_vars:  # one BLAS thread per task, unless the worker's setting says
                env.setdefault(v, "1")
            env.update(env_extra or {})
            env["PB_NODE"] = str(self.worker.address)  # pb_node: this Dask worker
            pkey, p, err_path = self.take(env)
            err_start = os.path.getsize(err_path)
            rc = self.wait_done(p, folder, key, report_every, topic)
            if rc == "cancelled":
                self.stop(p)
                return {"exit": None, "files": {}, "cancelled": True}
            if rc == 0:
                self.give_back(pkey, p, err_path)
            else:
                self.stop(p)
            files = self.outputs(folder)
            return {"exit": rc, "files": files, "host": socket.gethostname(),
                    "stderr": self.tail(err_path, err_start) if rc else ""}
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def write_bundle(self, base, bundle_text):
        """bundle.json with the paths moved into this host's copy of the code."""
        import hashlib
        import json
        import os
        import tempfile
        # only the fields before the task list change: it is kept as the text it is (the
        # driver writes it last), not parsed and written again
        cut = bundle_text.find(', "tasks": [')
        try:
            spec, rest = json.loads(bundle_text[:cut] + "}"), bundle_text[cut:]
        except ValueError:
            spec, rest = json.loads(bundle_text), None
        old_root = (spec.get("root") or "").rstrip("/")
        code = self.code_dir

        def moved(p):
            if old_root and (p == old_root or p.startswith(old_root + "/")):
                return code + p[len(old_root):]
            return p

        spec["root"] = code
        spec["sys_path"] = [moved(p) for p in spec.get("sys_path") or []]
        # a task's folder is stable across retries on the same host (no shared filesystem);
        # one per project (worker.py adds the experiment and task), so two projects with an
        # experiment of the same name on one host do not share folders
        project = hashlib.blake2b(old_root.encode(), digest_size=6).hexdigest()
        spec["task_root"] = os.path.join(tempfile.gettempdir(), "pushbutton-dask-tasks", project)
        folder = os.path.join(base, "bundle")
        os.makedirs(folder)
        with open(os.path.join(folder, "bundle.json"), "w") as f:
            f.write(json.dumps(spec) if rest is None else json.dumps(spec)[:-1] + rest)
        return folder

    def wait_done(self, p, folder, key, report_every, topic):
        """Hand the folder to the serve process and wait for its answer: 0, its exit status
        when it died, or "cancelled" (the client cancelled the bundle or went away)."""
        import os
        import select
        import time
        try:
            p.stdin.write((folder + "\n").encode())
        except OSError:
            pass
        fd, buf, want = p.stdout.fileno(), b"", ("done %s" % folder).encode()
        last_report, reported = 0.0, None
        while True:
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:  # the process is gone
                    return p.wait()
                buf += chunk
                if want in buf.split(b"\n"):
                    return 0
            elif p.poll() is not None:
                return p.returncode
            if self.cancelled(key):
                return "cancelled"
            if time.time() - last_report >= report_every:
                last_report = time.time()
                running = self.running_task(folder)
                if running != reported:
                    reported = running
                    try:
                        self.worker.log_event(topic, {"key": key, "task": running})
                    except Exception:
                        pass

    def cancelled(self, key):
        try:
            ts = self.worker.state.tasks.get(key)
            return ts is None or ts.state in ("cancelled", "released", "forgotten")
        except Exception:
            return False

    @staticmethod
    def running_task(folder):
        """The task the bundle is running: its last start line (starts.jsonl; an earlier
        worker wrote them into outcomes.jsonl) without an end line after it."""
        import json
        import os
        running = None
        for name in ("starts.jsonl", "outcomes.jsonl"):
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    f.seek(max(0, os.path.getsize(path) - 4096))
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                if rec.get("ev") == "start":
                    running = rec.get("id")
                elif rec.get("ev") == "end" and rec.get("id") == running:
                    running = None
        return running

    @staticmethod
    def outputs(folder):
        import os
        files = {}
        for name in ("stdout.log", "stderr.log", "series.jsonl", "starts.jsonl", "done.json",
                     "outcomes.jsonl"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
        return files

    @staticmethod
    def tail(path, start):
        """What the serve process wrote to its stderr during this bundle (its last 2000 bytes)."""
        import os
        try:
            with open(path, "rb") as f:
                f.seek(max(start, os.path.getsize(path) - 2000))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _remote_run_bundle(plugin_name, bundle_text, env_extra, report_every, thread_vars, topic):
    """Runs ON a Dask worker: the bundle, by the plugin that holds the project's code."""
    from distributed import get_worker
    plugin = get_worker().plugins.get(plugin_name)
    if plugin is None:
        raise RuntimeError("pushbutton's code (worker plugin %s) is not on this Dask worker"
                           % plugin_name)
    return plugin.run(bundle_text, env_extra, report_every, thread_vars, topic)


def by_value(fn, name=None):
    """A copy of `fn` whose module cannot be imported on the workers, so it is pickled by value:
    it may use builtins only (everything else it imports inside)."""
    return types.FunctionType(fn.__code__, {"__builtins__": builtins, "__name__": REMOTE_MODULE},
                              name or fn.__name__, fn.__defaults__, fn.__closure__)


_run_bundle = by_value(_remote_run_bundle, "_run_bundle")


def code_plugin(digest: str, code_zip: bytes, worker_src: str):
    """The worker plugin carrying the code, of a class that is pickled by value."""
    from distributed.diagnostics.plugin import WorkerPlugin
    ns = {"__module__": REMOTE_MODULE, "__qualname__": "PushbuttonCode",
          "idempotent": True, "__doc__": _OnWorker.__doc__}
    for k, v in vars(_OnWorker).items():
        if isinstance(v, types.FunctionType):
            ns[k] = by_value(v)
        elif isinstance(v, staticmethod):
            ns[k] = staticmethod(by_value(v.__func__))
    cls = type("PushbuttonCode", (WorkerPlugin,), ns)
    return cls(digest, code_zip, worker_src)
