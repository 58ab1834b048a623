"""What runs on a machine reached over SSH: one fixed POSIX sh library, called with argv.

Every remote call is `sh -c LIB'; "$@"' pb FUNCTION ARG...`, sent through OpenSSH with the argv
quoted by shlex.join: user values (paths, node names, keys) only ever arrive as positional
arguments, never inside shell text. `Remote` wraps one machine (one multiplexed SSH connection,
a timeout on every call) and turns a failure into a ClusterError naming the node, the step, the
command, the end of its stderr and the fix.
"""
from __future__ import annotations

import shlex

from pushbutton.clusters.cluster import ClusterError
from pushbutton.execution.remote import RemoteError, SSHShell

LIB = r"""set -u
pb_alive() {
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ -n "$st" ] && [ "$st" != Z ]
}
pb_pid() {  # PIDFILE COMM: the live pid of COMM the file names
  p=$(cat "$1" 2>/dev/null) || return 1
  case $p in ''|*[!0-9]*) return 1;; esac
  pb_alive "$p" || return 1
  case $(cat "/proc/$p/comm" 2>/dev/null) in "$2"*) echo "$p";; *) return 1;; esac
}
pb_status() {  # PIDFILE COMM RECORD -> "running PID HASH" | "stopped"
  if p=$(pb_pid "$1" "$2"); then echo "running $p $(cat "$3" 2>/dev/null || echo none)"
  else echo stopped; fi
}
pb_stop() {  # PIDFILE COMM [RECORD]
  if p=$(pb_pid "$1" "$2"); then
    kill "$p" 2>/dev/null
    i=0
    while pb_alive "$p" && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i+1)); done
    if pb_alive "$p"; then kill -9 "$p" 2>/dev/null; sleep 0.3; fi
    echo "stopped $p"
  else
    echo none
  fi
  rm -f "$1" ${3:+"$3"}
}
pb_start() {  # LOG PIDFILE COMM RECORD HASH DAEMONLOG PROG ARG...
  log=$1 pf=$2 comm=$3 rec=$4 h=$5 dlog=$6; shift 6
  rm -f "$pf" "$rec"
  echo "$(date '+%Y-%m-%d %H:%M:%S') \$ $*" >>"$log"
  if ! "$@" </dev/null >>"$log" 2>&1; then
    echo "$comm exited with an error; the end of $log and $dlog:" >&2
    tail -n 6 "$log" "$dlog" >&2 2>/dev/null
    return 3
  fi
  i=0
  while [ "$i" -lt 200 ]; do
    if p=$(pb_pid "$pf" "$comm"); then printf '%s\n' "$h" >"$rec"; echo "started $p"; return 0; fi
    sleep 0.1; i=$((i+1))
  done
  echo "$comm did not write its pid file $pf within 20 s; the end of $log and $dlog:" >&2
  tail -n 6 "$log" "$dlog" >&2 2>/dev/null
  return 4
}
pb_sha() {  # FILE...: the sha256 of each, or "none"
  for f in "$@"; do
    if [ -f "$f" ]; then sha256sum "$f" | cut -d' ' -f1; else echo none; fi
  done
}
pb_put() {  # FILE MODE < base64: write atomically
  umask 077
  t="$1.tmp.$$"
  base64 -d >"$t" && chmod "$2" "$t" && mv -f "$t" "$1" || { rm -f "$t"; return 1; }
}
pb_mkdirs() {  # DIR...: made 0700 and owned by this user
  umask 077
  for d in "$@"; do
    if [ -d "$d" ]; then
      [ -O "$d" ] || { echo "$d exists and belongs to another user" >&2; return 5; }
    else
      mkdir -p "$d" || return 1
      chmod 700 "$d" || return 1
      echo "made $d"
    fi
  done
}
pb_dirs() {  # DIR...: "missing" unless every one is there and ours
  for d in "$@"; do [ -d "$d" ] && [ -O "$d" ] || { echo missing; return 0; }; done
  echo there
}
pb_munge_ok() {  # MUNGE UNMUNGE SOCKET: a credential round trip through the cluster's munged
  "$1" -n -S "$3" | "$2" -S "$3" >/dev/null
}
pb_cat() { cat "$1" 2>/dev/null || true; }
pb_write() { umask 077; printf '%s\n' "$2" >"$1"; }  # FILE TEXT
pb_rm() { rm -rf -- "$@"; }
pb_rmdir_empty() { rmdir -- "$1" 2>/dev/null || true; }  # DIR: removed when empty
pb_which() {
  p=$(command -v "$1" 2>/dev/null) || p=""
  if [ -z "$p" ]; then
    for d in /usr/sbin /sbin /usr/local/sbin /usr/local/bin; do
      [ -x "$d/$1" ] && { p="$d/$1"; break; }
    done
  fi
  echo "bin_$1=$p"
}
pb_probe() {
  echo "probe=1"
  echo "user=$(id -un)"
  echo "uid=$(id -u)"
  echo "home=$HOME"
  echo "hostname=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)"
  set -- ${SSH_CONNECTION:-}
  echo "addr=${3:-}"
  if [ -r /etc/os-release ]; then
    (. /etc/os-release; echo "os=${ID:-unknown} ${VERSION_ID:-}"; echo "os_like=${ID_LIKE:-}")
  else
    echo "os=$(uname -s)"
  fi
  pm=""
  for c in apt-get dnf yum; do command -v "$c" >/dev/null 2>&1 && { pm=$c; break; }; done
  echo "pm=$pm"
  for c in python3 munged munge unmunge slurmd slurmctld sinfo sbatch squeue scancel scontrol \
           sha256sum base64; do
    pb_which "$c"
  done
  py=$(command -v python3 2>/dev/null) &&
    echo "python3=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
  sd=$(command -v slurmd 2>/dev/null || { [ -x /usr/sbin/slurmd ] && echo /usr/sbin/slurmd; }) &&
    echo "slurm=$("$sd" -V 2>/dev/null | head -n 1)"
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true >/dev/null 2>&1; then echo sudo=yes; else echo sudo=no; fi
  fi
  echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
  echo "mem_mb=$(awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo 2>/dev/null)"
}
"""

