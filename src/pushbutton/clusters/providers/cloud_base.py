"""The base of providers gce, aws and openstack (cloud.py): machines from a cloud through Apache
Libcloud, then the same SSH setup as the ssh provider (munge + SLURM over SSH, in
`pushbutton.clusters.remote_setup`).

One base (`CloudProvider`) does the work; the three subclasses only say how to build the libcloud
driver, how to ask for one machine and where the cloud shows a machine's tags.

* Names: the machine of node N of cluster C is `pb-C-N` (a DNS label) and carries the tags
  `pushbutton-cluster = C`, `pushbutton-node = N`. A machine is this cluster's when its id is the
  one recorded in the node (`node.extra["id"]`), or its name is `pb-C-N` and its tags name C;
  nothing else is ever reused or destroyed.
* `create` is safe to repeat: it lists the cloud's machines first and reuses ours, records each
  new machine's id in the node as soon as the cloud answers (so a failure leaves what was made on
  record and the next `up` continues), then waits, with a progress line, until all run.
* Errors of libcloud (bad credentials, quota, timeouts, unreachable endpoints) become
  ClusterError with what to do; nothing here prints a traceback.
* `driver_factory`: set it on a provider (instance attribute, a callable taking the provider
  and returning a libcloud NodeDriver) to use that driver instead of building the cloud's own
  from the credentials; the tests use it for libcloud's in-process DummyNodeDriver.
"""
from __future__ import annotations

import hashlib
import inspect
import re
import time
from pathlib import Path
from typing import Callable, ClassVar

from pushbutton.clusters import remote_setup as rs
from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers import cloud_options as co
from pushbutton.clusters.providers.base import Node, Provider
from pushbutton.clusters.providers.cloud_errors import dns_label, libcloud_version, translate
from pushbutton.clusters.providers.remote_ctl import RemoteController

TAG, NODE_TAG = "pushbutton-cluster", "pushbutton-node"
HEAD_GROUP = "head"             # the node group whose node runs slurmctld (else the first node)
HTTP_TIMEOUT = 60               # s per request to the cloud's API
_CLOUD_KEYS = ("id", "instance", "public_ip", "private_ip", "ssh_host", "client_token")


