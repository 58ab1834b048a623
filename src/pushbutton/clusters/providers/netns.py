"""Provider `netns`: a real multi-node SLURM on this host. Each node is a network namespace
with its own address on a bridge the provider makes, its own hostname (a UTS namespace) and its
own slurmd; slurmctld and one munged run on the host, slurmctld reached at the bridge's address.

Names (all derived from the cluster's name, a short "tag": the name itself when it fits, else a
shortened name and a hash): bridge `TAG-br`, namespace `TAG-NODE`, host side of each node's veth
pair `TAG-vK` (K: the node's host number in the subnet; the namespace side is `eth0`). The
subnet is a /24 in 10.128.0.0/9 that overlaps no route or address of this host and no other
cluster's (or `[templates.X.netns] subnet = "..."`), chosen once and recorded. `down` stops every
process in each namespace and removes the namespaces, veths and the bridge.

Needs root (network namespaces), `ip` (iproute2), `nsenter` and `unshare` (util-linux). slurmd
runs as `nsenter --net=/run/netns/NS unshare --uts sh -c 'hostname NODE && exec slurmd ...'`,
not `ip netns exec`, which remounts /sys (slurmd then dies on cgroups).
"""
from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from pushbutton.clusters import hostnet, procs
from pushbutton.clusters.cluster import ClusterError, clusters_dir, list_names
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.providers.onhost import OnHost

TAG_MAX = 9   # TAG-vNNN fits Linux's 15 characters


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: Optional[str] = None


def make_tag(name: str) -> str:
    t = re.sub(r"[^a-z0-9-]", "", name.lower()).strip("-")
    if t == name.lower() and 0 < len(t) <= TAG_MAX:
        return t
    return (t[:5] or "pb") + hashlib.sha1(name.encode()).hexdigest()[:4]


def _other_clusters(me: str) -> list[dict]:
    out = []
    for name in list_names():
        if name == me:
            continue
        try:
            d = json.loads((clusters_dir() / name / "cluster.json").read_text())
        except (OSError, ValueError):
            continue
        out.append(d.get("provider_data") or {})
    return out


