"""Test stand-ins for the cloud tests (test_cloud.py). None of them is a cloud, and none reaches
one: they serve on 127.0.0.1 or live in the test's process.

* NamingDummy: libcloud's own in-process DummyNodeDriver, changed only where it is unlike every
  real cloud: it keeps the name and tags a machine is created with (the plain one names every
  machine dummy-N and drops tags), never reuses an id, can fail the k-th create the way a quota
  does, and can keep machines pending for a few looks.
* EC2Local: a small stateful imitation of the EC2 Query API (RunInstances with tags and
  ClientToken, DescribeInstances, TerminateInstances, key pairs, AuthFailure, any error code) on
  127.0.0.1, so that libcloud's real EC2 driver (request signing, XML parsing, its errors) runs
  against it.
* keystone_401: an HTTP server on 127.0.0.1 that refuses every token request as Keystone does.
"""
from __future__ import annotations

import itertools
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from libcloud.common.exceptions import BaseHTTPError
from libcloud.compute.base import Node as LNode
from libcloud.compute.drivers.dummy import DummyNodeDriver
from libcloud.compute.types import NodeState

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
_ids = itertools.count(100)


class NamingDummy(DummyNodeDriver):
    def __init__(self, tags_key: str = "tags", fail_at: int | None = None, pending_polls: int = 0):
        super().__init__(0)          # libcloud's two machines dummy-1, dummy-2 (not ours)
        self.tags_key, self.fail_at, self.pending_polls = tags_key, fail_at, pending_polls
        self.create_calls: list[dict] = []
        self.broken: set[str] = set()      # names whose machines fail to boot (state ERROR)
        self._polls: dict[str, int] = {}

    def create_node(self, name, size, image, **kwargs):
        self.create_calls.append(dict(kwargs, name=name, size=size, image=image))
        if self.fail_at is not None and len(self.create_calls) == self.fail_at:
            raise BaseHTTPError(403, "Quota 'INSTANCES' exceeded. Limit: 2.0 in region test", {})
        n = next(_ids)
        tags = dict(kwargs.get("ex_metadata") or {}) if self.tags_key != "labels" else \
            dict(kwargs.get("ex_labels") or {})
        m = LNode(id=f"m-{n}", name=name, state=NodeState.PENDING if self.pending_polls
                  else NodeState.RUNNING, public_ips=[f"198.51.100.{n % 250}"],
                  private_ips=[f"10.1.0.{n % 250}"], driver=self, size=size, image=image,
                  extra={self.tags_key: tags})
        self._polls[m.id] = self.pending_polls
        if name in self.broken:
            m.state = NodeState.ERROR
        self.nl.append(m)
        return m

    def start_node(self, node):
        node.state = NodeState.PENDING
        self._polls[node.id] = self.pending_polls
        return True

    def list_nodes(self):
        for m in self.nl:
            if m.state == NodeState.PENDING:
                self._polls[m.id] -= 1
                if self._polls[m.id] < 0:
                    m.state = NodeState.RUNNING
        return list(self.nl)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Server:
    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def keystone_401() -> _Server:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            b = (b'{"error": {"code": 401, "title": "Unauthorized", "message": '
                 b'"The request you have made requires authentication."}}')
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)
    return _Server(H)


