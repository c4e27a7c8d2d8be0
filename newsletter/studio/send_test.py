"""The studio's "Send test" button: a [TEST] copy to [send] test_to, and what happened."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import Config
from newsletter.errors import ConfigError


def send_test(config: Config, issue_path: Path, as_email: str | None) -> str:
    """A [TEST] copy to [send] test_to through the configured provider; what happened."""
    from newsletter import sending

    test_to = list(config.send.test_to)
    if not test_to:
        raise ConfigError(
            'no test addresses: set [send] test_to = ["you@example.org"] in newsletter.toml'
        )
    sent = sending.send(config, issue_path, test_to=test_to, as_email=as_email)
    provider, summary = sent.prepared.provider, sent.summary
    if summary.sent == len(test_to):
        return f"Sent a test to {', '.join(test_to)} via {provider}"
    failures = "; ".join(f"{email}: {reason}" for email, reason in summary.failures)
    return f"Sent {summary.sent} of {len(test_to)} test(s) via {provider}" + (
        f"; failed: {failures}" if failures else ""
    )