# picks two free TCP ports on the head (the ones given when both are still free)
PORTS_PY = r"""
import socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("", p)); return True
    except OSError:
        return False
    finally:
        s.close()
want = [int(a) for a in sys.argv[1:]]
out = want if len(want) == 2 and all(free(p) for p in want) else []
while len(out) < 2:
    s = socket.socket(); s.bind(("", 0)); p = s.getsockname()[1]; s.close()
    if all(abs(p - q) > 1 for q in out):
        out.append(p)
print(out[0], out[1])
"""


def parse_facts(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k.replace("_", "").isalnum():
            out[k] = v.strip()
    return out


def _tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def _short(argv) -> str:
    text = shlex.join([str(a) for a in argv])
    return text if len(text) < 200 else text[:197] + "..."


class Remote:
    """One machine over SSH (BatchMode, ConnectTimeout, one multiplexed connection)."""

    def __init__(self, node, *, host: str, user: str | None = None,
                 ssh_config: str | None = None, ssh_options: list[str] | None = None,
                 connect_timeout: int = 10):
        self.node, self.host = node, host
        opts = list(ssh_options or []) + (["-l", user] if user else [])
        self.shell = SSHShell(host, name=node, ssh_config=ssh_config, options=opts,
                              connect_timeout=connect_timeout)

    @property
    def where(self) -> str:
        return f"node '{self.node}' (ssh {self.host})" if self.node != self.host else \
            f"node '{self.node}'"

    def fail(self, step: str, what: str, fix: str, cmd=None, stderr: str = "") -> ClusterError:
        msg = f"{self.where}, step '{step}': {what}"
        if cmd is not None:
            msg += f"\n  command: {_short(cmd)}"
        if stderr.strip():
            msg += f"\n  stderr: {_tail(stderr)}"
        return ClusterError(msg, fix)

    def run(self, step: str, argv: list[str], *, input: str | None = None, timeout: float = 60,
            check: bool = True, fix: str | None = None, shown=None):
        """argv on the machine; with check a non-zero exit status is a ClusterError."""
        shown = argv if shown is None else shown
        try:
            r = self.shell.run([str(a) for a in argv], input=input, timeout=timeout,
                               check=False, retries=1)
        except RemoteError as e:
            raise self.fail(step, e.message, e.fix or f"check that `ssh {self.host} true` works",
                            cmd=shown, stderr=e.stderr) from None
        if check and r.returncode != 0:
            raise self.fail(step, f"the command failed (exit status {r.returncode})",
                            fix or "see the command's error above, fix it on the machine, then "
                                   "run the same `pb cluster up` again (steps done are skipped)",
                            cmd=shown, stderr=r.stderr or r.stdout)
        return r

    def lib(self, step: str, func: str, *args, input: str | None = None, timeout: float = 60,
            check: bool = True, fix: str | None = None):
        """One function of LIB with its arguments."""
        argv = ["sh", "-c", LIB + '\n"$@"', "pb", func, *[str(a) for a in args]]
        return self.run(step, argv, input=input, timeout=timeout, check=check, fix=fix,
                        shown=[func, *args])

    def ssh_argv(self) -> list[str]:
        return self.shell.ssh_argv() + [self.host]
