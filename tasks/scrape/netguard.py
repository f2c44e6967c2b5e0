"""Server-side request forgery protection: which addresses the scraper may connect to."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from storage.errors import BlockedAddressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# An address policy returns why an address must not be contacted, or None when it may be.
AddressPolicy = Callable[[IPAddress], str | None]


def private_address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (loopback, private, link-local, ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def address_refusal(host: str, port: int, policy: AddressPolicy | None) -> str | None:
    """Check every address `host` resolves to; a name that resolves nowhere is not refused
    here (the request then fails as a connection error, with the resolver's message)."""
    if policy is None:
        return None
    try:
        addresses = resolve(host, port)
    except (OSError, ValueError):
        return None
    for ip in addresses:
        if reason := policy(ip):
            return f"{host}: {reason} (allow_private_networks is off)"
    return None


def _guarded(connection_cls: type, policy: AddressPolicy) -> type:
    """A urllib3 connection class that checks the peer of every socket it opens, so a DNS
    answer that changes between our check and the connect (rebinding) is still refused."""

    class Guarded(connection_cls):
        def _new_conn(self):  # type: ignore[no-untyped-def]
            sock = super()._new_conn()
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            if reason := policy(peer):
                sock.close()
                raise BlockedAddressError(f"{self.host}: {reason} (allow_private_networks is off)")
            return sock

    return Guarded


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose direct connections go through the address policy."""

    def __init__(self, policy: AddressPolicy, **kwargs) -> None:
        self._policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        http = type("GuardedHTTPPool", (HTTPConnectionPool,), {})
        http.ConnectionCls = _guarded(HTTPConnection, self._policy)
        https = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {})
        https.ConnectionCls = _guarded(HTTPSConnection, self._policy)
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}
