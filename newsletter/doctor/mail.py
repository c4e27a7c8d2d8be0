"""Rules about the addresses themselves: replies can arrive (MX, else A), a postal address,
a from domain the publisher controls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.doctor.model import Status, Verdict, verdict

if TYPE_CHECKING:  # dnspython is imported by the doctor's lookups: `send` needs none of it
    from newsletter.doctor.resolver import Lookup

# Their DMARC policies reject mail with their domain in From: that they did not send themselves.
MAILBOX_DOMAINS = {
    "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "outlook.com", "hotmail.com",
    "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "gmx.com", "gmx.de", "web.de",
    "proton.me", "protonmail.com", "yandex.ru", "mail.ru",
}  # fmt: skip


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def from_domain(address: str) -> Verdict | None:
    """A failure when from_email is at a mailbox provider; None when the domain is the sender's."""
    domain = domain_of(address)
    if domain not in MAILBOX_DOMAINS:
        return None
    return verdict(
        "from_domain",
        Status.FAIL,
        f"from_email is at {domain}, whose DMARC policy rejects mail it did not send itself",
        "send from an address at a domain you control and set from_email to it",
    )


def postal_address(value: str | None) -> Verdict:
    if value and value.strip():
        return verdict("postal_address", Status.PASS, "postal address present")
    return verdict(
        "postal_address",
        Status.FAIL,
        "no postal address: bulk mail must carry the sender's (CAN-SPAM, many mailbox providers)",
        'set postal_address = "..." in newsletter.toml',
    )


def receives(lookup: Lookup, address: str, setting: str) -> tuple[Status, str]:
    """Whether mail to `address` can arrive: MX records, else (RFC 5321 5.1) an A/AAAA record."""
    from newsletter.doctor.resolver import LookupFailed

    domain = domain_of(address)
    try:
        hosts = lookup.mx(domain)
        if hosts == [(0, "")] or hosts == [(0, ".")]:
            return (
                Status.FAIL,
                f"{setting} {address}: {domain} publishes a null MX (accepts no mail)",
            )
        if hosts:
            return Status.PASS, f"{setting} {address}: MX {', '.join(h for _, h in hosts)}"
        addresses = lookup.addresses(domain)
    except LookupFailed as exc:
        return Status.FAIL, f"{setting} {address}: could not be looked up ({exc})"
    if addresses:
        return Status.PASS, f"{setting} {address}: no MX, mail goes to {domain}'s A record"
    return Status.FAIL, f"{setting} {address}: {domain} has no MX and no A record"


def check_mx(lookup: Lookup, from_email: str, reply_to: str | None) -> Verdict:
    """Replies must arrive: MX (or A) for the from domain and the reply-to domain."""
    results = [receives(lookup, from_email, "from_email")]
    if reply_to and domain_of(reply_to) != domain_of(from_email):
        results.append(receives(lookup, reply_to, "reply_to"))
    failed = [line for status, line in results if status is Status.FAIL]
    if failed:
        return verdict(
            "mx",
            Status.FAIL,
            "; ".join(failed),
            "publish an MX record for the domain (replies and bounces are lost without one)",
            details=[line for _, line in results],
        )
    return verdict("mx", Status.PASS, "; ".join(line for _, line in results))
