"""DMARC as RFC 9989 has it: the record at _dmarc (or found by the DNS tree walk), its tags,
and whether the provider's mail can align with the from domain."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.doctor.dkim import tags
from newsletter.doctor.model import Status, Verdict, verdict
from newsletter.doctor.providers import ProviderRules, envelope_alignment
from newsletter.doctor.resolver import Lookup, LookupFailed

POLICIES = {"none", "quarantine", "reject"}
MODES = {"r", "s"}
_VALUES = {"p": POLICIES, "sp": POLICIES, "np": POLICIES, "adkim": MODES, "aspf": MODES}
_VALUES |= {"t": {"y", "n"}, "psd": {"y", "n", "u"}}
REMOVED = {"pct": "use t=y while testing a policy", "rf": "", "ri": ""}  # RFC 9989 dropped these
MAX_WALK = 8  # RFC 9989 4.10: the tree walk asks for at most eight names


@dataclass(frozen=True)
class Found:
    name: str  # the domain whose _dmarc record applies
    record: str
    fields: dict[str, str]
    organizational: str  # the organizational domain the walk found


def dmarc_records(lookup: Lookup, domain: str) -> list[str]:
    return [t for t in lookup.txt(f"_dmarc.{domain}") if t.replace(" ", "").startswith("v=DMARC1")]


def discover(lookup: Lookup, domain: str) -> Found | str | None:
    """The record that applies to mail from `domain` (RFC 9989 tree walk), a problem, or None."""
    labels = domain.lower().rstrip(".").split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)][:MAX_WALK]
    found: list[tuple[str, str]] = []
    for name in names:
        records = dmarc_records(lookup, name)
        if len(records) > 1:
            if not found:
                return f"_dmarc.{name} has {len(records)} DMARC records; receivers ignore them all"
            continue
        if records:
            found.append((name, records[0]))
            psd = tags(records[0]).get("psd")
            if psd in ("y", "n"):
                break
    if not found:
        return None
    name, record = found[0]
    organizational = found[-1][0]
    if tags(found[-1][1]).get("psd") == "y" and len(found) > 1:
        organizational = found[-2][0]
    return Found(name, record, tags(record), organizational)


def problems(found: Found) -> tuple[list[str], list[str]]:
    """(errors, warnings) in a record's tags."""
    errors, warnings = [], []
    if found.record.split(";")[0].strip() != "v=DMARC1":
        errors.append("v=DMARC1 must come first, followed by ;")
    if "p" not in found.fields:
        errors.append("p= is missing: it must be none, quarantine or reject")
    for key, allowed in _VALUES.items():
        value = found.fields.get(key)
        if value is not None and value.lower() not in allowed:
            errors.append(f"{key}={value} is not one of {', '.join(sorted(allowed))}")
    for key, advice in REMOVED.items():
        if key in found.fields:
            then = f"; {advice}" if advice else ""
            warnings.append(
                f"{key}= is not part of DMARC since RFC 9989 and is ignored: remove it{then}"
            )
    return errors, warnings


def alignment(found: Found, domain: str, rules: ProviderRules) -> tuple[Status, str]:
    """Whether the provider's DKIM signature and envelope can align with the from domain."""
    aspf = found.fields.get("aspf", "r").lower()
    where = envelope_alignment(rules)
    envelope = rules.envelope.format(domain=domain)
    dkim = f"DKIM aligns (d={domain})"
    if where == "same" or (where == "sub" and aspf == "r"):
        return Status.PASS, f"{dkim} and SPF aligns (envelope {envelope}, aspf={aspf})"
    why = (
        "aspf=s needs the envelope domain to be the from domain"
        if where == "sub"
        else (f"the envelope domain is {envelope}")
    )
    return Status.WARN, f"{dkim}; SPF cannot align ({why}), so DMARC rests on DKIM alone"


def check(lookup: Lookup, domain: str, rules: ProviderRules) -> Verdict:
    """The DMARC verdict for the from domain."""
    suggested = f'publish TXT at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"'
    try:
        found = discover(lookup, domain)
    except LookupFailed as exc:
        return verdict("dmarc", Status.FAIL, f"DMARC could not be looked up: {exc}")
    if found is None:
        return verdict("dmarc", Status.FAIL, f"no DMARC record at _dmarc.{domain}", suggested)
    if isinstance(found, str):
        return verdict("dmarc", Status.FAIL, found, "keep one record")
    at = f"_dmarc.{found.name}"
    inherited = f" (inherited from {at})" if found.name != domain else ""
    errors, warnings = problems(found)
    details = [found.record, f"organizational domain: {found.organizational}"]
    if errors:
        return verdict(
            "dmarc",
            Status.FAIL,
            f"DMARC at {at}: {'; '.join(errors)}",
            f'fix the record, e.g. "v=DMARC1; p=none; rua=mailto:dmarc@{found.organizational}"',
            details=details,
        )
    policy = found.fields["p"].lower()
    if inherited:
        policy = found.fields.get("sp", policy).lower()
    status, aligned = alignment(found, domain, rules)
    summary = f"DMARC p={policy}{inherited}; {aligned}"
    if warnings:
        return verdict("dmarc", Status.WARN, summary, *warnings, details=details)
    return verdict("dmarc", status, summary, details=details)
