"""DKIM (RFC 6376): each provider selector publishes a usable key under the from domain."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from newsletter.doctor.model import Status, Verdict, verdict
from newsletter.doctor.providers import ProviderRules
from newsletter.doctor.resolver import Lookup, LookupFailed

MIN_BITS = 1024  # Gmail's and Yahoo's bulk sender rules


def tags(record: str) -> dict[str, str]:
    """`k=v; k=v` (DKIM and DMARC share the grammar), keys lower case, blanks removed."""
    found = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            found.setdefault(key.strip().lower(), "".join(value.split()))
    return found


def key_problem(record: str) -> tuple[str | None, str]:
    """(what is wrong or None, a description of the key) for one DKIM key record."""
    fields = tags(record)
    if fields.get("v", "DKIM1") != "DKIM1":
        return f"v={fields['v']} is not DKIM1", ""
    if "p" not in fields:
        return "the record has no p= key", ""
    if not fields["p"]:
        return "the key is revoked (empty p=)", ""
    kind = fields.get("k", "rsa").lower()
    try:
        der = base64.b64decode(fields["p"], validate=True)
    except (binascii.Error, ValueError):
        return "p= is not base64", ""
    if kind == "ed25519":
        return (None, "ed25519") if len(der) == 32 else ("p= is not an ed25519 key", "")
    if kind != "rsa":
        return f"k={kind} is not a key type receivers know", ""
    try:  # SubjectPublicKeyInfo, or the bare PKCS#1 key some publish
        key = load_der_public_key(der)
    except ValueError:
        return "p= is not an RSA public key", ""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return None, "ed25519"
    if not isinstance(key, rsa.RSAPublicKey):
        return "p= is not an RSA public key", ""
    if key.key_size < MIN_BITS:
        return f"the key has {key.key_size} bits; receivers want {MIN_BITS} or more", ""
    return None, f"{key.key_size}-bit RSA"


def check(lookup: Lookup, domain: str, rules: ProviderRules) -> Verdict:
    """The DKIM verdict: every selector (or, for some providers, any one) has a good key."""
    if not rules.dkim_selectors:
        return verdict(
            "dkim",
            Status.FAIL,
            f"no DKIM selector known for {rules.label}",
            f"publish the DKIM records from {rules.setup}, then name their selectors in "
            '[doctor] dkim_selectors = ["..."]',
        )
    good, bad = [], []
    for selector in rules.dkim_selectors:
        name = f"{selector}._domainkey.{domain}"
        try:
            records = [r for r in lookup.txt(name) if "p=" in r]
        except LookupFailed as exc:
            bad.append(f"{name}: could not be looked up ({exc})")
            continue
        if not records:
            bad.append(f"{name}: no key published")
            continue
        if len(records) > 1:
            bad.append(f"{name}: {len(records)} key records; publish exactly one")
            continue
        problem, described = key_problem(records[0])
        if problem:
            bad.append(f"{name}: {problem}")
        else:
            good.append(f"{name}: {described}")
    ok = not bad if rules.dkim_all else bool(good)
    if ok:
        return verdict("dkim", Status.PASS, "DKIM " + "; ".join(good), details=bad)
    shown = bad if rules.dkim_all else [b for b in bad if "no key published" not in b] or bad
    return verdict(
        "dkim",
        Status.FAIL,
        "DKIM " + "; ".join(shown),
        f"publish the DKIM records from {rules.setup} (keys of {MIN_BITS} bits or more, "
        "2048 recommended)",
        details=good,
    )
