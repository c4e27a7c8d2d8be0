"""A DNS server on loopback (UDP and TCP, one free port) that answers from a zone file."""

from __future__ import annotations

import socket
from pathlib import Path

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):
    """Answers for every name in the zone, follows CNAMEs inside it, NXDOMAIN for the rest."""

    def __init__(self, text: str) -> None:
        self.records: dict[str, list[RR]] = {}
        for rr in RR.fromZone(text):
            self.records.setdefault(str(rr.rname).lower(), []).append(rr)
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request, handler):
        reply = request.reply()
        qtype = QTYPE[request.q.qtype]
        name = str(request.q.qname).lower()
        self.queries.append((name, qtype))
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for _ in range(8):  # a CNAME chain, as a recursive server hands it to a stub resolver
            rrs = self.records.get(name, [])
            matched = [rr for rr in rrs if QTYPE[rr.rtype] == qtype]
            cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if matched or not cnames or qtype == "CNAME":
                for rr in matched:
                    reply.add_answer(rr)
                break
            reply.add_answer(cnames[0])
            name = str(cnames[0].rdata.label).lower()
        return reply


class LoopbackDNS:
    """`with LoopbackDNS(zone_file) as dns:` then point a resolver at dns.address."""

    def __init__(self, zone: Path) -> None:
        self.resolver = ZoneResolver(zone.read_text(encoding="utf-8"))
        self.servers: list[DNSServer] = []

    def __enter__(self) -> LoopbackDNS:
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for _ in range(20):  # a port free for UDP may be taken for TCP: try another
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
            try:
                for tcp in (False, True):
                    self.servers.append(
                        DNSServer(self.resolver, "127.0.0.1", self.port, tcp=tcp, logger=quiet)
                    )
                break
            except OSError:
                for server in self.servers:
                    server.server.server_close()
                self.servers = []
        else:
            raise RuntimeError("no free port for the loopback DNS server")
        for server in self.servers:
            server.start_thread()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()
