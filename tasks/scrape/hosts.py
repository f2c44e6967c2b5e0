"""One identity per host: the canonical key every per-host rule uses, and URLs with user info.

A host is (scheme, host, effective port): per-host slots, Crawl-delay, the robots.txt cache and
the Prefect limit names are all keyed by `host_key`, so no spelling of one host (letter case,
user info, an explicit default port, a Unicode or punycode name, a trailing dot, `127.1` for
`127.0.0.1`) buys a page more requests, another robots.txt fetch or another Prefect limit.

The URL is read with urllib3's parser, the one that requests sends with: the key names the host
the request really goes to (`http://a.example\\@b.example/` goes to a.example, not b.example).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from urllib3.util import Url, parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}
# Numeric IPv4 forms the resolver accepts (inet_aton): 127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1.
_IPV4_LIKE = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}")


@dataclass(frozen=True, order=True)
class HostKey:
    """(scheme, lower-case IDNA host name or canonical IP address, effective port)."""

    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`, the port only when not the scheme's default."""
        host = f"[{self.host.replace('%', '%25')}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"

    def __str__(self) -> str:
        return self.origin


def _parse(url: str) -> Url:
    try:
        return parse_url(url.strip())
    except ValueError as e:  # urllib3's LocationParseError: a bad port, an invalid IDNA label
        raise ValueError(str(e)) from None


def canonical_host(host: str) -> str:
    """The one spelling of a host name or address as the resolver will read it."""
    host = host.lower()
    if host.startswith("["):  # an IPv6 literal, zone id included
        return ipaddress.IPv6Address(host[1:-1]).compressed
    host = host.rstrip(".")  # "example.com." is example.com (an absolute DNS name)
    if _IPV4_LIKE.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            pass  # not an address after all (e.g. 1.2.3.4.5): a name, kept as written
    if not host:
        raise ValueError("no host")
    return host


def host_key(url: str) -> HostKey:
    """The canonical host key of an http(s) URL; ValueError (one line) for anything else."""
    parts = _parse(url)
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: scheme {scheme or '(none)'!r}")
    if not parts.host:
        raise ValueError("no host")
    port = parts.port if parts.port is not None else DEFAULT_PORTS[scheme]
    return HostKey(scheme, canonical_host(parts.host), port)


def has_user_info(url: str) -> bool:
    """Whether the URL carries user info (`user:pass@`) that a client would send."""
    try:
        return _parse(url).auth is not None
    except ValueError:
        return "@" in url.partition("//")[2].split("/", 1)[0]  # unparsable: judge by eye


def without_user_info(url: str | None) -> str | None:
    """`url` with its user info removed: what may be stored or logged. Rebuilt only when it has
    user info, so every other URL is kept exactly as the page wrote it."""
    if url is None or not has_user_info(url):
        return url
    try:
        return _parse(url)._replace(auth=None).url
    except ValueError:
        scheme, sep, rest = url.partition("//")
        authority, slash, path = rest.partition("/")
        return scheme + sep + authority.rpartition("@")[2] + slash + path


USER_INFO_REFUSAL = (
    "URL carries user info (user:password@): refused, not sent anywhere "
    "(RFC 9110 section 4.2.4 says to treat it as an error)"
)
