"""The providers `pb cluster` knows, found by name. Each is one class in a module of this package,
imported only when asked for (so e.g. libcloud is imported only for a cloud provider).

    local      a one-host SLURM on this machine                       (providers/local.py)
    netns      N nodes on this host, one network namespace each        (providers/netns.py)
    ssh        existing machines over SSH                              (providers/ssh.py)
    gce, aws, openstack   virtual machines through Apache Libcloud     (providers/cloud.py)
"""
from __future__ import annotations

import importlib

# provider name -> (module in this package, class name)
REGISTRY = {
    "local": ("local", "LocalProvider"),
    "netns": ("netns", "NetnsProvider"),
    "ssh": ("ssh", "SSHProvider"),              # with the ssh setup steps (remote_*.py)
    "gce": ("cloud", "GCEProvider"),            # Apache Libcloud (cloud_base.CloudProvider)
    "aws": ("cloud", "AWSProvider"),
    "openstack": ("cloud", "OpenStackProvider"),
}

PIP = {"libcloud": "apache-libcloud"}


def provider_class(name: str):
    """The Provider class registered as `name`; a ClusterError when it is unknown or its module
    is not available in this installation."""
    # not at the top: clusters.cluster imports providers.base, which runs this file first
    from pushbutton.clusters.cluster import ClusterError
    if name not in REGISTRY:
        raise ClusterError(f"unknown provider '{name}'",
                           f"provider is one of: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name]
    full = f"{__name__}.{module}"
    try:
        mod = importlib.import_module(full)
    except ModuleNotFoundError as e:
        if e.name == full:
            raise ClusterError(f"provider '{name}' is not available in this installation "
                               f"(no module {full})",
                               "use provider local or netns, or update pushbutton") from None
        top = (e.name or "?").split(".")[0]
        raise ClusterError(f"provider '{name}' needs the Python module '{top}', which is not "
                           "installed", f"pip install {PIP.get(top, top)}") from None
    try:
        return getattr(mod, cls)
    except AttributeError:
        raise ClusterError(f"provider '{name}' is not available: {full} has no class {cls}",
                           "update pushbutton") from None
