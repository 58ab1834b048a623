"""Providers gce, aws and openstack (Apache Libcloud). The work is done by CloudProvider
(cloud_base.py); each class here says how to build its cloud's libcloud driver from the
credentials, what to ask the cloud for one machine and where the cloud shows a machine's tags.
Options and credentials: cloud_options.py; the template table: docs/CLUSTERS.md (clouds).
"""
from __future__ import annotations

import re
import uuid

from pushbutton.clusters.cluster import ClusterError
from pushbutton.clusters.providers import cloud_options as co
from pushbutton.clusters.providers.base import Node
from pushbutton.clusters.providers.cloud_base import HTTP_TIMEOUT, CloudProvider


def _size_and_image(drv, size: str, image: str):
    """Local NodeSize / NodeImage objects naming the machine type and the image by id."""
    from libcloud.compute.base import NodeImage, NodeSize
    return (NodeSize(id=size, name=size, ram=None, disk=None, bandwidth=None, price=None,
                     driver=drv),
            NodeImage(id=image, name=image, driver=drv))


class AWSProvider(CloudProvider):
    name = "aws"
    title = "AWS EC2"

    def driver_args(self):
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider as P
        c = self.creds().values
        return (get_driver(P.EC2), [c["key"], c["secret"]],
                {"token": c.get("token"), "region": self.opts.region, "timeout": HTTP_TIMEOUT})

    def tags_of(self, machine):
        return (machine.extra or {}).get("tags")

    def create_kwargs(self, drv, node: Node, key_name):
        from libcloud.compute.drivers.ec2 import EC2NetworkSubnet
        o = self.opts
        size, image = _size_and_image(drv, self.size_for(node), o.image)
        # EC2 makes RunInstances idempotent by this token: a retry after a lost answer returns
        # the machine already made instead of a second one
        token = node.extra.setdefault("client_token", f"{node.extra['instance']}-"
                                      f"{uuid.uuid4().hex[:16]}")
        kw = {"name": node.extra["instance"], "size": size, "image": image,
              "ex_metadata": self.tags(node), "ex_clienttoken": token}
        if key_name:
            kw["ex_keyname"] = key_name
        names = [g for g in o.security_groups if not g.startswith("sg-")]
        ids = [g for g in o.security_groups if g.startswith("sg-")]
        if names:
            kw["ex_security_groups"] = names
        if ids:
            kw["ex_security_group_ids"] = ids
        if o.network:
            kw["ex_subnet"] = EC2NetworkSubnet(o.network, o.network, "available")
            kw["ex_assign_public_ip"] = o.public_ip
        return kw


class GCEProvider(CloudProvider):
    name = "gce"
    title = "Google Compute Engine"

    def location(self) -> str:
        return f"zone {self.opts.zone}"

    def driver_args(self):
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider as P
        c = self.creds().values
        kw = {"project": c["project"], "datacenter": self.opts.zone, "auth_type": "SA",
              "timeout": HTTP_TIMEOUT}
        folder = getattr(self.state, "dir", None)
        if folder is not None:      # libcloud caches its access token there (mode 600)
            kw["credential_file"] = str(folder) + "/gce-token.json"
        return get_driver(P.GCE), [c["user_id"], c["key"]], kw

    def check_driver(self) -> None:
        """Building the GCE driver fetches a token from Google; here only the service account's
        key is loaded the way libcloud loads it (no network)."""
        if self.driver_factory is not None:
            self.driver()
            return
        from libcloud.common.google import GoogleServiceAcctAuthConnection
        c = self.creds().values
        self._call("reading the service account key", GoogleServiceAcctAuthConnection,
                   c["user_id"], c["key"], ["https://www.googleapis.com/auth/compute"])

    def tags_of(self, machine):
        return (machine.extra or {}).get("labels")

    def create_kwargs(self, drv, node: Node, key_name):
        o = self.opts
        kw = {"name": node.extra["instance"], "size": self.size_for(node), "image": o.image,
              "location": o.zone, "ex_network": o.network or "default",
              "ex_labels": self.tags(node)}
        if o.network_tags:
            kw["ex_tags"] = list(o.network_tags)
        pub = self.public_key()
        if pub:     # GCE makes the user and installs the key from this metadata
            kw["ex_metadata"] = {"ssh-keys": f"{o.ssh_user}:{pub}"}
        return kw


class OpenStackProvider(CloudProvider):
    name = "openstack"
    title = "OpenStack"

    def location(self) -> str:
        region = self.opts.region or (self._creds.values.get("region_name") if self._creds
                                      else None)
        return f"region {region}" if region else "the default region"

    def driver_args(self):
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider as P
        c = self.creds().values
        # libcloud appends /v3/auth/tokens itself
        url = re.sub(r"/v3/?$", "", c["auth_url"].rstrip("/"))
        kw = {"ex_force_auth_url": url, "ex_force_auth_version": "3.x_password",
              "ex_tenant_name": c["project_name"],
              "ex_domain_name": c.get("user_domain_name") or "Default",
              "ex_tenant_domain_id": c.get("project_domain_id") or "default",
              "timeout": HTTP_TIMEOUT}
        region = self.opts.region or c.get("region_name")
        if region:
            kw["ex_force_service_region"] = region
        return get_driver(P.OPENSTACK), [c["username"], c["password"]], kw

    def tags_of(self, machine):
        return (machine.extra or {}).get("metadata")

    def _pick(self, what: str, key: str, items, wanted: str):
        for it in items:
            if wanted in (str(it.id), getattr(it, "name", None)):
                return it
        names = ", ".join(sorted(str(getattr(i, "name", i.id)) for i in items)[:20])
        raise ClusterError(f"{co.where(self.template, key)}: the cloud has no {what} "
                           f"{wanted!r} (it has: {names or 'none'})",
                           co._edit_fix(self.template, f"set {key} to one of them"))

    def create_kwargs(self, drv, node: Node, key_name):
        o = self.opts
        if not hasattr(self, "_lists"):     # once per command, not once per node
            self._lists = (self._call("listing flavors", drv.list_sizes),
                           self._call("listing images", drv.list_images))
        sizes, images = self._lists
        kw = {"name": node.extra["instance"],
              "size": self._pick("flavor", "size", sizes, self.size_for(node)),
              "image": self._pick("image", "image", images, o.image),
              "ex_metadata": self.tags(node)}
        if key_name:
            kw["ex_keyname"] = key_name
        if o.network:
            nets = self._call("listing networks", drv.ex_list_networks)
            kw["networks"] = [self._pick("network", "network", nets, o.network)]
        if o.security_groups:
            groups = self._call("listing security groups", drv.ex_list_security_groups)
            kw["ex_security_groups"] = [self._pick("security group", "security_groups", groups, g)
                                        for g in o.security_groups]
        return kw


PROVIDERS = {"aws": AWSProvider, "gce": GCEProvider, "openstack": OpenStackProvider}
