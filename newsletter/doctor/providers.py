"""What each mail provider needs in DNS: its SPF include, DKIM selectors and envelope domain.

Names here are the doctor's, not only the `send` providers': a domain can be made ready for a
provider before this project can send through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.errors import UsageError


@dataclass(frozen=True)
class ProviderRules:
    name: str
    label: str
    spf_include: str | None  # None: the SMTP host's own addresses must be allowed
    dkim_selectors: tuple[str, ...]  # under the from domain; () = the user must name them
    dkim_all: bool  # every selector must publish a key (rotation pairs), else any one will do
    # The Return-Path domain the provider uses: "{domain}..." is the from domain itself,
    # "x.{domain}" a name under it (aligned for relaxed SPF only), anything else a foreign domain.
    envelope: str
    setup: str  # where the provider shows the records to publish
    spf_at: str = "{domain}"  # where the provider's SPF record lives


RULES: dict[str, ProviderRules] = {
    rules.name: rules
    for rules in (
        ProviderRules(
            "sendgrid",
            "SendGrid",
            "sendgrid.net",
            ("s1", "s2"),
            dkim_all=True,
            envelope="em1234.{domain}",
            setup="SendGrid: Settings > Sender Authentication > Authenticate Your Domain",
        ),
        ProviderRules(
            "ses",
            "Amazon SES",
            "amazonses.com",
            (),
            dkim_all=True,
            envelope="amazonses.com",  # unless a custom MAIL FROM domain is set
            setup="SES console: Identities > your domain > Easy DKIM (three CNAME tokens)",
        ),
        ProviderRules(
            "postmark",
            "Postmark",
            "spf.mtasv.net",
            ("pm",),
            dkim_all=False,
            envelope="pm-bounces.{domain}",
            setup="Postmark: Sender Signatures > your domain > DNS settings",
        ),
        ProviderRules(
            "mailgun",
            "Mailgun",
            "mailgun.org",
            ("smtp", "mx", "krs", "k1"),
            dkim_all=False,
            envelope="{domain}",
            setup="Mailgun: Sending > Domains > your domain > DNS records",
        ),
        ProviderRules(
            "resend",
            "Resend",
            "amazonses.com",
            ("resend",),
            dkim_all=True,
            envelope="send.{domain}",
            setup="Resend: Domains > your domain > DNS Records",
            spf_at="send.{domain}",
        ),
        ProviderRules(
            "smtp",
            "your SMTP server",
            None,
            (),
            dkim_all=True,
            envelope="{domain}",
            setup="your SMTP server's DKIM signing settings",
        ),
    )
}


def rules_for(name: str, selectors: list[str]) -> ProviderRules:
    """The rules for a provider; `[doctor] dkim_selectors` replaces its selectors."""
    if name == "outbox":
        raise UsageError(
            "the outbox delivers nothing, so there is no sending domain to check: "
            f"pass --provider ({', '.join(RULES)}) or set [send] provider"
        )
    try:
        rules = RULES[name]
    except KeyError:
        raise UsageError(
            f"the doctor knows no provider {name!r} (known: {', '.join(RULES)})"
        ) from None
    if selectors:
        from dataclasses import replace

        rules = replace(rules, dkim_selectors=tuple(selectors), dkim_all=True)
    return rules


def envelope_alignment(rules: ProviderRules) -> str:
    """ "same", "sub" or "foreign": where the provider's envelope domain stands to the from domain."""
    if rules.envelope.startswith("{domain}"):
        return "same"
    return "sub" if "{domain}" in rules.envelope else "foreign"
