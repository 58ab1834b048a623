"""The `[templates.X.cloud]` table of the gce / aws / openstack providers: validated options,
credentials read from a file or the environment (never from the template), and prices.

Everything here is local: nothing reaches a cloud. Errors name the template file, the key
(`templates.X.cloud.KEY`) and the fix.
"""
from __future__ import annotations

import configparser
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from pushbutton.clusters.cluster import ClusterError

# keys that would hold a secret: refused in a template whatever the cloud
SECRET_KEYS = {"secret", "secret_key", "secret_access_key", "access_key", "access_key_id",
               "aws_access_key_id", "aws_secret_access_key", "session_token", "password",
               "token", "private_key", "api_key", "apikey", "key", "client_secret",
               "application_credential_secret", "os_password"}
_SECRET_VALUES = (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),      # a PEM private key
                  re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$"))          # an AWS access key id
# a key someone may write, and the key they mean
_HINTS = {"machine_type": "size", "instance_type": "size", "flavor": "size", "flavour": "size",
          "ami": "image", "image_id": "image", "head_machine_type": "head_size",
          "head_flavor": "head_size", "keypair": "key_name", "key_pair": "key_name",
          "user": "ssh_user", "username": "ssh_user", "public_key": "ssh_public_key",
          "identity_file": "ssh_private_key", "credentials_file": "credentials",
          "subnet": "network", "security_group": "security_groups", "project_id": "project"}


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    image: str = Field(min_length=1)              # AMI id / GCE image (or family) / Glance name or id
    size: str = Field(min_length=1)               # machine type of compute nodes
    head_size: str | None = None                  # machine type of the head node (default: size)
    sizes: dict[str, str] = {}                    # machine type per node group (overrides size)
    network: str | None = None                    # aws: subnet id; gce: network; openstack: network
    ssh_public_key: str | None = None             # path of the public key the nodes accept
    ssh_private_key: str | None = None            # path of its private key (default: without .pub)
    ssh_user: str = "ubuntu"
    credentials: str | None = None                # path of a credentials FILE
    timeout: float = Field(600.0, gt=0)           # s to wait for nodes to run / go away
    workdir: str = "~/.pushbutton-remote"         # the target's work folder (shared: see docs)
    cluster_dir: str = "~/.pushbutton-clusters"   # the per-cluster folders on the machines

    @field_validator("workdir", "cluster_dir")
    @classmethod
    def _folder(cls, v):
        if not (v.startswith("/") or v == "~" or v.startswith("~/")):
            raise ValueError("give an absolute path or one starting with ~/")
        return v

    @field_validator("ssh_public_key")
    @classmethod
    def _path_not_key(cls, v):
        if v and v.lstrip().startswith(("ssh-", "ecdsa-", "sk-")):
            raise ValueError("give the path of the public key file, not the key itself")
        return v


class AWSOptions(_Common):
    region: str = Field(min_length=1)
    security_groups: list[str] = []               # names, or sg-... ids (these need network)
    key_name: str | None = None                   # an existing EC2 key pair
    profile: str = "default"                      # section of an AWS shared credentials file
    public_ip: bool = True                        # ask for a public address in a subnet

    @model_validator(mode="after")
    def _ids_need_subnet(self):
        if any(g.startswith("sg-") for g in self.security_groups) and not self.network:
            raise ValueError("security group ids (sg-...) need network = \"subnet-...\" "
                             "(or give the groups' names)")
        return self


class GCEOptions(_Common):
    zone: str = Field(min_length=1)               # e.g. us-central1-a (the region follows)
    project: str | None = None                    # default: project_id of the credentials file
    network: str | None = "default"
    network_tags: list[str] = []                  # GCE network tags (firewall rules)
    ssh_user: str = "pushbutton"                  # GCE makes this user from the ssh-keys metadata

    @property
    def region(self) -> str:
        return "-".join(self.zone.split("-")[:2])


class OpenStackOptions(_Common):
    region: str | None = None                     # default: region_name of the credentials
    security_groups: list[str] = []
    key_name: str | None = None                   # an existing Nova key pair


MODELS = {"aws": AWSOptions, "gce": GCEOptions, "openstack": OpenStackOptions}
_EXAMPLE = {"aws": {"region": '"us-east-1"', "image": '"ami-0123456789abcdef0"',
                    "size": '"t3.small"'},
            "gce": {"zone": '"us-central1-a"', "image": '"debian-12"', "size": '"e2-standard-2"'},
            "openstack": {"image": '"Ubuntu 22.04"', "size": '"m1.small"'}}


