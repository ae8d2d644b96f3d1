"""Which network addresses jobengine may connect to on a user's behalf (server-side request
forgery): public addresses only, plus an operator's allow list.

:func:`address_refusal` names why an address is not public (loopback, private, link-local,
site-local, multicast, reserved, unspecified, or otherwise not global), IPv4 and IPv6 alike,
including IPv4 addresses carried inside IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo,
NAT64). :class:`AddressPolicy` adds the exceptions of an allow list
(``JOBENGINE_UPLOAD_ALLOWED_HOSTS`` for UploadUrlsJob, ``JOBENGINE_CALLBACK_ALLOWED_HOSTS`` for
completion callbacks): host names, ``host:port``, IP addresses or CIDRs. :mod:`jobengine.net.fetch`
applies it to every address a URL's host resolves to, and again after each redirect.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from jobengine.errors import ConfigurationError

__all__ = ["AddressPolicy", "IPAddress", "IPNetwork", "address_refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why an address may not be fetched from (``"loopback"``, ``"private"``...), or None when
    it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            why = address_refusal(inner)
            if why is not None:
                return f"{why} (IPv4 {inner} inside IPv6)"
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not public", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("unbalanced brackets")
        return host, int(rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be fetched: public ones, plus the allow list's exceptions."""

    hosts: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(
        cls, entries: Iterable[str], setting: str = "JOBENGINE_UPLOAD_ALLOWED_HOSTS"
    ) -> AddressPolicy:
        """The policy of an allow list's entries (``setting`` names it in errors);
        ConfigurationError for a malformed one."""
        hosts: set[tuple[str, int | None]] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                host, port = _split_host_port(entry)
                if not host or (port is not None and not 0 < port < 65536):
                    raise ValueError("bad host or port")
                key = _host_key(host)
                with contextlib.suppress(ValueError):  # an IP address in its canonical form
                    key = str(ipaddress.ip_address(key))
                hosts.add((key, port))
            except ValueError as exc:
                raise ConfigurationError(
                    f"{setting}: {entry!r} is not a host, host:port or CIDR ({exc})"
                ) from None
        return cls(frozenset(hosts), tuple(networks))

    def _listed(self, key: str, port: int) -> bool:
        return (key, None) in self.hosts or (key, port) in self.hosts

    def allowed(self, host: str, port: int, address: IPAddress) -> bool:
        """Whether the allow list names this host, this address or a network holding it."""
        if self._listed(_host_key(host), port) or self._listed(str(address), port):
            return True
        return any(address.version == net.version and address in net for net in self.networks)

    def refusal(self, host: str, port: int, address: IPAddress) -> str | None:
        """Why ``host`` at ``address`` may not be fetched from, or None."""
        if self.allowed(host, port, address):
            return None
        return address_refusal(address)
