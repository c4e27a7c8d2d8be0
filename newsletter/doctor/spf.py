"""SPF (RFC 7208): find the record, parse it, count its DNS lookups, find the provider in it."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from newsletter.config import is_loopback
from newsletter.doctor.model import Status, Verdict, verdict
from newsletter.doctor.providers import ProviderRules
from newsletter.doctor.resolver import Lookup, LookupFailed

MAX_LOOKUPS = 10  # RFC 7208 4.6.4: more is a permanent error at every receiver
MAX_VOID = 2
_MECHANISMS = {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}
_COUNTED = {"include", "a", "mx", "ptr", "exists"}
_TERM = re.compile(r"^([+\-~?]?)([a-z0-9]+)(?::([^/]*))?(/\d+)?(//\d+)?$", re.I)
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.\-]*)=(.*)$", re.I)


class SpfError(Exception):
    """A record receivers reject as a permanent error (permerror)."""


@dataclass(frozen=True)
class Term:
    qualifier: str
    name: str  # a mechanism, or "redirect"/"exp" and other modifiers
    value: str | None
    cidr: str = ""  # "/24", "/24//64"


@dataclass
class Walk:
    lookups: int = 0
    void: int = 0
    includes: list[str] = field(default_factory=list)  # every domain reached by include/redirect
    networks: list = field(default_factory=list)  # addresses allowed (+) on the way
    notes: list[str] = field(default_factory=list)
    want_networks: bool = False


def parse(record: str) -> list[Term]:
    """The terms after `v=spf1`; SpfError for anything receivers would not read."""
    terms = []
    for word in record.split()[1:]:
        modifier = _MODIFIER.match(word)
        if modifier and ":" not in modifier[1]:
            terms.append(Term("", modifier[1].lower(), modifier[2]))
            continue
        match = _TERM.match(word)
        name = match[2].lower() if match else ""
        if name in ("ip4", "ip6"):
            network = word.lstrip("+-~?").partition(":")[2]
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise SpfError(f"{word!r} is not an address range") from None
            terms.append(Term(word[0] if word[0] in "+-~?" else "+", name, network))
        elif match and name in _MECHANISMS:
            cidr = (match[4] or "") + (match[5] or "")
            terms.append(Term(match[1] or "+", name, match[3], cidr))
        else:
            raise SpfError(f"unknown term {word!r}")
    return terms


def spf_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup.txt(domain) if re.match(r"v=spf1(\s|$)", t, re.I)]


def walk(lookup: Lookup, domain: str, state: Walk, depth: int = 0) -> None:
    """Follow include: and redirect= the way a receiver does, counting what it counts."""
    records = spf_records(lookup, domain)
    if not records:
        state.void += 1
        raise SpfError(f"{domain} has no SPF record")
    if len(records) > 1:
        raise SpfError(f"{domain} has {len(records)} SPF records; receivers need exactly one")
    terms = parse(records[0])
    has_all = any(t.name == "all" for t in terms)
    for term in terms:
        if term.name in _COUNTED or (term.name == "redirect" and not has_all):
            state.lookups += 1
        target = term.value or domain
        if "%" in target:  # macros expand per message: counted, not followed
            state.notes.append(f"{term.name}:{target} uses macros; not followed")
            continue
        if term.name == "ptr":
            state.notes.append("ptr is deprecated (RFC 7208 5.5): use ip4:/ip6: or include:")
        elif term.name in ("include", "redirect") and (term.name == "include" or not has_all):
            state.includes.append(target.lower().rstrip("."))
            if depth < MAX_LOOKUPS and state.lookups <= MAX_LOOKUPS * 3:
                walk(lookup, target, state, depth + 1)
        elif term.qualifier == "+" and state.want_networks:
            _collect(lookup, term, target, state)


def _collect(lookup: Lookup, term: Term, target: str, state: Walk) -> None:
    """The addresses an ip4/ip6/a/mx term allows, for checking an SMTP host against them."""
    v4, _, v6 = term.cidr.lstrip("/").partition("//")
    if term.name in ("ip4", "ip6"):
        state.networks.append(ipaddress.ip_network(term.value, strict=False))
        return
    if term.name == "a":
        hosts = [target]
    elif term.name == "mx":
        hosts = [host for _, host in lookup.mx(target)][:MAX_LOOKUPS]
    else:
        return
    for host in hosts:
        addresses = lookup.addresses(host)
        if not addresses:
            state.void += 1
        for address in addresses:
            ip = ipaddress.ip_address(address)
            bits = (v4 if ip.version == 4 else v6) or str(ip.max_prefixlen)
            state.networks.append(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def check(lookup: Lookup, domain: str, rules: ProviderRules, smtp_host: str) -> Verdict:
    """The SPF verdict for the provider's envelope domain."""
    at = rules.spf_at.format(domain=domain)
    include = rules.spf_include
    wanted = f"include:{include}" if include else f"ip4:<{smtp_host}'s address>"
    state = Walk(want_networks=include is None)
    try:
        records = spf_records(lookup, at)
        if not records:
            return verdict(
                "spf",
                Status.FAIL,
                f"no SPF record at {at}",
                f'publish TXT at {at}: "v=spf1 {wanted} ~all"',
            )
        walk(lookup, at, state)
    except SpfError as exc:
        return verdict(
            "spf",
            Status.FAIL,
            f"SPF at {at}: {exc}",
            "fix the record: receivers reject mail while it is broken",
        )
    except LookupFailed as exc:
        return verdict("spf", Status.FAIL, f"SPF at {at} could not be looked up: {exc}")
    record = records[0]
    count = f"{state.lookups} of {MAX_LOOKUPS} DNS lookups"
    details = [record, *state.notes]
    if state.lookups > MAX_LOOKUPS:
        return verdict(
            "spf",
            Status.FAIL,
            f"SPF at {at} needs {state.lookups} DNS lookups; receivers stop at {MAX_LOOKUPS} (permerror)",
            "drop include:s you no longer send through, or replace them with ip4:/ip6: ranges",
            details=details,
        )
    if re.search(r"(^|\s)\+?all(\s|$)", record, re.I):
        return verdict(
            "spf",
            Status.FAIL,
            f"SPF at {at} ends in +all: anyone may send as {domain}",
            "end the record with ~all or -all",
            details=details,
        )
    if include is None:
        try:
            missing = _smtp_missing(lookup, smtp_host, state)
        except LookupFailed as exc:
            return verdict("spf", Status.FAIL, f"[smtp] host could not be looked up: {exc}")
        if missing is None:
            return verdict(
                "spf",
                Status.SKIP,
                f"SPF at {at} found ({count}); [smtp] host {smtp_host} is local, so which "
                "hosts it relays through is unknown: check their addresses are in the record",
                details=details,
            )
        if missing:
            adds = " ".join(f"ip{ipaddress.ip_address(a).version}:{a}" for a in missing)
            return verdict(
                "spf",
                Status.FAIL,
                f"SPF at {at} does not allow [smtp] host {smtp_host} ({', '.join(missing)})",
                f'add {adds} to the record: "{_with(record, adds)}"',
                details=details,
            )
        return verdict(
            "spf", Status.PASS, f"SPF at {at} allows {smtp_host} ({count})", details=details
        )
    if include.lower() not in state.includes:
        return verdict(
            "spf",
            Status.FAIL,
            f"SPF at {at} does not include {include} ({rules.label})",
            f'publish TXT at {at}: "{_with(record, wanted)}"',
            details=details,
        )
    status = Status.WARN if state.void > MAX_VOID else Status.PASS
    if status is Status.WARN:
        details.append(f"{state.void} look-ups found nothing; receivers may stop after {MAX_VOID}")
    return verdict("spf", status, f"SPF at {at} includes {include} ({count})", details=details)


def _with(record: str, term: str) -> str:
    """The record with a term added before its `all` (or redirect=), where it still counts."""
    words = record.split()
    for i, word in enumerate(words):
        if re.fullmatch(r"[+\-~?]?all|redirect=.*", word, re.I):
            return " ".join([*words[:i], term, *words[i:]])
    return " ".join([*words, term])


def _smtp_missing(lookup: Lookup, host: str, state: Walk) -> list[str] | None:
    """Addresses of the SMTP host that the record does not allow; None for a local host."""
    try:
        if is_loopback(host) or ipaddress.ip_address(host).is_private:
            return None
        addresses = [host]
    except ValueError:
        addresses = lookup.addresses(host)
    found = [ipaddress.ip_address(a) for a in addresses]
    if any(ip.is_private or ip.is_loopback for ip in found):
        return None
    return [str(ip) for ip in found if not any(ip in net for net in state.networks)]