# -- where -------------------------------------------------------------------------------------
def template_file(template) -> str | None:
    """The file the template was defined in; None for a built-in one."""
    file = getattr(template, "file", None)
    return None if file in (None, "built-in") else file


def where(template, key: str | None = None) -> str:
    """'FILE: [templates.NAME.cloud] KEY' (the file when the template has one)."""
    file = template_file(template)
    table = f"[templates.{getattr(template, 'name', '?')}.cloud]"
    return (f"{file}: " if file else "") + table + (f" {key}" if key else "")


def _edit_fix(template, text: str) -> str:
    file = template_file(template)
    return f"{text} in {where(template)}" + ("" if file else
                                              " of pushbutton-clusters.toml (or your clusters.toml)")


def _secret_problem(options: dict) -> str | None:
    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                yield from walk(x, f"{path}.{k}" if path else str(k))
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                yield from walk(x, f"{path}[{i}]")
        elif isinstance(v, str) and any(p.search(v) for p in _SECRET_VALUES):
            yield path
    for k in options:
        if str(k).lower() in SECRET_KEYS:
            return str(k)
    return next(walk(options, ""), None)


def validate(provider: str, template):
    """The validated options of `template` for cloud `provider` ('aws' | 'gce' | 'openstack')."""
    raw = getattr(template, "options", None) or {}
    if not isinstance(raw, dict):
        raise ClusterError(f"{where(template)} must be a table, not {type(raw).__name__}",
                           _edit_fix(template, "write image = ..., size = ..."))
    bad = _secret_problem(raw)
    if bad:
        raise ClusterError(
            f"{where(template, bad)}: a secret must never be written in a template",
            f"remove it; put it in a credentials file (mode 600) and name that file with "
            f"credentials = \"~/.config/pushbutton/{provider}.json\", or use the environment "
            f"variables of {provider} (see docs/CLUSTERS.md, clouds)")
    try:
        return MODELS[provider].model_validate(raw)
    except ValidationError as e:
        raise _from_validation(provider, template, e) from None


def _from_validation(provider, template, e: ValidationError) -> ClusterError:
    lines, fixes = [], []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "?"
        top = str(err["loc"][0]) if err["loc"] else key
        if err["type"] == "missing":
            lines.append(f"{where(template, key)}: missing (needed by provider {provider})")
            ex = _EXAMPLE[provider].get(top, '"..."')
            fixes.append(f"{top} = {ex}")
        elif err["type"] == "extra_forbidden":
            hint = _HINTS.get(top)
            if provider == "gce" and top == "region":
                hint = "zone"
            if provider == "aws" and top == "zone":
                hint = "region"
            if provider == "gce" and top in ("key_name", "security_groups"):
                hint = {"key_name": "ssh_public_key", "security_groups": "network_tags"}[top]
            lines.append(f"{where(template, key)}: unknown key for provider {provider}"
                         + (f" (did you mean '{hint}'?)" if hint else ""))
            fixes.append(f"rename it to {hint}" if hint else "remove it; known keys: "
                         + ", ".join(sorted(MODELS[provider].model_fields)))
        else:
            lines.append(f"{where(template, key)}: {err['msg']}")
            fixes.append(f"correct {top}")
    return ClusterError("\n".join(lines), _edit_fix(template, "; ".join(dict.fromkeys(fixes))))


# -- credentials -------------------------------------------------------------------------------
@dataclass
class Creds:
    source: str                  # where they came from, for messages: "file X" / "environment"
    values: dict = field(repr=False, default_factory=dict)
    file: Path | None = None


def resolve_path(template, p: str) -> Path:
    """`~` expanded; a relative path is relative to the template's file (else the cwd)."""
    path = Path(os.path.expanduser(p))
    file = template_file(template)
    if not path.is_absolute() and file:
        path = Path(file).resolve().parent / path
    return path


def _read(template, key: str, path: Path) -> str:
    if not path.exists():
        raise ClusterError(f"{where(template, key)}: the file {path} does not exist",
                           _edit_fix(template, f"create it or correct {key}"))
    try:
        return path.read_text()
    except OSError as e:
        raise ClusterError(f"{where(template, key)}: cannot read {path}: {e.strerror}",
                           f"chmod u+r {path}  (it must be readable by you)") from None


