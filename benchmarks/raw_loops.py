"""Each provider's plain client loop for bench_send.py: the same requests, nothing of ours.

For every provider, `build_<name>(config, batch, ids)` turns a batch of pre-built messages
into the request(s) a plain loop with the provider's own client sends: the shared content
once per request where the API allows it, per recipient their substitutions, unsubscribe
headers and recipient id, exactly as `newsletter send` sends them. `same_as_ours` checks,
before anything is timed, that these requests are byte for byte the ones our provider plans
for the same batch (Message-ID and Date aside, which differ per build); the timed loop then
builds and posts them with the provider's own client. What is per recipient but not
transport (merge values, unsubscribe tokens, recipient ids, SES and SMTP MIME bytes) is
computed before the timer starts, so the raw loop does less than we do, never more.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
from email.utils import formataddr

from bench_servers import KEY, MAILGUN_DOMAIN

from newsletter.tokens import address_id


def recipient_ids(messages) -> dict[str, str]:
    """The per-recipient id our providers put in custom_args / Metadata: an HMAC each."""
    return {m.key: address_id(m.campaign.secret, m.campaign.list_name, m.key) for m in messages}


def _fields(rendered, part: str) -> list[int]:
    return sorted({int(i) for i in getattr(rendered, part)[1::2]})


# --- SendGrid: the plain `sendgrid` client, 1,000 personalizations per request --------------


def build_sendgrid(config, batch, ids) -> list[dict]:
    from newsletter.providers.sendgrid.mail import HTML_TAG, TEXT_TAG, TRACKING_OFF

    campaign = batch[0].campaign
    rendered = campaign.rendered
    _, html, text = rendered.with_tokens(HTML_TAG, TEXT_TAG)
    html_fields, text_fields = _fields(rendered, "html_parts"), _fields(rendered, "text_parts")
    body = {
        "from": {"email": config.from_email, "name": config.from_name or config.name},
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "headers": {"List-Id": campaign.list_id_header},
        "tracking_settings": TRACKING_OFF,
    }
    if config.reply_to:
        body["reply_to"] = {"email": config.reply_to}
    personalizations = []
    for m in batch:
        html_values, text_values, subject = rendered.part_values(m.values)
        subs = {HTML_TAG.format(i): html_values[i] for i in html_fields}
        subs.update({TEXT_TAG.format(i): text_values[i] for i in text_fields})
        personalizations.append(
            {
                "to": [{"email": m.to_email, "name": m.to_name}],
                "subject": campaign.subject_prefix + subject,
                "headers": m.personal_headers(),
                "custom_args": {
                    "issue": campaign.issue_slug,
                    "list": campaign.list_name,
                    "recipient": ids[m.key],
                },
                "substitutions": subs,
            }
        )
    body["personalizations"] = personalizations
    return [body]


def loop_sendgrid(config, env, share, batch_size, ids) -> None:
    import sendgrid

    client = sendgrid.SendGridAPIClient(api_key=KEY, host=config.sendgrid.host).client
    for start in range(0, len(share), batch_size):
        for body in build_sendgrid(config, share[start : start + batch_size], ids):
            answer = client.mail.send.post(request_body=body)
            assert answer.status_code == 202, answer.status_code


# --- Postmark: postmarker, 500 messages per /email/batch --------------------------------------


def build_postmark(config, batch, ids) -> list[list[dict]]:
    campaign = batch[0].campaign
    rendered = campaign.rendered
    base = {
        "From": formataddr((config.from_name or config.name, config.from_email), "utf-8"),
        "MessageStream": config.postmark.message_stream,
        "Tag": campaign.issue_slug,
        "TrackOpens": False,
        "TrackLinks": "None",
        "Headers": None,
    }
    if config.reply_to:
        base["ReplyTo"] = config.reply_to
    payloads = []
    for m in batch:
        filled = rendered.fill_values(m.values)
        payloads.append(
            {
                **base,
                "To": formataddr((m.to_name, m.to_email), "utf-8"),
                "Subject": campaign.subject_prefix + filled.subject,
                "Headers": {"List-Id": campaign.list_id_header, **m.personal_headers()},
                "Metadata": {
                    "issue": campaign.issue_slug,
                    "list": campaign.list_name,
                    "recipient": ids[m.key],
                },
                "HtmlBody": filled.html,
                "TextBody": filled.text,
            }
        )
    return [payloads[i : i + 500] for i in range(0, len(payloads), 500)]


def loop_postmark(config, env, share, batch_size, ids) -> None:
    from postmarker.core import PostmarkClient

    client = PostmarkClient(server_token=KEY, root_api_url=config.postmark.host.rstrip("/") + "/")
    for start in range(0, len(share), batch_size):
        for payloads in build_postmark(config, share[start : start + batch_size], ids):
            answers = client.emails.send_batch(*payloads)
            assert all(a["ErrorCode"] == 0 for a in answers)
    client.session.close()


# --- Resend: the `resend` SDK, 100 emails per batch with an Idempotency-Key -------------------


def build_resend(config, batch, ids) -> list[tuple[list[dict], dict]]:
    campaign = batch[0].campaign
    rendered = campaign.rendered
    sender = formataddr((config.from_name or config.name, config.from_email))
    tags = [
        {"name": "issue", "value": campaign.issue_slug},
        {"name": "list", "value": campaign.list_name},
    ]
    emails = []
    for m in batch:
        filled = rendered.fill_values(m.values)
        email = {
            "from": sender,
            "to": [formataddr((m.to_name, m.to_email))],
            "subject": campaign.subject_prefix + filled.subject,
            "html": filled.html,
            "text": filled.text,
            "headers": {"List-Id": campaign.list_id_header, **m.personal_headers()},
            "tags": tags,
        }
        if config.reply_to:
            email["reply_to"] = [config.reply_to]
        emails.append(email)
    parts = [campaign.issue_slug, campaign.list_name, campaign.subject_prefix]
    keyed = "\0".join([*parts, *sorted(m.key for m in batch)]).encode()
    key = "newsletter-" + hashlib.sha256(keyed).hexdigest()
    return [(emails, {"idempotency_key": key, "batch_validation": "permissive"})]


def loop_resend(config, env, share, batch_size, ids) -> None:
    import resend

    from newsletter.providers.resend import api

    api.use(config, env)  # the SDK with a kept-alive HTTP session, as the provider has it
    for start in range(0, len(share), batch_size):
        for emails, options in build_resend(config, share[start : start + batch_size], ids):
            resend.Batch.send(emails, options)


# --- Mailgun: the `mailgun` SDK, 1,000 recipients per request with recipient-variables --------


def build_mailgun(config, batch, ids) -> list[list[tuple[str, str]]]:
    campaign = batch[0].campaign
    rendered = campaign.rendered
    subject, html, text = rendered.with_tokens("%recipient.h{}%", "%recipient.t{}%")
    personal = len(rendered.subject_parts) > 1
    html_fields, text_fields = _fields(rendered, "html_parts"), _fields(rendered, "text_parts")
    sender = formataddr((config.from_name or config.name, config.from_email))
    fields = [
        ("from", sender),
        ("subject", "%recipient.subject%" if personal else campaign.subject_prefix + subject),
        ("text", text),
        ("html", html),
        ("h:List-Unsubscribe", "%recipient.unsubscribe%"),
        ("h:List-Id", campaign.list_id_header),
    ]
    if batch[0].one_click:
        fields.append(("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    if config.reply_to:
        fields.append(("h:Reply-To", config.reply_to))
    fields += [
        ("o:tag", campaign.issue_slug),
        ("o:tracking", "no"),
        ("o:tracking-clicks", "no"),
        ("o:tracking-opens", "no"),
        ("v:issue", campaign.issue_slug),
        ("v:list", campaign.list_name),
    ]
    variables = {}
    for m in batch:
        html_values, text_values, subject = rendered.part_values(m.values)
        mine = {f"h{i}": html_values[i] for i in html_fields}
        mine.update({f"t{i}": text_values[i] for i in text_fields})
        mine["unsubscribe"] = m.list_unsubscribe
        if personal:
            mine["subject"] = campaign.subject_prefix + subject
        variables[m.to_email] = mine
    fields += [("to", formataddr((m.to_name, m.to_email), "utf-8")) for m in batch]
    fields.append(("recipient-variables", json.dumps(variables)))
    return [fields]


def loop_mailgun(config, env, share, batch_size, ids) -> None:
    from mailgun.client import Client
    from mailgun.config import RetryPolicy

    client = Client(
        auth=("api", KEY), api_url=config.mailgun.base_url, retry_policy=RetryPolicy(max_retries=0)
    )
    for start in range(0, len(share), batch_size):
        for fields in build_mailgun(config, share[start : start + batch_size], ids):
            files = [(name, (None, value)) for name, value in fields]
            answer = client.messages.create(domain=MAILGUN_DOMAIN, files=files)
            assert answer.status_code == 200, answer.text
    client.close()


# --- SES: boto3 sesv2, one SendEmail per message with its MIME bytes --------------------------


def build_ses(config, batch, raw) -> list[dict]:
    campaign = batch[0].campaign
    tags = [
        {"Name": "issue", "Value": campaign.issue_slug},
        {"Name": "list", "Value": campaign.list_name},
    ]
    return [
        {
            "FromEmailAddress": config.from_email,
            "Destination": {"ToAddresses": [m.to_email]},
            "Content": {"Raw": {"Data": raw[m.key]}},
            "EmailTags": tags,
        }
        for m in batch
    ]


def loop_ses(config, env, share, batch_size, raw) -> None:
    import boto3
    import botocore.config

    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).client(
        "sesv2",
        region_name=config.ses.region,
        endpoint_url=config.ses.endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    for start in range(0, len(share), batch_size):
        for params in build_ses(config, share[start : start + batch_size], raw):
            client.send_email(**params)


# --- SMTP: plain smtplib, one connection per thread, the same MIME bytes ----------------------


def loop_smtp(config, env, share, batch_size, raw) -> None:
    conn = smtplib.SMTP(config.smtp.host, config.smtp.port)
    conn.ehlo()
    for m in share:
        conn.sendmail(config.from_email, [m.to_email], raw[m.key])
    conn.quit()


# --- the check that the raw loop sends what we send --------------------------------------------


def ours(provider, batch) -> list:
    """What our provider puts on the wire for `batch`, in the shape the build_ functions give."""
    name = provider.name
    if name in ("ses", "smtp"):
        return [provider.request(m) for m in batch] if name == "ses" else []
    steps, refused = provider.plan(batch)
    assert not refused, refused
    if name == "sendgrid":  # the JSON text it posts; json.dumps of the raw loop's dicts
        return [step.payload.body() for step in steps]
    if name == "postmark":
        return [[item.payload for item in step.payload.items] for step in steps]
    if name == "resend":
        return [
            (step.payload.emails, {"idempotency_key": step.payload.key, "batch_validation": ""})
            for step in steps
        ]
    return [step.payload.fields() for step in steps]


def same_as_ours(provider, config, batch, data) -> None:
    """Refuse to time a raw loop whose requests differ from ours by a single byte."""
    name = provider.name
    if name == "smtp":
        return  # both send message.as_bytes(): the very same function
    mine = globals()[f"build_{name}"](config, batch, data)
    theirs = ours(provider, batch)
    if name == "ses":  # the Date and Message-ID of a fresh build: compare without them
        for params in [*mine, *theirs]:
            params["Content"] = _without_date(params["Content"]["Raw"]["Data"])
    if name == "resend":
        theirs = [(e, {**o, "batch_validation": "permissive"}) for e, o in theirs]
    if name == "sendgrid":  # the very bytes the client would post for the raw loop's dicts
        mine = [json.dumps(body) for body in mine]
    a, b = json.dumps(mine, default=repr), json.dumps(theirs, default=repr)
    if a != b:
        at = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        raise SystemExit(
            f"{name}: the raw loop's requests differ from ours at {a[max(0, at - 80) : at + 80]!r} vs {b[max(0, at - 80) : at + 80]!r}"
        )


def _without_date(data: bytes) -> bytes:
    return b"\r\n".join(
        line for line in data.split(b"\r\n") if not line.startswith((b"Date:", b"Message-ID:"))
    )
