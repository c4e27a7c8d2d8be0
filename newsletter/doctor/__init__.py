"""`newsletter doctor`: is the from_email domain set up for bulk mail through this provider?

run() checks everything (DNS, the one-click POST); cheap_checks() is the part without network
that `send` runs. The record grammars are a thin layer over dnspython (see spf, dkim, dmarc).
"""

from __future__ import annotations

from newsletter.doctor import mail, state, unsubscribe
from newsletter.doctor.model import Report, Status, Verdict
from newsletter.doctor.providers import RULES, rules_for

__all__ = ["RULES", "Report", "Status", "Verdict", "cheap_checks", "run", "send_notes"]


def run(config, provider: str) -> Report:
    """Every rule for the from domain and the provider, in the order the README lists them."""
    # Here, not at the top: `send` imports this package for cheap_checks and needs none of them.
    from newsletter.doctor import dkim, dmarc, spf
    from newsletter.doctor.resolver import Lookup

    settings = config.doctor
    rules = rules_for(provider, settings.dkim_selectors)
    lookup = Lookup(settings.nameservers, settings.timeout)
    domain = config.sender_domain.lower()
    verdicts = [
        spf.check(lookup, domain, rules, config.smtp.host),
        dkim.check(lookup, domain, rules),
        dmarc.check(lookup, domain, rules),
        unsubscribe.check(config, lookup, settings.serve_url, settings.timeout),
        mail.check_mx(lookup, config.from_email, config.reply_to),
        mail.postal_address(config.postal_address),
    ]
    wrong_domain = mail.from_domain(config.from_email)
    if wrong_domain:
        verdicts.insert(0, wrong_domain)
    report = Report(domain, provider, verdicts)
    if report.passed:
        state.record_pass(config.state_dir, domain, provider)
    return report


def cheap_checks(config) -> list[Verdict]:
    """The rules that need no network: failures only."""
    found = [
        mail.from_domain(config.from_email),
        unsubscribe.check_url(config.base_url),
        mail.postal_address(config.postal_address),
    ]
    return [v for v in found if v is not None and v.status is Status.FAIL]


def send_notes(config, provider: str) -> list[str]:
    """What `send` says before it asks: cheap failures, and the doctor if it never passed."""
    if provider == "outbox":  # nothing leaves the machine: no domain is judged yet
        return []
    notes = [f"Doctor:     {v.summary} ({'; '.join(v.fix)})" for v in cheap_checks(config)]
    if not state.has_passed(config.state_dir, config.sender_domain, provider):
        notes.append(
            f"Doctor:     `newsletter doctor` has never passed for {config.sender_domain} with "
            f"{provider}: run it before a first send (Gmail, Yahoo and Outlook reject bulk mail "
            "without SPF, DKIM, DMARC and one-click unsubscribe)"
        )
    return notes
