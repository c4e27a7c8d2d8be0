"""Personalised messages built per second: Campaign.message().as_bytes() against a naive loop.

The naive loop is what one would write with the standard library alone: per recipient,
Rendered.personalize() and an email.message.EmailMessage with set_content/add_alternative.

Run: python benchmarks/bench_messages.py [--recipients N] [--naive N]
"""

from __future__ import annotations

import argparse
import secrets
import time
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, localtime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"


def recipients(count: int) -> list[dict[str, str]]:
    return [
        {"email": f"reader{n}@example.org", "first_name": f"Reader{n}", "company": "Engines & <Co>"}
        for n in range(count)
    ]


def fast(campaign, people) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    for person in people:
        address = person["email"]
        total += len(campaign.message(address, address, person, person["first_name"]).as_bytes())
    return time.perf_counter() - start, total


def naive(campaign, people) -> tuple[float, int]:
    config, rendered = campaign.config, campaign.rendered
    start = time.perf_counter()
    total = 0
    for person in people:
        address = person["email"]
        url, mailto = campaign.unsubscribe_links(address)
        filled = rendered.personalize(person, url or mailto)
        message = EmailMessage()
        message["From"] = formataddr((config.from_name or config.name, config.from_email))
        message["To"] = formataddr((person["first_name"], address))
        message["Subject"] = filled.subject
        message["Date"] = format_datetime(localtime())
        message["Message-ID"] = f"<{secrets.token_hex(16)}@{config.sender_domain}>"
        message["List-Unsubscribe"] = f"<{url}>, <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(filled.text)
        message.add_alternative(filled.html, subtype="html")
        total += len(message.as_bytes())
    return time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument(
        "--naive", type=int, default=500, help="recipients for the (slow) naive loop"
    )
    args = parser.parse_args()

    from newsletter.config import load_config
    from newsletter.issue import load_issue
    from newsletter.message import Campaign
    from newsletter.render import Renderer

    config = load_config(REPO / "newsletter.toml", env={})
    rendered = Renderer(config).render(load_issue(SAMPLE))
    campaign = Campaign(config, rendered, "main", secret=b"s" * 32)
    people = recipients(args.recipients)
    fast(campaign, people[:100])  # warm caches (campaign parts, header encodings)

    fast_time, fast_bytes = fast(campaign, people)
    naive_people = people[: args.naive]
    naive_time, naive_bytes = naive(campaign, naive_people)
    fast_rate = len(people) / fast_time
    naive_rate = len(naive_people) / naive_time
    print(f"sample issue: {SAMPLE.name}")
    print(
        f"Campaign.message().as_bytes(): {len(people):>6} messages in {fast_time:6.2f} s "
        f"= {fast_rate:9.0f} msg/s ({fast_bytes / len(people) / 1024:.1f} KiB each)"
    )
    print(
        f"naive EmailMessage loop:       {len(naive_people):>6} messages in {naive_time:6.2f} s "
        f"= {naive_rate:9.0f} msg/s ({naive_bytes / len(naive_people) / 1024:.1f} KiB each)"
    )
    print(f"ratio: {fast_rate / naive_rate:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()
