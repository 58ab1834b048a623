"""Run argv commands and copy folders on a cluster: over SSH (system OpenSSH + rsync), or on this
host with the same interface (the `local-slurm` target).

* Every call has a timeout. Calls marked idempotent are retried with exponential backoff when the
  *connection* failed (ssh exit status 255, rsync connection errors, timeouts).
* One multiplexed connection per host (ControlMaster/ControlPersist; the control socket lives in a
  short private folder under the system temp dir, so the socket path stays short).
* argv is quoted with shlex.join for the remote shell: a parameter value never reaches a shell
  unquoted. Only a target's own `setup` lines (module load, venv activate) run as shell text.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pushbutton.core.errors import PushbuttonError


class RemoteError(PushbuttonError):
    """A command on a target failed or could not be run; the message names the target and fix."""

    def __init__(self, message: str, *, target: str | None = None, fix: str | None = None,
                 returncode: int | None = None, stderr: str = "", connection: bool = False):
        self.target, self.fix, self.returncode, self.stderr = target, fix, returncode, stderr
        self.connection, self.message = connection, message
        text = f"target '{target}': {message}" if target else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _control_dir() -> str:
    d = os.path.join(tempfile.gettempdir(), f"pb-ssh-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        os.chmod(d, 0o700)
    except OSError:
        pass
    return d


def script_for(argv: list[str], setup: list[str] | None = None, cwd: str | None = None,
               env: dict[str, str] | None = None) -> str:
    """The shell text that runs argv after the setup lines, in cwd, with env (all values quoted)."""
    lines = list(setup or [])
    if cwd:
        lines.append(f"cd {_quote_path(cwd)} || exit 96")
    for k, v in (env or {}).items():
        lines.append(f"export {k}={shlex.quote(str(v))}")
    lines.append("exec " + shlex.join([str(a) for a in argv]))
    return "\n".join(lines)


def _quote_path(p: str) -> str:
    """Quote a path but let a leading ~/ expand to the remote home folder."""
    p = str(p)
    if p == "~":
        return '"$HOME"'
    if p.startswith("~/"):
        return '"$HOME"/' + shlex.quote(p[2:])
    return shlex.quote(p)


class Shell:
    """Common interface of SSHShell and LocalShell."""

    remote = False
    host: str | None = None
    name: str = "local"
    backoff = (0.5, 1.0, 2.0, 4.0, 8.0)
    env: dict = {}  # the target's environment, for every command (sbatch, squeue, ...) too

    def _exec(self, argv, input, timeout) -> Result:
        try:
            p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RemoteError(f"command timed out after {timeout:g}s: {_short(argv)}",
                              target=self.name, connection=True,
                              fix="check the connection and the cluster's load, or raise the "
                                  "timeout") from e
        except FileNotFoundError as e:
            raise RemoteError(f"cannot run {argv[0]!r}: not installed on this machine",
                              target=self.name, fix=f"install {argv[0]} (OpenSSH client, rsync)"
                              ) from e
        return Result(list(argv), p.returncode, p.stdout, p.stderr)

    def _with_retries(self, fn, retries: int):
        last: RemoteError | None = None
        for i in range(retries + 1):
            try:
                return fn()
            except RemoteError as e:
                if not e.connection or i == retries:
                    raise
                last = e
                time.sleep(self.backoff[min(i, len(self.backoff) - 1)])
        raise last  # pragma: no cover

    def run(self, argv: list[str], *, setup: list[str] | None = None, cwd: str | None = None,
            env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60,
            check: bool = True, idempotent: bool = True, retries: int = 3) -> Result:
        """Run argv (after the setup lines, in cwd). Raises RemoteError on a connection failure
        (after retries when idempotent) or, with check, on a non-zero exit status."""
        env = {**self.env, **(env or {})} or None

        def once():
            r = self._run_once(argv, setup, cwd, env, input, timeout)
            if check and r.returncode != 0:
                raise RemoteError(
                    f"{_short(argv)} failed with exit status {r.returncode}: "
                    f"{_last_lines(r.stderr or r.stdout)}", target=self.name,
                    returncode=r.returncode, stderr=r.stderr)
            return r
        return self._with_retries(once, retries if idempotent else 0)

    login_for_setup = False  # run setup lines in a login shell (module functions on clusters)

    def shell_argv(self, text: str, setup: list[str] | None = None) -> list[str]:
        """argv running shell text (already quoted by the caller) after the setup lines."""
        body = "\n".join(list(setup or []) + [text])
        return ["bash", "-lc" if setup and self.login_for_setup else "-c", body]

    def run_script(self, text: str, *, setup: list[str] | None = None, timeout: float = 60,
                   check: bool = True, idempotent: bool = True, retries: int = 3) -> Result:
        """Run shell text (already quoted by the caller) with bash, after the setup lines."""
        return self.run(self.shell_argv(text, setup), timeout=timeout, check=check,
                        idempotent=idempotent, retries=retries)

    def _run_once(self, argv, setup, cwd, env, input, timeout) -> Result:
        raise NotImplementedError

    def put(self, src: str | os.PathLike, dst: str, *, delete: bool = False,
            excludes: list[str] | None = None, timeout: float = 600, retries: int = 3) -> None:
        """Copy a local file or folder (contents, when src ends with '/') to dst on the target."""
        raise NotImplementedError

    def get(self, src: str, dst: str | os.PathLike, *, includes: list[str] | None = None,
            excludes: list[str] | None = None, filters: list[str] | None = None,
            timeout: float = 600, retries: int = 3) -> None:
        """Copy src on the target to a local dst; resumable (--partial), never deletes."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalShell(Shell):
    """Same interface, this host, no SSH (the `local-slurm` target)."""

    def __init__(self, name: str = "local-slurm"):
        self.name = name

    def _run_once(self, argv, setup, cwd, env, input, timeout) -> Result:
        if setup:
            return self._exec(["bash", "-c", script_for(argv, setup, cwd, env)], input, timeout)
        if cwd or env:
            full_env = dict(os.environ, **{k: str(v) for k, v in (env or {}).items()})
            try:
                p = subprocess.run([str(a) for a in argv], input=input, capture_output=True,
                                   text=True, timeout=timeout,
                                   cwd=os.path.expanduser(cwd) if cwd else None, env=full_env)
            except subprocess.TimeoutExpired as e:
                raise RemoteError(f"command timed out after {timeout:g}s: {_short(argv)}",
                                  target=self.name) from e
            except FileNotFoundError as e:
                raise RemoteError(f"{argv[0]!r} not found", target=self.name,
                                  returncode=127, stderr=str(e)) from e
            return Result([str(a) for a in argv], p.returncode, p.stdout, p.stderr)
        try:
            return self._exec([str(a) for a in argv], input, timeout)
        except RemoteError as e:
            if "not installed" in str(e):
                return Result([str(a) for a in argv], 127, "", f"{argv[0]}: command not found")
            raise

    def _copy(self, src, dst, args, timeout):
        src, dst = os.path.expanduser(str(src)), os.path.expanduser(str(dst))
        if shutil.which("rsync"):
            r = self._exec(["rsync", "-a", *args, src, dst], None, timeout)
            if r.returncode not in (0, 24):  # 24: files vanished while copying
                raise RemoteError(f"rsync failed: {_last_lines(r.stderr)}", target=self.name)
            return
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)

    def put(self, src, dst, *, delete=False, excludes=None, timeout=600, retries=3):
        Path(os.path.expanduser(dst)).parent.mkdir(parents=True, exist_ok=True)
        args = (["--delete"] if delete else []) + [f"--exclude={e}" for e in excludes or []]
        self._copy(src, dst, args, timeout)

    def get(self, src, dst, *, includes=None, excludes=None, filters=None, timeout=600,
            retries=3):
        args = list(filters or []) + [f"--include={i}" for i in includes or []]
        args += [f"--exclude={e}" for e in excludes or []]
        self._copy(src, dst, args, timeout)


