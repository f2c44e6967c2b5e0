"""Server-side request forgery protection: which addresses the scraper may connect to."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from storage.errors import BlockedAddressError
from tasks.scrape.deadline import DeadlineConnectionMixin
from tasks.scrape.urllib3_compat import NewSocketHook

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# An address policy returns why an address must not be contacted, or None when it may be.
AddressPolicy = Callable[[IPAddress], str | None]


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: the operator's own translators


def private_address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (loopback, private, link-local, ...), or None.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by the
    IPv4 address they lead to: 2002:7f00:1:: is a way to say 127.0.0.1.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if reason := _embedded_refusal(ip):
            return reason
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # public IPv4 through NAT64: fine
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def _embedded_refusal(ip: ipaddress.IPv6Address) -> str | None:
    """Why an IPv6 address that embeds an IPv4 one leads somewhere private, or None."""
    if ip in NAT64_LOCAL:
        return f"{ip} is a local-use NAT64 address (RFC 8215)"
    embedded: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip in NAT64:
        embedded.append(("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip.sixtofour is not None:
        embedded.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        embedded += [("Teredo server", server), ("Teredo client", client)]
    for form, v4 in embedded:
        if reason := private_address_refusal(v4):
            return f"{ip} is a {form} form of {v4}: {reason}"
    return None


def refusal_of(host: str, reason: str) -> str:
    """The blocked row's text: the host once (`127.0.0.1 is a loopback address`), or the name
    and the address it resolved to (`localhost: ::1 is a loopback address`); and the setting."""
    said = reason if reason.startswith(f"{host.strip('[]')} ") else f"{host}: {reason}"
    return f"{said} (allow_private_networks is off)"


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def address_refusal(
    host: str, port: int, policy: AddressPolicy | None, must_resolve: bool = False
) -> str | None:
    """Check every address `host` resolves to. A name that resolves nowhere is refused only
    when `must_resolve` (through a proxy, which would resolve it where we cannot check);
    directly, the request then fails as a connection error, with the resolver's message."""
    if policy is None:
        return None
    try:
        addresses = resolve(host, port)
    except (OSError, ValueError) as e:
        if must_resolve:
            return f"{host}: its address cannot be checked here ({e}), and a proxy would reach it"
        return None
    for ip in addresses:
        if reason := policy(ip):
            return refusal_of(host, reason)
    return None


def _connection_class(base: type, policy: AddressPolicy | None) -> type:
    """A urllib3 connection class whose sockets live under the request's deadline and, with
    a policy, check their peer: a DNS answer that changes between our check and the connect
    (rebinding) is still refused, and so is a proxy on a refused address."""

    class Guarded(DeadlineConnectionMixin, NewSocketHook, base):
        def on_new_socket(self, sock: socket.socket) -> None:
            if policy is None:
                return
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            if reason := policy(peer):  # the hook closes the socket: nothing was sent
                raise BlockedAddressError(refusal_of(self.host, reason))

    return Guarded


def _pool_classes(policy: AddressPolicy | None) -> dict[str, type]:
    http = type("GuardedHTTPPool", (HTTPConnectionPool,), {})
    http.ConnectionCls = _connection_class(HTTPConnection, policy)
    https = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {})
    https.ConnectionCls = _connection_class(HTTPSConnection, policy)
    return {"http": http, "https": https}


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose every connection, direct or to a proxy, goes through the address
    policy (when there is one) and the request's deadline."""

    def __init__(self, policy: AddressPolicy | None, **kwargs) -> None:
        self._policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._policy)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs):  # type: ignore[no-untyped-def]
        if proxy.lower().startswith("socks"):
            # Its connections are made by PySocks, which this guard cannot see into.
            raise BlockedAddressError(f"SOCKS proxies are not supported: {proxy}")
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # The sockets to the proxy: without this, a proxy bypassed the guard and the deadline.
        manager.pool_classes_by_scheme = _pool_classes(self._policy)
        return manager
