"""DNS look-ups for the doctor: the system's resolver, or the `[doctor] nameservers` list."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import dns.exception
import dns.nameserver
import dns.resolver

from newsletter.errors import ConfigError


class LookupFailed(Exception):
    """A name server did not answer, or answered SERVFAIL: the record may exist or not."""


def parse_nameserver(value: str, where: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address -> (IP address, port)."""
    text = value.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), value, where)
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, value, where)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:  # a name server given by name: the system resolves it once
        return socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0], port
    except (OSError, UnicodeError):
        raise ConfigError(
            f"{where}: name server {value!r} is not an address (host or host:port)"
        ) from None


def _port(text: str, value: str, where: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise ConfigError(f"{where}: name server {value!r} has a bad port (host:port)")


@dataclass
class Lookup:
    """TXT, MX and address queries that return [] for "no such record" and raise
    LookupFailed when the answer is unknown; every query is counted."""

    nameservers: list[str] = field(default_factory=list)
    timeout: float = 5.0
    where: str = "[doctor] nameservers"
    queries: int = 0

    def __post_init__(self) -> None:
        if self.nameservers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns, self.where))
                for ns in self.nameservers
            ]
        else:
            try:
                self._resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError(
                    f"this system has no DNS resolver configured: set {self.where} "
                    "(or NEWSLETTER_DOCTOR_NAMESERVERS)"
                ) from None
        self._resolver.lifetime = self.timeout
        self._resolver.timeout = self.timeout

    def _answer(self, name: str, rdtype: str):
        self.queries += 1
        try:
            return list(self._resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            raise LookupFailed(
                f"{name} {rdtype}: no name server answered ({_short(exc)})"
            ) from None
        except dns.exception.Timeout:
            raise LookupFailed(
                f"{name} {rdtype}: the name servers did not answer in time"
            ) from None
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"{name} {rdtype}: {_short(exc)}") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record's strings joined, as SPF, DKIM and DMARC read them."""
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in self._answer(name, "TXT")
        ]

    def mx(self, name: str) -> list[tuple[int, str]]:
        return sorted(
            (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))
            for rdata in self._answer(name, "MX")
        )

    def addresses(self, name: str) -> list[str]:
        return [r.address for r in self._answer(name, "A")] + [
            r.address for r in self._answer(name, "AAAA")
        ]


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
