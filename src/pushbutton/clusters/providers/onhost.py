"""What the providers whose nodes live on this host share (local, netns): the template's setup
steps and each node's slurmd run here, through `wrap` (netns: inside the node's namespace), with
slurmctld and munged on this host (clusters/controller.py). Every method is safe to repeat."""
from __future__ import annotations

import os
import shlex
import subprocess
import time

from pushbutton.clusters import procs
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers.base import Node, Provider

SETUP_TIMEOUT = 1800


class OnHost(Provider):
    """A provider whose nodes are processes of this host (not registered by itself)."""
    name = "onhost"

    def check(self) -> None:
        procs.require()

    def wrap(self, node: Node, argv: list[str]) -> list[str]:
        """argv as run on `node` (here: as it is)."""
        return argv

    def _save(self, node: Node, stage: str) -> None:
        node.stage = stage
        self.state.update_node(node)

    # -- setup: the template's argv steps on every node ----------------------------------------
    def setup(self, nodes: list[Node]) -> None:
        steps = self.template.setup
        for n in nodes:
            log = self.state.log_dir / f"setup-{n.name}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            for i, argv in enumerate(steps, 1):
                self.say(f"  {n.name}: setup step {i}/{len(steps)}: {shlex.join(argv)}")
                self._step(n, argv, log, i)
            self._save(n, "configured")

    def _step(self, n: Node, argv: list[str], log, i: int) -> None:
        where = f"{self.template.file}: key 'templates.{self.template.name}.setup[{i - 1}]'"
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(argv)}\n")
            f.flush()
            try:
                r = subprocess.run(self.wrap(n, argv), stdout=f, stderr=f,
                                   stdin=subprocess.DEVNULL, timeout=SETUP_TIMEOUT,
                                   env=self.state.env(), cwd=str(self.state.dir))
            except FileNotFoundError:
                raise ClusterError(f"setup step {i} on node {n.name}: program '{argv[0]}' not "
                                   f"found ({where})",
                                   f"fix the step, then `pb cluster up {self.state.name}` "
                                   "resumes") from None
            except subprocess.TimeoutExpired:
                raise ClusterError(f"setup step {i} on node {n.name} ran over "
                                   f"{SETUP_TIMEOUT}s: {shlex.join(argv)}",
                                   f"see {log}; `pb cluster up {self.state.name}` tries again"
                                   ) from None
        if r.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise ClusterError(f"setup step {i} failed on node {n.name} (exit status "
                               f"{r.returncode}): {shlex.join(argv)}: " + " | ".join(tail),
                               f"see {log}; fix the step ({where}) or what it needs, then "
                               f"`pb cluster up {self.state.name}` resumes from this step")

    # -- slurmd ------------------------------------------------------------------------------
    def slurmd_pid(self, node: Node) -> int | None:
        return procs.pid_of(self.state.pidfile("slurmd", node.name), "slurmd")

    def start(self, nodes: list[Node]) -> None:
        for n in nodes:
            if self.slurmd_pid(n):
                if n.stage != "running":
                    self._save(n, "running")
                continue
            self.say(f"  {n.name}: starting slurmd")
            self.state.pidfile("slurmd", n.name).unlink(missing_ok=True)
            # -b: report a fresh boot time, or slurmctld keeps waiting for an elastic node it
            # powers up to "reboot" (these nodes share this host's boot time)
            argv = [procs.which("slurmd"), "-f", str(self.state.conf), "-N", n.name,
                    *(["-b"] if n.elastic else [])]
            procs.start_daemon(self.wrap(n, argv), self.state.log_dir / "start.log",
                               env=self.state.env())
            procs.wait_pid(self.state.pidfile("slurmd", n.name), "slurmd",
                           hint=str(self.state.log_dir / f"slurmd-{n.name}.log"))
            self._save(n, "running")

    def stop(self, nodes: list[Node]) -> None:
        for n in nodes:
            if procs.stop_daemon(self.state.pidfile("slurmd", n.name), "slurmd"):
                self.say(f"  {n.name}: stopped slurmd")
            if n.stage == "running":
                self._save(n, "stopped")

    def gres_files(self, node: Node, name: str, count: int) -> str:
        """File= of a device GRES (gpu, ...) on this host: placeholder files, one per device,
        so SLURM schedules the count (nodes of one host have no devices of their own)."""
        d = self.state.dir / "dev" / node.name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (d / f"{name}{i}").touch()
        return str(d / f"{name}0") if count == 1 else str(d / f"{name}[0-{count - 1}]")

    def shell(self, node: Node | None) -> list[str]:
        sh = os.environ.get("SHELL") or "/bin/sh"
        return [sh] if node is None else self.wrap(node, [sh])


def wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and any(procs.alive(p) for p in pids):
        time.sleep(0.05)
