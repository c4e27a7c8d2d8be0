"""SES events through SNS: is a delivery SNS's, for our topic, and what does it change?"""

# SNS signs each message with a key whose certificate it names in SigningCertURL. Anyone
# can point a URL at their own certificate, so the URL must be https on an SNS host
# ([ses] sns_certificate_hosts); and anyone can own an SNS topic, so the TopicArn must be
# one of [ses] sns_topic_arns. Plain http is allowed for a loopback host only, so tests
# can serve a certificate of their own without any network. A replayed delivery changes
# nothing: events are recorded once by SNS's MessageId (and recipient).

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import ipaddress
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter import subscribers as subs
from newsletter.config import Config

SOURCE = "ses"
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SIGNED = {  # the fields signed, in order, per message type (SNS's canonical string)
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),  # fmt: skip
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_CERTIFICATE = 64 * 1024
_certificates: dict[str, rsa.RSAPublicKey] = {}
_lock = threading.Lock()


class WebhookRefused(Exception):
    """Not a genuine SNS delivery for our topics; str() is for the log, not the caller."""


def parse(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused("body is not JSON") from None
    if not isinstance(data, dict) or data.get("Type") not in TYPES:
        raise WebhookRefused("body is not an SNS message (no known Type)")
    if not all(isinstance(data.get(k, ""), str) for k in _SIGNED[data["Type"]]):
        raise WebhookRefused("SNS message fields are not strings")
    return data


def allowed_url(config: Config, url: str) -> bool:
    """https on a host matching [ses] sns_certificate_hosts (http too when it is loopback)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        return False
    where = parts.netloc.rpartition("@")[2].lower()
    # A glob's * stands for one DNS label: sns.*.amazonaws.com is not sns.evil.com/.amazonaws.com
    for pattern in config.ses.sns_certificate_hosts:
        labels, wanted = where.split("."), pattern.lower().split(".")
        if len(labels) == len(wanted) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(labels, wanted, strict=True)
        ):
            return True
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The host was checked, not wherever it might send us on to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(newurl, code, "redirect refused", headers, fp)


_opener = urllib.request.build_opener(_NoRedirects)


def _get(url: str, timeout: float) -> bytes:
    with _opener.open(url, timeout=timeout) as answer:
        return answer.read(MAX_CERTIFICATE + 1)


def _public_key(config: Config, url: str) -> rsa.RSAPublicKey:
    if not allowed_url(config, url) or not urlsplit(url).path.endswith(".pem"):
        raise WebhookRefused(f"SigningCertURL {url!r} is not an allowed SNS certificate URL")
    with _lock:
        key = _certificates.get(url)
    if key is not None:
        return key
    try:
        pem = _get(url, config.ses.timeout)
        certificate = x509.load_pem_x509_certificate(pem[:MAX_CERTIFICATE])
    except (OSError, ValueError) as exc:
        raise WebhookRefused(f"cannot load the SNS certificate at {url}: {exc}") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("the SNS certificate's key is not RSA")
    with _lock:
        _certificates[url] = key
    return key


def canonical(message: dict) -> bytes:
    lines = []
    for name in _SIGNED[message["Type"]]:
        if name in message:
            lines += [name, message[name]]
    return ("\n".join(lines) + "\n").encode()


def verify(config: Config, message: dict) -> None:
    """Raise WebhookRefused unless SNS signed the message and its topic is one of ours."""
    topics = config.ses.sns_topic_arns
    if message.get("TopicArn") not in topics:
        raise WebhookRefused(f"topic {message.get('TopicArn')!r} is not in [ses] sns_topic_arns")
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise WebhookRefused("unknown SignatureVersion")
    try:
        signature = base64.b64decode(message.get("Signature", ""), validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRefused("Signature is not base64") from None
    key = _public_key(config, str(message.get("SigningCertURL", "")))
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise WebhookRefused("the signature does not match") from None


def confirm(config: Config, message: dict) -> None:
    """Confirm a (verified) subscription by visiting its SubscribeURL on an SNS host."""
    url = message.get("SubscribeURL", "")
    if not allowed_url(config, url):
        raise WebhookRefused(f"SubscribeURL {url!r} is not on an allowed SNS host")
    try:
        _get(url, config.ses.timeout)
    except OSError as exc:
        raise WebhookRefused(f"confirming the subscription failed: {exc}") from None


@dataclass(frozen=True)
class Parsed:
    event_id: str
    event: str  # "Bounce:Permanent", "Bounce:Transient", "Complaint", "Delivery", ...
    email: str | None
    list_name: str | None
    issue: str | None
    occurred_at: str | None
    payload: dict


def read(message: dict) -> list[Parsed]:
    """One Parsed per recipient the SES event names (one for events that name none)."""
    try:
        data = json.loads(message["Message"])
    except (ValueError, TypeError):
        data = None
    if not isinstance(data, dict):
        return [Parsed(message["MessageId"], "Other", None, None, None, None, {})]
    kind = str(data.get("eventType") or data.get("notificationType") or "Other")[:32]
    detail, field = {"Bounce": ("bounce", "bouncedRecipients"),
                     "Complaint": ("complaint", "complainedRecipients")}.get(kind, ("", ""))  # fmt: skip
    body = data.get(detail) if isinstance(data.get(detail), dict) else {}
    event = kind
    if kind == "Bounce":
        event = f"Bounce:{str(body.get('bounceType', ''))[:32]}"
    elif kind == "Complaint" and body.get("complaintFeedbackType") == "not-spam":
        event = "Complaint:not-spam"
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    when = _iso(body.get("timestamp") or mail.get("timestamp"))
    payload = {k: v for k, v in data.items() if k != "content"}
    emails = [r.get("emailAddress") for r in body.get(field, []) if isinstance(r, dict)]
    emails = [subs.email_key(e) for e in emails if isinstance(e, str) and e.strip()]
    ident = message["MessageId"]
    common = (event, _tag(tags, "list"), _tag(tags, "issue"), when, payload)
    if not emails:
        return [Parsed(ident, common[0], None, *common[1:])]
    return [Parsed(f"{ident}:{email}", event, email, *common[1:]) for email in emails]


def change(event: str, email: str | None) -> tuple[str, str] | None:
    """(new status, suppression reason) an event calls for; None for those only recorded."""
    if not email:
        return None
    if event == "Bounce:Permanent":
        return "bounced", "ses: permanent bounce"
    if event == "Complaint":
        return "complained", "ses: complaint"
    return None  # transient bounces, deliveries, not-spam feedback: the address may be fine


def _tag(tags: dict, name: str) -> str | None:
    value = tags.get(name)
    value = value[0] if isinstance(value, list) and value else value
    return value[:200] if isinstance(value, str) and value else None


def _iso(value) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")
