"""Low-level network namespaces, veth pairs and bridges on this host (`ip`, `nsenter`), for the
netns provider. Every call has a timeout; nothing passes through a shell with user values (the
one `sh -c` line is fixed text, its values are positional arguments)."""
from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from pushbutton.clusters import procs
from pushbutton.clusters.cluster import ClusterError

NETNS_DIR = Path("/run/netns")
IFNAME_MAX = 15   # Linux's limit for interface names


def ip(*args: str, check: bool = True, timeout: float = 15):
    r = procs.run(["ip", *args], timeout=timeout)
    if check and r.returncode != 0:
        raise ClusterError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()[-300:]}",
                           "run as root; `ip netns list` and `ip link` show what exists")
    return r


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_list() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except OSError:
        return []


def netns_pids(name: str) -> list[int]:
    """The processes whose network namespace is `name` (this host's pid namespace)."""
    try:
        ino = os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return []
    want = f"net:[{ino}]"
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.readlink(p / "ns" / "net") == want and procs.alive(int(p.name)):
                out.append(int(p.name))
        except OSError:
            continue
    return out


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this host has a route or an address in (any table)."""
    nets = []
    for args in (("-j", "-4", "route", "show", "table", "all"), ("-j", "-4", "addr")):
        r = ip(*args, check=False)
        try:
            data = json.loads(r.stdout or "[]")
        except ValueError:
            continue
        for item in data:
            for dst in [item.get("dst")] + [a.get("local") + "/" + str(a.get("prefixlen"))
                                            for a in item.get("addr_info", [])
                                            if a.get("family") == "inet"]:
                if not dst or dst == "default":
                    continue
                try:
                    nets.append(ipaddress.ip_network(dst, strict=False))
                except ValueError:
                    continue
    return nets


def pick_subnet(seed: int, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A /24 in 10.128.0.0/9 overlapping none of `taken`, starting from `seed`."""
    for i in range(127 * 256):
        k = (seed + i) % (127 * 256)
        net = ipaddress.ip_network(f"10.{128 + k // 256}.{k % 256}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise ClusterError("no free /24 left in 10.128.0.0/9 on this host",
                       "give one: [templates.NAME.netns] subnet = \"...\" or --option subnet=...")


def add_bridge(name: str, addr: str, prefix: int) -> None:
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", f"{addr}/{prefix}", "dev", name)
    ip("link", "set", name, "up")


def bridge_has(name: str, addr: str) -> bool:
    r = ip("-j", "-4", "addr", "show", "dev", name, check=False)
    try:
        data = json.loads(r.stdout or "[]")
    except ValueError:
        return False
    return any(a.get("local") == addr for d in data for a in d.get("addr_info", []))


def add_node(ns: str, veth: str, bridge: str, addr: str, prefix: int) -> None:
    """Namespace `ns` with `eth0` (address addr/prefix) paired with `veth` on `bridge`."""
    ip("netns", "add", ns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("link", "set", veth, "master", bridge, "up")
    ip("-n", ns, "addr", "add", f"{addr}/{prefix}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "link", "set", "lo", "up")


def node_ok(ns: str, veth: str, addr: str) -> bool:
    if not (netns_exists(ns) and link_exists(veth)):
        return False
    r = ip("-n", ns, "-j", "-4", "addr", "show", "dev", "eth0", check=False)
    return r.returncode == 0 and f'"local":"{addr}"' in r.stdout.replace(" ", "")


def del_link(name: str) -> None:
    if link_exists(name):
        ip("link", "del", name, check=False)


def del_netns(name: str) -> None:
    pids = netns_pids(name)
    if pids:
        procs.kill_pids(pids, timeout=5)
    if netns_exists(name):
        ip("netns", "del", name, check=False)


def wrap(ns: str, hostname: str, argv: list[str]) -> list[str]:
    """argv run inside network namespace `ns` with its own hostname. nsenter --net, not
    `ip netns exec` (which remounts /sys, and slurmd then dies on cgroups)."""
    return [procs.which("nsenter"), f"--net={NETNS_DIR / ns}", procs.which("unshare"), "--uts",
            "sh", "-c", 'hostname "$1" && shift && exec "$@"', "sh", hostname, *argv]