def _need(template, key, path, data: dict, names: tuple[str, ...], fix: str) -> None:
    missing = [n for n in names if not data.get(n)]
    if missing:
        raise ClusterError(f"{where(template, key)}: {path} has no {', '.join(missing)}", fix)


def aws_credentials(opts: AWSOptions, template, env=os.environ) -> Creds:
    """From cloud.credentials (a JSON file with access_key_id / secret_access_key, or an AWS
    shared credentials file with a [profile] section), else AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY, else ~/.aws/credentials."""
    path = resolve_path(template, opts.credentials) if opts.credentials else None
    if path is None and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Creds("the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
                     {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"],
                      "token": env.get("AWS_SESSION_TOKEN")})
    if path is None:
        default = Path(os.path.expanduser("~/.aws/credentials"))
        if not default.exists():
            raise ClusterError(
                f"{where(template, 'credentials')}: no AWS credentials (no credentials file "
                f"named, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set, no {default})",
                _edit_fix(template, 'set credentials = "~/.aws/credentials"')
                + ", or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        path = default
    text = _read(template, "credentials", path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ClusterError(f"{where(template, 'credentials')}: {path} is not valid JSON "
                               f"({e})", f"fix {path}") from None
        data = {k.lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
        for a, b in (("aws_access_key_id", "access_key_id"),
                     ("aws_secret_access_key", "secret_access_key"),
                     ("aws_session_token", "session_token")):
            data.setdefault(b, data.get(a))
        _need(template, "credentials", path, data, ("access_key_id", "secret_access_key"),
              f'write {{"access_key_id": "...", "secret_access_key": "..."}} into {path}')
        return Creds(f"file {path}", {"key": data["access_key_id"],
                                      "secret": data["secret_access_key"],
                                      "token": data.get("session_token")}, path)
    cp = configparser.ConfigParser()
    try:
        cp.read_string(text)
    except configparser.Error as e:
        raise ClusterError(f"{where(template, 'credentials')}: {path} is neither JSON (.json) nor "
                           f"an AWS credentials file ({str(e).splitlines()[0]})",
                           f"fix {path}") from None
    if not cp.has_section(opts.profile):
        raise ClusterError(f"{where(template, 'profile')}: {path} has no [{opts.profile}] section",
                           _edit_fix(template, "set profile = \"...\" to one of "
                                     + (", ".join(cp.sections()) or "(none)")))
    sec = dict(cp[opts.profile])
    _need(template, "credentials", path, sec, ("aws_access_key_id", "aws_secret_access_key"),
          f"add aws_access_key_id and aws_secret_access_key under [{opts.profile}] in {path}")
    return Creds(f"file {path} [{opts.profile}]", {"key": sec["aws_access_key_id"],
                                                  "secret": sec["aws_secret_access_key"],
                                                  "token": sec.get("aws_session_token")}, path)


def gce_credentials(opts: GCEOptions, template, env=os.environ) -> Creds:
    """A service account's JSON key file: cloud.credentials, else GOOGLE_APPLICATION_CREDENTIALS."""
    p = opts.credentials or env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not p:
        raise ClusterError(
            f"{where(template, 'credentials')}: no GCE credentials (no credentials file named, "
            "GOOGLE_APPLICATION_CREDENTIALS not set)",
            _edit_fix(template, 'set credentials = "~/.config/pushbutton/gce.json" (a service '
                      'account key: gcloud iam service-accounts keys create FILE --iam-account '
                      '...)'))
    path = resolve_path(template, p) if opts.credentials else Path(os.path.expanduser(p))
    key = "credentials" if opts.credentials else "credentials (GOOGLE_APPLICATION_CREDENTIALS)"
    try:
        data = json.loads(_read(template, key, path))
    except ValueError as e:
        raise ClusterError(f"{where(template, key)}: {path} is not valid JSON ({e})",
                           f"give the service account's JSON key file as {key}") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ClusterError(f"{where(template, key)}: {path} is not a service account key "
                           "(its \"type\" is not \"service_account\")",
                           "download a JSON key: gcloud iam service-accounts keys create FILE "
                           "--iam-account NAME@PROJECT.iam.gserviceaccount.com")
    _need(template, key, path, data, ("client_email", "private_key"),
          f"download a new JSON key of the service account; {path} is incomplete")
    project = opts.project or data.get("project_id")
    if not project:
        raise ClusterError(f"{where(template, 'project')}: no project ({path} has no project_id)",
                           _edit_fix(template, 'set project = "my-project"'))
    return Creds(f"file {path}", {"user_id": data["client_email"], "key": str(path),
                                  "project": project}, path)


_OS_ENV = {"auth_url": "OS_AUTH_URL", "username": "OS_USERNAME", "password": "OS_PASSWORD",
           "project_name": "OS_PROJECT_NAME", "user_domain_name": "OS_USER_DOMAIN_NAME",
           "project_domain_id": "OS_PROJECT_DOMAIN_ID", "region_name": "OS_REGION_NAME"}


def openstack_credentials(opts: OpenStackOptions, template, env=os.environ) -> Creds:
    """A JSON file with auth_url, username, password, project_name (and user_domain_name,
    project_domain_id, region_name), else the OS_* variables of an openrc file."""
    if opts.credentials:
        path = resolve_path(template, opts.credentials)
        text = _read(template, "credentials", path)
        if path.suffix in (".yaml", ".yml"):
            raise ClusterError(f"{where(template, 'credentials')}: clouds.yaml is not read",
                               f"write a JSON file with {', '.join(_OS_ENV)} (from your clouds.yaml)"
                               " or source the cloud's openrc file and drop credentials")
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ClusterError(f"{where(template, 'credentials')}: {path} is not valid JSON ({e})",
                               f"fix {path}") from None
        data = data if isinstance(data, dict) else {}
        source = f"file {path}"
    else:
        path = None
        data = {k: env.get(v) for k, v in _OS_ENV.items()}
        data["project_name"] = data["project_name"] or env.get("OS_TENANT_NAME")
        source = "the environment (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME)"
        if not data["auth_url"]:
            raise ClusterError(
                f"{where(template, 'credentials')}: no OpenStack credentials (no credentials file "
                "named, OS_AUTH_URL not set)",
                "source your cloud's openrc file (. project-openrc.sh), or "
                + _edit_fix(template, 'set credentials = "~/.config/pushbutton/openstack.json"'))
    missing = [k for k in ("auth_url", "username", "password", "project_name") if not data.get(k)]
    if missing:
        names = ", ".join(missing if path else (_OS_ENV.get(k, k) for k in missing))
        raise ClusterError(f"{where(template, 'credentials')}: {source} lacks {names}",
                           f"add {names}" + (f" to {path}" if path else " (source your openrc)"))
    return Creds(source, dict(data), path)


CREDENTIALS = {"aws": aws_credentials, "gce": gce_credentials, "openstack": openstack_credentials}


# -- prices ------------------------------------------------------------------------------------
# GB of memory per vCPU of GCE's predefined machine types (the price is per vCPU and per GB)
_GCE_GB_PER_CPU = {"n1": {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}}
_GCE_GB_PER_CPU_DEFAULT = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}
_GCE_TYPE = re.compile(r"^(?P<fam>[a-z][0-9][a-z]?)-(?P<kind>standard|highmem|highcpu)-(?P<n>\d+)$")


def hourly_price(provider: str, size: str, region: str | None) -> float | None:
    """On-demand USD per hour from libcloud's pricing data, None where it does not know."""
    from libcloud.pricing import get_pricing, get_size_price
    try:
        if provider == "aws" and region:
            p = get_size_price("compute", "ec2_linux", size, region)
            return p if p else None        # the data holds 0.0 where a size is not sold there
        if provider == "gce" and region:
            m = _GCE_TYPE.match(size)
            if not m:
                return None
            fam, kind, n = m["fam"], m["kind"], int(m["n"])
            prices = get_pricing("compute", "gce_instances").get(fam, {})
            gb = _GCE_GB_PER_CPU.get(fam, _GCE_GB_PER_CPU_DEFAULT)[kind]
            cpu = prices["cpu"]["on_demand"][region]["price"]
            ram = prices["ram"]["on_demand"][region]["price"]
            return (n * cpu + n * gb * ram) or None
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return None


def pricing_date() -> str:
    import datetime
    from libcloud.pricing import get_pricing_file_path
    try:
        ts = json.loads(Path(get_pricing_file_path()).read_text()).get("updated")
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")
    except (OSError, ValueError, TypeError):
        return "unknown date"