class EC2Local(_Server):
    def __init__(self, pending_polls: int = 0):
        self.instances: dict[str, dict] = {}
        self.keys: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.calls: list[str] = []
        self.fail: dict[str, object] = {}   # Action -> (code, message[, status]) or "lose-answer"
        self.fail_after: dict[str, int] = {}  # Action -> calls that still succeed first
        self.auth_fail = False
        self.pending_polls = pending_polls
        self._n = itertools.count(1)
        ec2 = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._go(parse_qs(urlparse(self.path).query))

            def do_POST(self):
                q = parse_qs(urlparse(self.path).query)
                q.update(parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0))
                                  .decode()))
                self._go(q)

            def _go(self, q):
                status, body = ec2.handle({k: v[0] for k, v in q.items()})
                if body is None:                # the answer is lost on the way
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                b = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)
        super().__init__(H)

    @staticmethod
    def _err(code, msg, status=400):
        return status, (f"<Response><Errors><Error><Code>{code}</Code><Message>{escape(msg)}"
                        "</Message></Error></Errors><RequestID>r-1</RequestID></Response>")

    def handle(self, p: dict):
        a = p.get("Action")
        self.calls.append(a)
        if self.auth_fail:
            return self._err("AuthFailure", "AWS was not able to validate the provided access "
                             "credentials", 401)
        if a in self.fail:
            if self.fail_after.get(a, 0) > 0:
                self.fail_after[a] -= 1
            elif self.fail[a] == "lose-answer":
                getattr(self, a)(p)
                return 200, None
            else:
                return self._err(*self.fail[a])
        fn = getattr(self, a, None)
        return fn(p) if fn else self._err("InvalidAction", f"{a} is not imitated here")

    def live(self) -> list[dict]:
        return [i for i in self.instances.values() if i["state"] != "terminated"]

    def _item(self, i: dict) -> str:
        tags = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>"
                       for k, v in i["tags"].items())
        ips = (f"<privateIpAddress>{i['private']}</privateIpAddress>"
               f"<ipAddress>{i['public']}</ipAddress>" if i["state"] == "running" else "")
        return (f"<item><instanceId>{i['id']}</instanceId><imageId>{i['image']}</imageId>"
                f"<instanceState><code>0</code><name>{i['state']}</name></instanceState>"
                f"<keyName>{i['key']}</keyName><instanceType>{i['type']}</instanceType>"
                f"<clientToken>{i['token']}</clientToken>"
                f"<launchTime>2024-01-01T00:00:00.000Z</launchTime>{ips}"
                f"<tagSet>{tags}</tagSet></item>")

    def RunInstances(self, p):
        tok = p.get("ClientToken", "")
        if tok and tok in self.tokens:          # EC2: the same token, the same machine
            i = self.instances[self.tokens[tok]]
        else:
            n = next(self._n)
            tags, k = {}, 1
            while f"TagSpecification.1.Tag.{k}.Key" in p:
                tags[p[f"TagSpecification.1.Tag.{k}.Key"]] = p[f"TagSpecification.1.Tag.{k}.Value"]
                k += 1
            i = dict(id=f"i-{n:08x}", image=p["ImageId"], type=p["InstanceType"],
                     state="pending", key=p.get("KeyName", ""), token=tok, tags=tags,
                     polls=self.pending_polls, private=f"10.0.0.{n}", public=f"203.0.113.{n}",
                     params=p)
            self.instances[i["id"]] = i
            if tok:
                self.tokens[tok] = i["id"]
        return 200, (f'<RunInstancesResponse xmlns="{NS}"><reservationId>r-1</reservationId>'
                     f"<instancesSet>{self._item(i)}</instancesSet></RunInstancesResponse>")

    def DescribeInstances(self, p):
        for i in self.instances.values():
            if i["state"] == "pending":
                i["polls"] -= 1
                if i["polls"] < 0:
                    i["state"] = "running"
            elif i["state"] == "shutting-down":
                i["polls"] -= 1
                if i["polls"] < 0:
                    i["state"] = "terminated"
        items = "".join(self._item(i) for i in self.instances.values())
        return 200, (f'<DescribeInstancesResponse xmlns="{NS}"><reservationSet><item>'
                     f"<reservationId>r-1</reservationId><instancesSet>{items}</instancesSet>"
                     "</item></reservationSet></DescribeInstancesResponse>")

    def DescribeAddresses(self, p):
        return 200, f'<DescribeAddressesResponse xmlns="{NS}"><addressesSet/></DescribeAddressesResponse>'

    def TerminateInstances(self, p):
        i = self.instances[p["InstanceId.1"]]
        i["state"], i["polls"] = "shutting-down", self.pending_polls
        return 200, (f'<TerminateInstancesResponse xmlns="{NS}"><instancesSet><item>'
                     f"<instanceId>{i['id']}</instanceId><currentState><code>32</code>"
                     "<name>shutting-down</name></currentState></item></instancesSet>"
                     "</TerminateInstancesResponse>")

    def DescribeKeyPairs(self, p):
        name = p.get("KeyName.1") or p.get("KeyName")   # libcloud sends KeyName
        if name not in self.keys:
            return self._err("InvalidKeyPair.NotFound", f"The key pair '{name}' does not exist")
        return 200, (f'<DescribeKeyPairsResponse xmlns="{NS}"><keySet><item><keyName>{name}'
                     "</keyName><keyFingerprint>ff</keyFingerprint></item></keySet>"
                     "</DescribeKeyPairsResponse>")

    def ImportKeyPair(self, p):
        self.keys[p["KeyName"]] = p["PublicKeyMaterial"]
        return 200, (f'<ImportKeyPairResponse xmlns="{NS}"><keyName>{p["KeyName"]}</keyName>'
                     "<keyFingerprint>ff</keyFingerprint></ImportKeyPairResponse>")
