"""`newsletter doctor`: SPF, DKIM, DMARC, one-click unsubscribe, MX and postal address."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load, plural
from newsletter.errors import ExitCode

LABELS = {"pass": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def doctor(
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            "-p",
            help="sendgrid, ses, postmark, mailgun, resend or smtp ([send] provider).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Check that the from_email domain may send bulk mail through the provider, and what to fix.

    Example: newsletter doctor --provider sendgrid
    """
    from newsletter import doctor as library

    cfg = load(config)
    report = library.run(cfg, provider or cfg.send.provider)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        show(report)
    raise typer.Exit(int(ExitCode.OK if report.passed else ExitCode.NOT_READY))


def show(report) -> None:
    from newsletter.doctor import RULES

    typer.echo(f"{report.domain}, sending with {RULES[report.provider].label}:")
    counts: dict[str, int] = {}
    for verdict in report.verdicts:
        status = str(verdict.status)
        counts[status] = counts.get(status, 0) + 1
        typer.echo(f"  {LABELS[status]}  {verdict.rule:<15} {verdict.summary}")
        for fix in verdict.fix:
            typer.echo(f"        {'':<15} -> {fix}")
    parts = [plural(counts.get("pass", 0), "rule") + " passed"]
    parts += [f"{counts[s]} {word}" for s, word in (("fail", "failed"), ("warn", "warned"),
              ("skip", "not checked")) if counts.get(s)]  # fmt: skip
    verdict = "ready to send" if report.passed else "not ready: fix what FAILed, then run it again"
    typer.echo(f"{', '.join(parts)}: {verdict}.")