class NetnsProvider(OnHost):
    name = "netns"

    # -- checks ------------------------------------------------------------------------------
    def options(self) -> Options:
        t = self.template
        try:
            return Options.model_validate(t.options)
        except ValidationError as e:
            err = e.errors()[0]
            key = f"templates.{t.name}.netns." + ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(str(err["loc"][-1]), list(Options.model_fields),
                                                 n=1)
                raise ClusterError(f"unknown key '{err['loc'][-1]}'",
                                   (f"did you mean '{near[0]}'? " if near else "") +
                                   "known keys: " + ", ".join(Options.model_fields),
                                   file=t.file, key=key) from None
            raise ClusterError(err["msg"], "give e.g. subnet = \"10.77.3.0/24\"", file=t.file,
                               key=key) from None

    def _subnet_option(self) -> ipaddress.IPv4Network | None:
        t, raw = self.template, self.options().subnet
        if raw is None:
            return None
        key = f"templates.{t.name}.netns.subnet"
        try:
            net = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise ClusterError(f"subnet {raw!r} is not an IPv4 network", "give e.g. "
                               "subnet = \"10.77.3.0/24\"", file=t.file, key=key) from None
        if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 29:
            raise ClusterError(f"subnet {raw!r} must be a private IPv4 network from /16 to /29",
                               "give e.g. subnet = \"10.77.3.0/24\"", file=t.file, key=key)
        return net

    def check(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("provider netns makes network namespaces, which needs root",
                               "run pb cluster as root (e.g. with sudo)")
        procs.require((*procs.SLURM_TOOLS, "ip", "nsenter", "unshare"))
        net = self._subnet_option()
        size = (net.num_addresses if net else 256) - 3
        slots = sum(g.max for g in self.template.nodes.values())
        if slots > size:
            raise ClusterError(f"the node groups may have {slots} nodes (their max), more than "
                               f"the {size} addresses of the subnet",
                               "lower max of the groups, or give a larger subnet",
                               file=self.template.file, key=f"templates.{self.template.name}")

    # -- names -------------------------------------------------------------------------------
    @property
    def pd(self) -> dict:
        return self.state.provider_data

    def _tag(self) -> str:
        tag = make_tag(self.state.name)
        if any(o.get("tag") == tag for o in _other_clusters(self.state.name)):
            tag = make_tag(self.state.name + "#")  # a shortened name + hash of its own
        return tag

    def _names(self, n: Node) -> tuple[str, str]:
        net = ipaddress.ip_network(self.pd["subnet"])
        k = int(ipaddress.ip_address(n.addr)) - int(net.network_address)
        return f"{self.pd['tag']}-{n.name}", f"{self.pd['tag']}-v{k}"

    def plan(self, nodes: list[Node]) -> list[str]:
        tag = self.pd.get("tag") or make_tag(self.state.name)
        sub = self.pd.get("subnet") or self.options().subnet or "a free /24 in 10.128.0.0/9"
        return [f"bridge {tag}-br on {sub}; slurmctld and munged on this host"] + \
            [f"{n.name}: namespace {tag}-{n.name}, {n.cpus} CPU(s), {n.memory} MB"
             + (f", {n.gres}" if n.gres else "") for n in nodes]

    # -- the cluster's network ---------------------------------------------------------------
    def prepare(self) -> None:
        pd = self.pd
        if "subnet" not in pd:
            net = self._subnet_option()
            taken = hostnet.host_networks() + [ipaddress.ip_network(o["subnet"])
                                               for o in _other_clusters(self.state.name)
                                               if o.get("subnet")]
            if net is not None and any(net.overlaps(t) for t in taken):
                raise ClusterError(f"subnet {net} overlaps a network of this host or of "
                                   "another cluster", "choose another subnet (`ip route` "
                                   "shows this host's)", file=self.template.file,
                                   key=f"templates.{self.template.name}.netns.subnet")
            if net is None:
                seed = int(hashlib.sha1(self.state.name.encode()).hexdigest(), 16)
                net = hostnet.pick_subnet(seed % (127 * 256), taken)
            tag = self._tag()
            bridge = f"{tag}-br"
            if hostnet.link_exists(bridge):
                raise ClusterError(f"a network interface named {bridge} exists and is not "
                                   f"this cluster's", "give the cluster another name, or "
                                   f"remove it (`ip link del {bridge}`)")
            pd.update(tag=tag, bridge=bridge, subnet=str(net),
                      ctl_addr=str(next(net.hosts())))
            self.state.save()
        net = ipaddress.ip_network(pd["subnet"])
        if not hostnet.link_exists(pd["bridge"]):
            self.say(f"  bridge {pd['bridge']}: {pd['ctl_addr']}/{net.prefixlen} (the "
                     "controller's address)")
            hostnet.add_bridge(pd["bridge"], pd["ctl_addr"], net.prefixlen)
        elif not hostnet.bridge_has(pd["bridge"], pd["ctl_addr"]):
            hostnet.ip("addr", "add", f"{pd['ctl_addr']}/{net.prefixlen}", "dev", pd["bridge"])
            hostnet.ip("link", "set", pd["bridge"], "up")

    def controller_address(self) -> str | None:
        return self.pd.get("ctl_addr")

    def teardown(self) -> None:
        if self.pd.get("bridge") and hostnet.link_exists(self.pd["bridge"]):
            hostnet.del_link(self.pd["bridge"])
            self.say(f"  removed bridge {self.pd['bridge']}")

    # -- nodes -------------------------------------------------------------------------------
    def _address(self, node: Node) -> str:
        net = ipaddress.ip_network(self.pd["subnet"])
        used = {n.addr for n in self.state.nodes if n.addr and n.name != node.name}
        used.add(self.pd["ctl_addr"])
        for a in net.hosts():
            if str(a) not in used:
                return str(a)
        raise ClusterError(f"no address left in {net} for node {node.name}",
                           "give a larger subnet")

    def create(self, nodes: list[Node]) -> None:
        for n in nodes:
            if not n.addr:
                n.addr = self._address(n)
                self.state.update_node(n)
            ns, veth = self._names(n)
            if hostnet.node_ok(ns, veth, n.addr):
                if n.stage == "planned":
                    self._save(n, "created")
                continue
            if n.stage != "planned":
                self.say(f"  {n.name}: its namespace is gone or broken; making it again")
            self._remove(ns, veth)
            self.say(f"  {n.name}: namespace {ns}, address {n.addr}")
            hostnet.add_node(ns, veth, self.pd["bridge"], n.addr,
                             ipaddress.ip_network(self.pd["subnet"]).prefixlen)
            n.extra.update(netns=ns, veth=veth)
            self._save(n, "created")

    def _remove(self, ns: str, veth: str) -> None:
        hostnet.del_netns(ns)
        hostnet.del_link(veth)

    def wrap(self, node: Node, argv: list[str]) -> list[str]:
        return hostnet.wrap(self._names(node)[0], node.name, argv)

    def stop(self, nodes: list[Node]) -> None:
        super().stop(nodes)
        for n in nodes:
            if not n.addr:
                continue
            rest = hostnet.netns_pids(self._names(n)[0])
            if rest:  # job steps and tasks the node ran: a stopped node runs nothing
                procs.kill_pids(rest, timeout=5)
                self.say(f"  {n.name}: stopped {len(rest)} other process(es) in its namespace")

    def destroy(self, nodes: list[Node]) -> None:
        self.stop(nodes)
        for n in nodes:
            if n.addr:
                self._remove(*self._names(n))
            n.extra.pop("netns", None)
            n.extra.pop("veth", None)
            self._save(n, "planned")