class SSHShell(Shell):
    """Commands and copies over the system's OpenSSH, one multiplexed connection per host."""

    remote = True
    login_for_setup = True

    def __init__(self, host: str, *, name: str | None = None, ssh_config: str | None = None,
                 options: list[str] | None = None, connect_timeout: int = 10,
                 persist: int = 120):
        self.host = host
        self.name = name or host
        self.ssh_config = os.path.expanduser(ssh_config) if ssh_config else None
        self.options = list(options or [])
        self.connect_timeout = connect_timeout
        self.persist = persist
        self.control_path = os.path.join(_control_dir(), "%C")

    def ssh_argv(self) -> list[str]:
        """`ssh` and its options, without the host (shared by commands and rsync -e)."""
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                 "-o", f"ControlPersist={self.persist}", "-o", "ServerAliveInterval=15",
                 "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        return argv + self.options

    def _run_once(self, argv, setup, cwd, env, input, timeout) -> Result:
        if setup or cwd or env:
            remote_cmd = shlex.join(["bash", "-lc" if setup else "-c",
                                     script_for(argv, setup, cwd, env)])
        else:
            remote_cmd = shlex.join([str(a) for a in argv])
        r = self._exec(self.ssh_argv() + [self.host, "--", remote_cmd], input, timeout)
        if r.returncode == 255:
            raise self.connection_error(r.stderr)
        return r

    def connection_error(self, stderr: str) -> RemoteError:
        """A clear error for an ssh that could not connect, with the most likely fix."""
        err = _last_lines(stderr) or "ssh exited with status 255"
        low = stderr.lower()
        if "could not resolve hostname" in low or "name or service not known" in low:
            fix = (f"check the host name '{self.host}' in the target, or add a 'Host "
                   f"{self.host}' entry to ~/.ssh/config")
            transient = False
        elif "permission denied" in low:
            fix = (f"make key-based login work: `ssh {self.host} true` must succeed without a "
                   "password (ssh-copy-id, or an IdentityFile in ~/.ssh/config)")
            transient = False
        elif "host key verification failed" in low:
            fix = f"connect once by hand (`ssh {self.host}`) to accept the host key"
            transient = False
        elif "connection refused" in low:
            fix = f"check that sshd runs on '{self.host}' and the port is right"
            transient = True
        else:
            fix = f"check that `ssh {self.host} true` works from this machine"
            transient = True
        return RemoteError(f"cannot connect over SSH to '{self.host}': {err}", target=self.name,
                           fix=fix, returncode=255, stderr=stderr, connection=transient)

    def _rsync(self, args: list[str], timeout: float, retries: int) -> None:
        e_arg = shlex.join(self.ssh_argv())
        argv = ["rsync", "-a", "-s", "--partial", "--partial-dir=.pb-partial",
                f"--timeout={max(10, int(timeout))}", "-e", e_arg, *args]

        def once():
            r = self._exec(argv, None, timeout)
            if r.returncode in (0, 24):
                return r
            conn = r.returncode in (10, 12, 30, 35, 255) or "connection" in r.stderr.lower()
            raise RemoteError(f"rsync failed (status {r.returncode}): {_last_lines(r.stderr)}",
                              target=self.name, returncode=r.returncode, stderr=r.stderr,
                              connection=conn,
                              fix="it is safe to run again: copies resume where they stopped")
        self._with_retries(once, retries)

    def put(self, src, dst, *, delete=False, excludes=None, timeout=600, retries=3):
        parent = str(dst).rstrip("/").rsplit("/", 1)[0] if "/" in str(dst).rstrip("/") else None
        if parent:
            self.run(["mkdir", "-p", parent] if not parent.startswith("~") else
                     ["bash", "-c", f"mkdir -p {_quote_path(parent)}"], timeout=60)
        args = (["--delete"] if delete else []) + [f"--exclude={e}" for e in excludes or []]
        self._rsync(args + [str(src), f"{self.host}:{_rsync_remote(dst)}"], timeout, retries)

    def get(self, src, dst, *, includes=None, excludes=None, filters=None, timeout=600,
            retries=3):
        Path(dst).mkdir(parents=True, exist_ok=True) if str(src).endswith("/") else \
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
        args = list(filters or []) + [f"--include={i}" for i in includes or []]
        args += [f"--exclude={e}" for e in excludes or []]
        self._rsync(args + [f"{self.host}:{_rsync_remote(src)}", str(dst)], timeout, retries)

    def close(self) -> None:
        """Nothing to do: the multiplexed connection outlives this process by ControlPersist
        seconds, so the next `pb` command reuses it (see disconnect)."""

    def disconnect(self) -> None:
        """Close the multiplexed connection now (a later call opens a new one)."""
        try:
            subprocess.run(self.ssh_argv() + ["-O", "exit", self.host], capture_output=True,
                           timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            pass


def _rsync_remote(path: str) -> str:
    """rsync -s (protect-args) does not expand ~; a path relative to the home folder is the same."""
    p = str(path)
    if p == "~":
        return "."
    if p.startswith("~/"):
        return p[2:] or "."
    return p


def _short(argv) -> str:
    text = shlex.join([str(a) for a in argv])
    return text if len(text) < 160 else text[:157] + "..."


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def shell_for(target) -> Shell:
    """The Shell for a targets.Target: SSH when it names a host, else this machine."""
    if getattr(target, "host", None):
        shell = SSHShell(target.host, name=target.name, ssh_config=target.ssh_config,
                         options=list(target.ssh_options or []),
                         connect_timeout=int(target.connect_timeout))
    else:
        shell = LocalShell(target.name)
    shell.env = {k: str(v) for k, v in (getattr(target, "env", None) or {}).items()}
    return shell