class CloudProvider(RemoteController, Provider):
    name: ClassVar[str] = "cloud"
    title: ClassVar[str] = "cloud"
    driver_factory: Callable[["CloudProvider"], object] | None = None
    poll_interval: float = 5.0       # s between two looks at the machines while waiting
    progress_every: float = 15.0     # s between two progress lines while waiting

    def __init__(self, state, template, say=print):
        super().__init__(state, template, say)
        self._opts = self._creds = self._drv = None
        self._head: Node | None = None

    # -- names, options, credentials -----------------------------------------------------------
    @property
    def cluster(self) -> str:
        return getattr(self.state, "name", None) or getattr(self.template, "name", "cluster")

    def instance_name(self, node: Node) -> str:
        return dns_label(f"pb-{self.cluster}-{node.name}")

    def tags(self, node: Node) -> dict[str, str]:
        return {TAG: dns_label(self.cluster), NODE_TAG: dns_label(node.name)}

    @property
    def opts(self):
        if self._opts is None:
            self._opts = co.validate(self.name, self.template)
        return self._opts

    def creds(self) -> co.Creds:
        if self._creds is None:
            self._creds = co.CREDENTIALS[self.name](self.opts, self.template)
        return self._creds

    def size_for(self, node: Node) -> str:
        o = self.opts
        if node.group == HEAD_GROUP and o.head_size:
            return o.head_size
        return o.sizes.get(node.group, o.size)

    def location(self) -> str:
        return f"region {self.opts.region}"

    def head(self, nodes: list[Node]) -> Node | None:
        """The node that runs slurmctld: the one of group 'head', else the first node."""
        h = next((n for n in nodes if n.group == HEAD_GROUP), None)
        if h is None and nodes and self._head is None:
            h = nodes[0]
        if h is not None:
            self._head = h
        return self._head

    def controller(self) -> str | None:
        return self._head.name if self._head is not None else HEAD_GROUP

    def _rerun(self) -> str:
        return f"pb cluster up {getattr(self.template, 'name', self.name)} {self.cluster}"

    # -- ssh keys ------------------------------------------------------------------------------
    def public_key_path(self) -> Path | None:
        if self.opts.ssh_public_key:
            return co.resolve_path(self.template, self.opts.ssh_public_key)
        for n in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
            p = Path("~/.ssh").expanduser() / n
            if p.exists():
                return p
        return None

    def private_key_path(self) -> Path | None:
        if self.opts.ssh_private_key:
            return co.resolve_path(self.template, self.opts.ssh_private_key)
        pub = self.public_key_path()
        return pub.with_suffix("") if pub and pub.with_suffix("").exists() else None

    def public_key(self) -> str | None:
        p = self.public_key_path()
        if p is None:
            return None
        text = co._read(self.template, "ssh_public_key", p).strip()
        if not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", text):
            raise ClusterError(f"{co.where(self.template, 'ssh_public_key')}: {p} is not an SSH "
                               "public key", "give the .pub file (ssh-keygen -t ed25519 makes one)")
        return text

    def _check_ssh_keys(self) -> None:
        if getattr(self.opts, "key_name", None) is None and self.public_key() is None:
            raise ClusterError(
                f"{co.where(self.template, 'ssh_public_key')}: no SSH public key (none named, "
                "none in ~/.ssh)", "ssh-keygen -t ed25519, or "
                + co._edit_fix(self.template, 'set ssh_public_key = "~/.ssh/id_ed25519.pub"'))
        if self.opts.ssh_private_key and not self.private_key_path().exists():
            raise ClusterError(f"{co.where(self.template, 'ssh_private_key')}: "
                               f"{self.private_key_path()} does not exist",
                               co._edit_fix(self.template, "correct ssh_private_key"))

    # -- the driver ----------------------------------------------------------------------------
    def driver_args(self) -> tuple[type, list, dict]:
        """(libcloud driver class, args, kwargs) for this cloud from the credentials."""
        raise NotImplementedError

    def driver(self):
        if self._drv is None:
            libcloud_version()
            if self.driver_factory is not None:
                self._drv = self.driver_factory(self)
            else:
                cls, args, kwargs = self.driver_args()
                self._drv = self._call("connecting", cls, *args, **kwargs)
        return self._drv

    def _call(self, what: str, fn, *args, passthrough: tuple = (), **kwargs):
        """fn(*args, **kwargs); libcloud's and the network's errors become ClusterError."""
        try:
            return fn(*args, **kwargs)
        except passthrough:
            raise
        except ClusterError:
            raise
        except Exception as e:
            raise translate(e, title=self.title, what=what, rerun=self._rerun(),
                            creds=self._creds.source if self._creds else None) from None

    def _kwargs_for(self, drv, fn, kwargs: dict) -> dict:
        """libcloud's DummyNodeDriver takes only name/size/image: give it just what it takes."""
        from libcloud.compute.drivers.dummy import DummyNodeDriver
        params = inspect.signature(fn).parameters
        if not isinstance(drv, DummyNodeDriver) or any(
                p.kind is p.VAR_KEYWORD for p in params.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k in params}

    def tags_of(self, machine) -> dict | None:
        """The machine's tags as the cloud shows them (None when it shows none)."""
        return None

    def create_kwargs(self, drv, node: Node, key_name: str | None) -> dict:
        raise NotImplementedError

    def key_pair(self, drv) -> str | None:
        """The key pair the machines accept: key_name, else the public key imported once."""
        from libcloud.compute.types import KeyPairDoesNotExistError
        if self.opts.key_name:
            return self.opts.key_name
        pub = self.public_key()
        if pub is None:
            return None
        name = "pushbutton-" + hashlib.sha256(pub.split()[1].encode()).hexdigest()[:12]
        try:
            self._call("looking up key pair " + name, drv.get_key_pair, name,
                       passthrough=(KeyPairDoesNotExistError, NotImplementedError))
            return name
        except (KeyPairDoesNotExistError, NotImplementedError):
            pass
        self.say(f"importing SSH key {self.public_key_path()} as key pair {name}")
        self._call("importing the SSH key", drv.import_key_pair_from_string, name, pub)
        return name

    # -- Provider ------------------------------------------------------------------------------
    def check(self) -> None:
        libcloud_version()
        self.opts
        if self.driver_factory is None:
            c = self.creds()
            if c.file is not None and c.file.stat().st_mode & 0o077:
                self.say(f"warning: {c.file} is readable by others (chmod 600 {c.file})")
        self._check_ssh_keys()
        self.check_driver()

    def check_driver(self) -> None:
        """Build the driver where that needs no network (gce overrides it)."""
        self.driver()

    def plan(self, nodes: list[Node]) -> list[str]:
        o = self.opts
        lines = [f"provider {self.name} ({self.title}, Apache Libcloud {libcloud_version()}): "
                 f"{self.location()}, image {o.image}"]
        if self.driver_factory is not None:
            lines.append("  driver: given by driver_factory (not the cloud's own)")
        else:
            try:
                lines.append(f"  credentials: {self.creds().source}")
            except ClusterError as e:
                lines.append(f"  credentials: NOT READY: {e.message}")
        head = self.head(nodes)
        groups: dict[tuple[str, str], list[Node]] = {}
        for n in nodes:
            groups.setdefault((n.group, self.size_for(n)), []).append(n)
        total, priced, unknown = 0.0, 0, 0
        for (group, size), members in groups.items():
            p = self.price(size)
            role = " (head: slurmctld)" if head in members else ""
            line = f"  {group}{role}: {len(members)} x {size}"
            if p is None:
                unknown += len(members)
                line += f", price unknown (libcloud has no price for {size} in {self.location()})"
            else:
                priced += len(members)
                total += p * len(members)
                line += f", ${p:.4f}/h each, ${p * len(members):.4f}/h"
            lines.append(line)
        date = co.pricing_date()
        if priced and not unknown:
            lines.append(f"  total: {len(nodes)} nodes, ${total:.4f}/h (on-demand, libcloud pricing"
                         f" data of {date}; the cloud's price list is authoritative)")
        elif priced:
            lines.append(f"  total: {len(nodes)} nodes, ${total:.4f}/h for the {priced} priced "
                         f"ones; {unknown} of unknown price (libcloud pricing data of {date})")
        else:
            lines.append(f"  total: {len(nodes)} nodes; hourly cost unknown (libcloud's pricing "
                         f"data has no price for these machine types)")
        lines += self.remote_plan("setup", nodes)
        return lines

    def price(self, size: str) -> float | None:
        p = co.hourly_price(self.name, size, getattr(self.opts, "region", None))
        if p is None and (self._drv is not None or self.driver_factory is not None):
            try:      # a driver at hand: the price its size objects carry
                for s in self.driver().list_sizes():
                    if size in (str(s.id), s.name) and s.price:
                        return float(s.price)
            except Exception:
                return None
        return p

    def create(self, nodes: list[Node]) -> None:
        if not nodes:
            return
        self.opts
        drv = self.driver()
        self.head(nodes)
        listing = self._call("listing machines", drv.list_nodes)
        key = self.key_pair(drv) if hasattr(self.opts, "key_name") else None
        made = 0
        for node in nodes:
            found = self.find(listing, node)
            if found:
                m = found[0]
                self.say(f"{node.name}: machine {m.name} ({m.id}) exists, reusing it")
                if node.extra.get("id") not in (None, str(m.id)):
                    node.stage = "planned"       # another machine than the one set up
                self._record(node, m)
                if self._state(m) == "STOPPED":
                    if node.stage == "running":
                        node.stage = "stopped"   # its slurmd stopped with it: `start` again
                    self.say(f"{node.name}: starting stopped machine {m.name}")
                    self._call(f"starting {m.name}", drv.start_node, m)
                made += 1
                continue
            if node.extra.get("id"):
                self.say(f"{node.name}: machine {node.extra['id']} is gone; making a new one")
            for k in _CLOUD_KEYS:
                node.extra.pop(k, None)
            node.addr, node.stage = None, "planned"
            node.extra["instance"] = inst = self.instance_name(node)
            self.say(f"{node.name}: creating {inst} ({self.size_for(node)}, "
                     f"image {self.opts.image}) in {self.location()}")
            try:
                kwargs = self.create_kwargs(drv, node, key)
                m = self._call(f"creating {inst}", drv.create_node,
                               **self._kwargs_for(drv, drv.create_node, kwargs))
            except ClusterError as e:
                first = (e.fix or "").replace(f"then {self._rerun()}", "").strip(" ;")
                raise ClusterError(
                    f"{e.message}\n  {made} of {len(nodes)} machines exist and are recorded",
                    (f"{first}; then " if first else "") + f"`{self._rerun()}` reuses them and "
                    f"continues; `pb cluster down {self.cluster}` removes them") from None
            self._record(node, m)
            made += 1
        self._wait_running(drv, nodes)

    def setup(self, nodes: list[Node]) -> None:
        self._remote("setup", nodes, "configured")

    def start(self, nodes: list[Node]) -> None:
        self._remote("start", nodes, "running")

    def stop(self, nodes: list[Node]) -> None:
        self._remote("stop", nodes, "stopped")

    def destroy(self, nodes: list[Node]) -> None:
        if not nodes:
            return
        drv = self.driver()
        listing = self._call("listing machines", drv.list_nodes)
        doomed = []
        for node in nodes:
            found = self.find(listing, node, usable=False)
            if not found:
                self.say(f"{node.name}: no machine of this cluster (already gone)")
            for m in found:
                self.say(f"{node.name}: destroying {m.name} ({m.id}, {self._state(m).lower()})")
                self._call(f"destroying {m.name}", drv.destroy_node, m)
                doomed.append((node, m))
        self._wait(drv, {str(m.id): n for n, m in doomed}, "go away",
                   lambda m, node: self._is_gone(m))
        for node in nodes:
            for k in _CLOUD_KEYS:
                node.extra.pop(k, None)
            node.addr, node.stage = None, "planned"

    def shell(self, node: Node | None) -> list[str]:
        node = node or self._head
        host = node.extra.get("ssh_host") if node else None
        if not host:
            raise ClusterError(f"no address for {'node ' + node.name if node else 'the head node'}",
                               f"{self._rerun()} (it creates the machines)")
        return ["ssh", *self.ssh_options(), f"{self.opts.ssh_user}@{host}"]

    # -- finding and waiting -------------------------------------------------------------------
    @staticmethod
    def _state(m) -> str:
        s = getattr(m, "state", None)
        return str(getattr(s, "name", s) or "").upper()

    def _is_gone(self, m) -> bool:
        return m is None or self._state(m) in ("TERMINATED", "DELETED")

    def ours(self, m, strict: bool) -> bool:
        tags = self.tags_of(m) or {}
        if TAG in tags:
            return tags[TAG] == dns_label(self.cluster)
        return not strict

    def find(self, listing, node: Node, usable: bool = True) -> list:
        """This cluster's machines for `node`: the one of the recorded id first, then those of
        its name and this cluster's tag. usable: only those that can serve (not broken, not
        going away, e.g. EC2's shutting-down); else every one not gone (what destroy takes)."""
        bad = ("UNKNOWN", "ERROR") if usable else ()
        cands = [m for m in listing if not self._is_gone(m) and self._state(m) not in bad]
        nid, inst = node.extra.get("id"), self.instance_name(node)
        by_id = [m for m in cands if nid and str(m.id) == nid and self.ours(m, False)]
        return by_id + [m for m in cands if m.name == inst and self.ours(m, True)
                        and m not in by_id]

    def _record(self, node: Node, m) -> None:
        pub = next(iter(getattr(m, "public_ips", None) or []), None)
        priv = next(iter(getattr(m, "private_ips", None) or []), None)
        node.extra.update(id=str(m.id), instance=m.name, public_ip=pub, private_ip=priv,
                          ssh_host=pub or priv)
        node.addr = priv or pub

    def _wait_running(self, drv, nodes: list[Node]) -> None:
        def running(m, node):
            if m is None:       # a cloud may list a new machine only a little later
                return False
            st = self._state(m)
            if st in ("TERMINATED", "ERROR"):
                raise ClusterError(f"{node.name}: machine {m.name} ({m.id}) went to state "
                                   f"{st.lower()} while starting",
                                   f"see the cloud's console; `pb cluster down {self.cluster}` "
                                   f"removes it, then `{self._rerun()}` makes it anew")
            return st == "RUNNING" and bool(m.public_ips or m.private_ips)
        self._wait(drv, {n.extra["id"]: n for n in nodes}, "run", running)

    def _wait(self, drv, pending: dict[str, Node], goal: str, done) -> None:
        """Poll the cloud until done(machine, node) for every pending node (machine None: not listed),
        with a progress line every `progress_every` s, at most cloud.timeout s."""
        timeout = self.opts.timeout
        t0 = last = time.monotonic()
        first = True
        while pending:
            by_id = {str(m.id): m for m in self._call("listing machines", drv.list_nodes)}
            for nid, node in list(pending.items()):
                m = by_id.get(nid)
                if done(m, node):
                    if m is not None and goal == "run":
                        self._record(node, m)
                        if node.stage == "planned":
                            node.stage = "created"
                            self.say(f"{node.name}: running at {node.extra['ssh_host']}")
                    del pending[nid]
            now = time.monotonic()
            if not pending:
                return
            if first:
                self.say(f"waiting for {len(pending)} machine(s) to {goal} "
                         f"(at most {timeout:g}s)")
                first = False
            elif now - last >= self.progress_every:
                self.say(f"still waiting for {', '.join(n.name for n in pending.values())} to "
                         f"{goal} ({now - t0:.0f}s of {timeout:g}s)")
                last = now
            if now - t0 > timeout:
                states = ", ".join(f"{n.name} {self._state(by_id.get(i)) or 'not listed'}"
                                   for i, n in pending.items())
                again = (f"`{self._rerun()}` waits again" if goal == "run"
                         else f"`pb cluster down {self.cluster}` tries again")
                raise ClusterError(f"machines did not {goal} within {timeout:g}s ({states})",
                                   f"see the cloud's console; {again} (a longer wait: raise "
                                   f"timeout in {co.where(self.template)})")
            time.sleep(self.poll_interval)

    # -- the seam to the SSH setup steps (pushbutton.clusters.remote_setup) --------------------
    def ssh_options(self) -> list[str]:
        opts = ["-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=15"]
        folder = getattr(self.state, "dir", None)
        if folder is not None:
            opts += ["-o", f"UserKnownHostsFile={Path(folder) / 'known_hosts'}"]
        key = self.private_key_path()
        return (["-i", str(key)] if key else []) + opts

    def ssh_access(self, nodes: list[Node]) -> dict:
        key = self.private_key_path()
        return {"user": self.opts.ssh_user, "identity_file": str(key) if key else None,
                "options": self.ssh_options(), "workdir": self.opts.workdir,
                "cluster_dir": self.opts.cluster_dir,
                "hosts": {n.name: n.extra.get("ssh_host") or self.instance_name(n)
                          for n in nodes}}

    def access(self, extra: list[Node] = ()) -> tuple[list[Node], Node, rs.SetupOptions]:
        saved = list(getattr(self.state, "nodes", None) or [])
        names = {n.name for n in saved}
        nodes = saved + [n for n in extra if n.name not in names]
        return rs.from_access(nodes, self.head(nodes), self.ssh_access(nodes), self.template,
                              self.state)

    def remote_plan(self, action: str, nodes: list[Node]) -> list[str]:
        compute, head, o = rs.from_access(nodes, self.head(nodes), self.ssh_access(nodes),
                                          self.template, self.state)
        return [f"  {s}" for s in rs.plan_steps(compute, head, o)]

    def _remote(self, action: str, nodes: list[Node], stage: str) -> None:
        if not nodes:
            return
        missing = [n.name for n in nodes if not n.extra.get("ssh_host")]
        if missing:
            raise ClusterError(f"no address for {', '.join(missing)} (not created)",
                               f"{self._rerun()} creates them")
        rs.run_action(action, nodes, self.head(nodes), self.ssh_access(nodes), self.template,
                      self.state, self.say)
        for n in nodes:
            n.stage = stage

