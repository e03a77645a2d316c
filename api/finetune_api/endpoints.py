"""Endpoints that must never be dialled: cloud metadata services and link-local addresses.

One check, run before any S3 client is built (operator, trainer, adapter agent) and mirrored by
the chart's admission policy (charts/finetune-operator/templates/vap-s3.yaml), so that a URL that
slipped past admission (an older policy, a policy not bound to the namespace) is still refused.
Both refuse the same corpus: tests/e2e/metadata_corpus/endpoints.txt.

The check is a positive grammar, not a block-list of spellings: the host must be a plain ASCII
host name or a canonical IP literal. That rules out in one go the forms HTTP clients and
resolvers turn into 169.254.169.254 although they do not read as it: decimal (2852039166), octal
(0251.0376.0251.0376), hex (0xa9fea9fe), short (169.254.43518), IPv4-mapped IPv6
([::ffff:a9fe:a9fe]), zone literals ([fe80::1%25eth0]), IDNA and full-width dots
(169。254。169。254), trailing dots (metadata.) and user info (http://good@169.254.169.254).
A host name that later resolves to a metadata address is not caught here: the chart's egress
NetworkPolicy denies those ranges at the network.
"""
from __future__ import annotations

import ipaddress
import re

__all__ = ["METADATA_HOSTS", "METADATA_NETWORKS", "UnsafeEndpoint", "refusal", "require_safe"]

# Names the cloud providers' resolvers answer with their metadata address (and any name below them).
METADATA_HOSTS = ("metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com",
                  "instance-data", "instance-data.ec2.internal")
# Refused, never dialled: link-local ranges and the providers' metadata addresses, with the IPv6 spellings that reach
# 169.254.0.0/16 through a translator (NAT64, IPv4-compatible, 6to4).
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "100.100.100.200/32", "fe80::/10", "fd00:ec2::254/128",
    "64:ff9b::a9fe:0/112", "::a9fe:0/112", "2002:a9fe::/32"))

_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_BRACKETED = re.compile(r"^\[([0-9a-f:.]+)\](:[0-9]*)?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UnsafeEndpoint(ValueError):
    """An endpoint that may reach a metadata service or is written in a form that hides its address."""


def _host(url: str) -> tuple[str, bool] | str:
    """(host, is_ipv6_literal), or a refusal."""
    found = _AUTHORITY.match(url)
    if found is None:
        return "it is not a scheme://host URL"
    authority = found.group(1)
    if not authority.isascii():
        return "its host has non-ASCII characters (IDNA or full-width dots); write the ASCII name"
    authority = authority.lower()
    if "@" in authority:
        return "it carries user info (user@host); name the host alone"
    if authority.startswith("["):
        literal = _BRACKETED.match(authority)
        if literal is None:
            return "its IPv6 literal is malformed or has a zone (%); write a plain [address]"
        return literal.group(1), True
    host, _, port = authority.partition(":")
    if port and not port.isdigit():
        return "its port is not a number (IPv6 addresses go in brackets)"
    return host, False


def _address_refusal(host: str, is_ipv6: bool) -> str | None:
    try:
        address = ipaddress.IPv6Address(host) if is_ipv6 else ipaddress.IPv4Address(host)
    except ValueError:
        return "its host is a numeric address in a non-standard form; write a plain IP address or a host name"
    if is_ipv6 and address.ipv4_mapped is not None:
        return "its host is an IPv4-mapped IPv6 address; write the IPv4 address"
    if str(address) != host:
        return f"its address is not in canonical form; write {address}"
    if any(address in net for net in METADATA_NETWORKS if net.version == address.version):
        return "it points at a link-local or cloud metadata address"
    return None


def refusal(url: str) -> str | None:
    """None when `url` may be dialled; otherwise why not, in plain words (never echoes the URL)."""
    parsed = _host(url)
    if isinstance(parsed, str):
        return parsed
    host, is_ipv6 = parsed
    if is_ipv6:
        return _address_refusal(host, True)
    if not _NAME.match(host):
        return "its host is not a plain host name or IP address (no trailing dot, %-escapes or odd characters)"
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        return _address_refusal(host, False)
    if any(host == name or host.endswith("." + name) for name in METADATA_HOSTS):
        return "it names a cloud metadata service"
    return None


def require_safe(url: str | None, what: str = "the S3 endpoint") -> None:
    """Raises UnsafeEndpoint when `url` is set and refused; an unset endpoint (the provider's default) passes."""
    if not url:
        return
    reason = refusal(url)
    if reason is not None:
        raise UnsafeEndpoint(f"{what} is refused: {reason}")
