"""figures.compute as a pure function of rows: attribution and every provider's event names."""

from __future__ import annotations

from newsletter.report.figures import compute
from newsletter.report.read import Recipient, Rows, Stored


def rows(events=(), web=(), later=()) -> Rows:
    recipients = [
        Recipient("main", "a@example.org", "sent", "2026-01-01T10:00:00.000000Z"),
        Recipient("main", "b@example.org", "sent", "2026-01-01T10:00:00.000000Z"),
        Recipient("main", "c@example.org", "failed", None, "550 refused"),
    ]
    return Rows("first", recipients, list(events), list(web), list(later), [])


def web_unsubscribe(email: str, at: str) -> Stored:
    return Stored("web", "unsubscribe", email, "main", None, at, {"via": "one-click"})


def test_a_web_unsubscribe_counts_for_the_last_issue_sent_to_that_address_before_it():
    report = compute(
        rows(
            web=[
                web_unsubscribe("a@example.org", "2026-01-02T09:00:00+00:00"),
                web_unsubscribe("b@example.org", "2026-01-09T09:00:00+00:00"),
            ],
            # b got the next issue on the 8th: their unsubscribe on the 9th is that one's
            later=[("b@example.org", "second", "2026-01-08T10:00:00.000000Z")],
        )
    )
    assert report.total.unsubscribed_web == 1
    assert report.total.ledger["sent"] == 2 and report.total.ledger["failed"] == 1


def event(source: str, name: str, email: str, **payload) -> Stored:
    return Stored(source, name, email, "main", "first", "2026-01-01T10:05:00+00:00", payload)


def test_every_providers_bounce_complaint_and_delivery_names_are_counted_alike():
    events = [
        event("postmark", "Delivery", "a@example.org"),
        event("postmark", "Bounce:HardBounce", "b@example.org", Description="no such user"),
        event("ses", "Bounce:Transient", "a@example.org", bounceSubType="MailboxFull"),
        event("mailgun", "failed:permanent", "c@example.org"),
        event("mailgun", "complained", "a@example.org"),
        event("resend", "email.delivered", "b@example.org"),
        event("ses", "Open", "a@example.org", ip="17.58.1.1"),  # Apple's proxy
        event(
            "mailgun",
            "clicked",
            "b@example.org",
            url="https://x.example/",
            **{"client-info": {"bot": "generic"}},
        ),  # fmt: skip
    ]
    report = compute(rows(events))
    t = report.total
    assert (t.delivered, t.bounced_hard, t.bounced_soft, t.spam_reports) == (2, 2, 1, 1)
    assert [r.reason for r in report.hard_bounce_reasons] == ["(no reason given)", "no such user"]
    assert report.soft_bounce_reasons[0].reason == "MailboxFull"
    assert (report.opens.human_openers, report.opens.machine_opens) == (0, 1)
    assert (report.clicks.clicks, report.clicks.automated_clicks) == (0, 1)
