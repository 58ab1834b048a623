"""What a cloud's (libcloud's) errors mean for the user: ClusterError with what to do next."""
from __future__ import annotations

import hashlib
import re
import socket

from pushbutton.clusters.cluster import ClusterError

_INSTALL = 'pip install apache-libcloud  (or: pip install "pushbutton[cloud]")'
_QUOTA = re.compile(r"quota|limit ?exceeded|LimitExceeded|insufficient\w*capacity", re.I)


def libcloud_version() -> str:
    try:
        import libcloud
    except ImportError:
        raise ClusterError("Apache Libcloud is not installed (the gce, aws and openstack "
                           "providers use it)", _INSTALL) from None
    return libcloud.__version__


def dns_label(text: str, limit: int = 63) -> str:
    """`text` as a name every cloud accepts: lower case letters, digits and '-', starting with a
    letter, at most `limit` characters (shortened with a hash so names stay distinct)."""
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not s or not s[0].isalpha():
        s = "pb-" + s
    if len(s) > limit:
        s = s[: limit - 9].rstrip("-") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return s


def message(e: BaseException) -> str:
    text = getattr(e, "message", None) or getattr(e, "value", None) or str(e) or type(e).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def translate(e: Exception, *, title: str, what: str, creds: str | None,
              rerun: str) -> ClusterError:
    """The ClusterError for exception `e` raised by libcloud while doing `what` on `title`."""
    from libcloud.common.exceptions import BaseHTTPError
    from libcloud.common.types import InvalidCredsError
    m = message(e)
    quota = "ask the cloud for a higher quota or use fewer or smaller nodes (--nodes, size); "
    if isinstance(e, InvalidCredsError) or type(e).__name__ == "GoogleAuthError":
        return ClusterError(f"{title} refused the credentials from {creds or 'the driver'} "
                            f"while {what}: {m}",
                            f"check them (or make new ones in the cloud's console), then {rerun}")
    if isinstance(e, BaseHTTPError):
        return ClusterError(f"{title} answered {getattr(e, 'code', '?')} while {what}: {m}",
                            (quota if _QUOTA.search(m) else "see the message; ") + f"then {rerun}")
    if isinstance(e, (socket.timeout, TimeoutError)):
        return ClusterError(f"{title} did not answer while {what} ({m})",
                            f"check your network, then {rerun}")
    if isinstance(e, OSError):      # refused, DNS, TLS (requests' errors are OSErrors too)
        return ClusterError(f"cannot reach {title} while {what}: {m}",
                            f"check your network and the endpoint, then {rerun}")
    # libcloud raises many other kinds (LibcloudError, ValueError for a bad region, ...)
    return ClusterError(f"{title}: {what} failed: {type(e).__name__}: {m}",
                        (quota if _QUOTA.search(m) else "correct the template or credentials; ")
                        + f"then {rerun}")
