"""SES bounce and complaint notifications through SNS, against the running service.

The SNS signing certificate is one generated here and served from a loopback HTTP server
named in [ses] sns_certificate_hosts: nothing touches the network.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from test_serve import LiveServer, statuses
from test_webhook import suppressions

from newsletter import subscribers as subs
from newsletter.config import load_config
from newsletter.providers.ses.webhook import allowed_url, canonical
from newsletter.web.events import EventStore

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-events"
URL = "/webhooks/ses"


def make_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert.public_bytes(serialization.Encoding.PEM)


class SnsHost:
    """Serves the signing certificate and records subscription confirmations (GETs)."""

    def __init__(self, pem: bytes) -> None:
        self.pem, self.visits = pem, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                owner.visits.append(self.path)
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", owner.base + "/SimpleNotificationService-1.pem")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = (
                    owner.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-{id(self)}.pem"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sns():
    key, pem = make_certificate()
    host = SnsHost(pem)
    host.key = key
    yield host
    host.close()


def configure(root: Path, sns: SnsHost, topics=(TOPIC,)):
    path = root / "newsletter.toml"
    path.write_text(
        path.read_text()
        + f"\n[ses]\nsns_certificate_hosts = ['{sns.base.partition('://')[2]}']\n"
        + f"sns_topic_arns = {json.dumps(list(topics))}\n"
    )
    return load_config(path, env={})


@pytest.fixture
def live(workspace: Path, sns):
    with LiveServer(configure(workspace, sns)) as server:
        yield server


def signed(sns: SnsHost, message: dict, version: str = "1", key=None) -> dict:
    message = {"SignatureVersion": version, "SigningCertURL": sns.cert_url, **message}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = (key or sns.key).sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def notification(sns: SnsHost, event: dict, version: str = "1", **extra) -> dict:
    return signed(sns, {
        "Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC,
        "Message": json.dumps(event), "Timestamp": "2024-05-01T09:33:55.000Z", **extra,
    }, version)  # fmt: skip


def bounce(email: str, kind: str = "Permanent") -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {"bounceType": kind, "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": email, "status": "5.1.1"}],
                   "timestamp": "2024-05-01T09:33:54.907Z"},
        "mail": {"timestamp": "2024-05-01T09:33:50.000Z", "messageId": "0102abc",
                 "tags": {"issue": ["sample"], "list": ["main"]}},
    }  # fmt: skip


def complaint(email: str, feedback: str = "abuse") -> dict:
    return {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": email}],
                      "complaintFeedbackType": feedback,
                      "timestamp": "2024-05-01T10:00:00.000Z"},
        "mail": {"messageId": "0102def", "tags": {"list": ["main"]}},
    }  # fmt: skip


def post(client, message: dict):
    return client.post(URL, content=json.dumps(message).encode(),
                       headers={"Content-Type": "text/plain; charset=UTF-8"})  # fmt: skip


def test_ses_notifications_update_lists_and_suppressions_once(live, workspace, sns):
    subs.add_subscriber(workspace / "subscribers", "main", "lin@example.com")
    messages = [
        notification(sns, bounce("Ada@Example.org")),
        notification(sns, complaint("grace@example.net"), version="2"),
        notification(sns, bounce("lin@example.com", "Transient")),
        notification(sns, complaint("max@example.com", "not-spam")),
        notification(sns, {"eventType": "Delivery", "mail": {"messageId": "x"}}),
    ]
    with live.client() as client:
        first = [post(client, m) for m in messages]
        again = [post(client, m) for m in messages]  # SNS retries, or a captured replay
    assert [a.json() for a in first] == [{"received": 1, "new": 1}] * len(messages)
    assert [a.json() for a in again] == [{"received": 1, "new": 0}] * len(messages)
    final = statuses(workspace)
    assert final["ada@example.org"] == "bounced"
    assert final["grace@example.net"] == "complained"
    assert final["lin@example.com"] == "subscribed"
    assert suppressions(workspace) == {
        "ada@example.org": "ses: permanent bounce",
        "grace@example.net": "ses: complaint",
    }
    store = EventStore.for_workspace(workspace / ".newsletter")
    [stored] = store.for_email("ada@example.org")
    assert (stored.list_name, stored.issue, stored.event) == ("main", "sample", "Bounce:Permanent")
    assert stored.occurred_at == "2024-05-01T09:33:54+00:00"
    assert len([v for v in sns.visits if v.endswith(".pem")]) == 1  # fetched once, then kept


def test_ses_replay_with_the_same_message_id_changes_nothing(live, workspace, sns):
    first = notification(sns, bounce("ada@example.org"))
    replay = notification(sns, bounce("ada@example.org"), MessageId=first["MessageId"])
    with live.client() as client:
        assert post(client, first).json()["new"] == 1
        assert post(client, replay).json() == {"received": 1, "new": 0}


def test_ses_forged_notifications_are_refused(live, workspace, sns):
    other, _ = make_certificate()
    genuine = notification(sns, bounce("ada@example.org"))
    tampered = {**genuine, "Message": json.dumps(bounce("grace@example.net"))}
    forgeries = {
        "other key": signed(sns, {k: v for k, v in genuine.items() if k != "Signature"}, key=other),
        "tampered": tampered,
        "no signature": {k: v for k, v in genuine.items() if k != "Signature"},
        "unknown version": {**genuine, "SignatureVersion": "3"},
        "foreign cert host": {**genuine, "SigningCertURL": "https://evil.example/x.pem"},
        "look-alike host": {
            **genuine,
            "SigningCertURL": "https://sns.x.amazonaws.com.evil.example/c.pem",
        },
        "redirected cert": signed(
            sns,
            {k: v for k, v in genuine.items() if k not in ("Signature", "SigningCertURL")}
            | {"SigningCertURL": f"{sns.base}/redirect-elsewhere.pem"},
        ),
        "other topic": notification(sns, bounce("ada@example.org"), TopicArn=TOPIC + "-theirs"),
    }
    with live.client() as client:
        answers = {name: post(client, m).status_code for name, m in forgeries.items()}
    assert answers == dict.fromkeys(forgeries, 403)
    assert statuses(workspace)["ada@example.org"] == "subscribed"
    assert suppressions(workspace) == {}
    assert EventStore.for_workspace(workspace / ".newsletter").counts() == {}


def test_ses_subscription_confirmation_is_verified_then_confirmed_on_the_sns_host(live, sns):
    confirmation = {
        "Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC,
        "Token": "2336412f37fb687f5d51e6e2425", "Timestamp": "2024-05-01T09:00:00.000Z",
        "Message": "You have chosen to subscribe to the topic ...",
        "SubscribeURL": f"{sns.base}/?Action=ConfirmSubscription&Token=2336412f37fb687f5d51e6e2425",
    }  # fmt: skip
    elsewhere = {**confirmation, "SubscribeURL": "https://evil.example/?Action=Confirm"}
    with live.client() as client:
        forged = post(client, {**signed(sns, confirmation), "Token": "other"})
        assert sns.visits == [v for v in sns.visits if v.endswith(".pem")]  # not confirmed
        answer = post(client, signed(sns, confirmation, version="2"))
        refused = post(client, signed(sns, elsewhere))
    assert forged.status_code == 403
    assert answer.json() == {"confirmed": TOPIC}
    assert [v for v in sns.visits if "ConfirmSubscription" in v] == [
        "/?Action=ConfirmSubscription&Token=2336412f37fb687f5d51e6e2425"
    ]
    assert refused.status_code == 502


def test_ses_webhook_without_topics_refuses_everything(workspace, sns):
    with LiveServer(configure(workspace, sns, topics=())) as live, live.client() as client:
        answer = post(client, notification(sns, bounce("ada@example.org")))
    assert answer.status_code == 503
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_sns_certificate_hosts_match_one_label_per_star_and_https_only(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    assert allowed_url(
        config, "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
    )
    for url in (
        "http://sns.eu-west-1.amazonaws.com/c.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/c.pem",
        "https://sns.a.b.amazonaws.com/c.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/c.pem",
        "https://user@evil.example/c.pem",
    ):
        assert not allowed_url(config, url), url
