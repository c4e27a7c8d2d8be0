"""Real servers on loopback for provider tests: SMTP (aiosmtpd) and SendGrid's v3 Mail Send.

Both record what they accept and can be scripted to misbehave the way real services do.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import email
import email.policy
import functools
import ipaddress
import json
import re
import secrets
import ssl
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import FIXTURES, free_port

from newsletter.config import Config, load_config
from newsletter.issue import load_issue
from newsletter.message import Campaign, OutgoingMessage
from newsletter.render import Rendered, Renderer

# --- messages to send --------------------------------------------------------------------

SECRET = b"s" * 32


@functools.cache
def rendered_issue(name: str) -> Rendered:
    """An issue of the fixture workspace, rendered once per test run (MJML is the slow part)."""
    root = FIXTURES / "workspace"
    config = load_config(root / "newsletter.toml", env={})
    return Renderer(config).render(load_issue(root / "issues" / name))


def make_campaign(config: Config, issue: str = "merge.md") -> Campaign:
    return Campaign(config, rendered_issue(issue), "main", secret=SECRET)


def subscribers() -> list[dict[str, str]]:
    """The rows of the fixture workspace's subscribers/main.csv."""
    path = FIXTURES / "workspace" / "subscribers" / "main.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def message_for(
    campaign: Campaign, email_address: str, name: str = "", **fields: str
) -> OutgoingMessage:
    """One recipient's message, with subscriber fields as the templates see them."""
    first = name.split()[0] if name.strip() else ""
    values = {"email": email_address, "first_name": first, **fields}
    return campaign.message(email_address, email_address.lower(), values, name)


def sent_both_ways(provider, campaign: Campaign) -> list:
    """The same four recipients sent by `provider` as built, then as the read-ahead process
    hands them over (each with what the provider's encode_ahead made of it); asserts both
    sends answered alike, and returns their results. The third recipient's non-ASCII local
    part is one no HTTP provider can send to: it is refused both times, never encoded ahead.
    """
    from newsletter.providers import Status
    from newsletter.sending.readahead import _ahead

    plain = [
        message_for(campaign, "ada@example.org", 'Ada, "the" Countess', company="Engines & <Co>"),
        message_for(campaign, "zoe@bücher.example", "Zoë 🚀", company="Ünïcode"),
        message_for(campaign, "jörg@example.org", "Jörg"),
        message_for(campaign, "grace@example.net", "Grace"),
    ]
    encode = _ahead(provider.name)
    ahead = [dataclasses.replace(m, ahead=encode(m)) for m in plain]
    assert [m.ahead is not None for m in ahead] == [True, True, False, True]
    with provider:
        first = provider.send_batch(plain)
        second = provider.send_batch(ahead)
    assert [(r.key, r.status, r.reason) for r in first] == [
        (r.key, r.status, r.reason) for r in second
    ]
    assert [r.status for r in second].count(Status.REJECTED) == 1
    assert "SMTPUTF8" in second[2].reason
    return second


# --- a throwaway certificate -------------------------------------------------------------


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- SMTP --------------------------------------------------------------------------------


@dataclass
class Received:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple  # the client's (host, port): one value per connection
    tls: bool
    login: str | None
    mail_options: list[str] = field(default_factory=list)  # e.g. SMTPUTF8, BODY=8BITMIME

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class SmtpScript:
    """How the server misbehaves; addresses are compared lower-cased."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)  # e.g. "451 4.7.1 Try later"
    data_replies: dict[str, str] = field(default_factory=dict)  # reply after the message
    # Said once per address, then the usual answer: a greylisting or briefly busy server.
    rcpt_replies_once: dict[str, str] = field(default_factory=dict)
    data_replies_once: dict[str, str] = field(default_factory=dict)
    drop_on_data: set[str] = field(default_factory=set)  # read the message, then hang up
    data_delay: float = 0.0  # seconds to wait before answering the message
    close_after: int | None = None  # hang up on the next MAIL after this many messages
    refuse_logins_after: int | None = None  # then refuse every login (a revoked password)
    # After this many messages, answer no more until `release` is set: what a test does
    # meanwhile (a signal to the sender) lands mid-send however slowly the machine runs.
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.server.pipelining:  # aiosmtpd reads commands one by one: it can take them
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        limit = self.server.script.close_after
        if limit is not None and getattr(session, "delivered", 0) >= limit:
            server.transport.close()  # like a server that closes long-lived connections
            return "421 4.4.2 closing"  # never reaches the client: the transport is closed
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        script = self.server.script
        reply = _scripted(script.rcpt_replies_once, script.rcpt_replies, address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        script = self.server.script
        rcpt = envelope.rcpt_tos[0].lower()
        if script.data_delay:
            await asyncio.sleep(script.data_delay)
        if script.hold_after is not None and len(self.server.messages) >= script.hold_after:
            while not script.release.is_set():
                await asyncio.sleep(0.005)
        if rcpt in script.drop_on_data:
            self.server.dropped.append(rcpt)
            server.transport.close()
            return "250 OK"  # never reaches the client
        reply = _scripted(script.data_replies_once, script.data_replies, rcpt)
        if reply:
            return reply
        login = session.auth_data.login.decode() if session.authenticated else None
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content,
            peer=session.peer,
            tls=session.ssl is not None,
            login=login,
            mail_options=list(envelope.mail_options),
        )
        with self.server.lock:
            self.server.messages.append(received)
        session.delivered = getattr(session, "delivered", 0) + 1
        return f"250 2.0.0 Ok: queued as {secrets.token_hex(5).upper()}"


def _scripted(once: dict[str, str], always: dict[str, str], address: str) -> str | None:
    # Handlers run on the server's one event loop thread: the pop needs no lock.
    return once.pop(address, None) or always.get(address)


class _Controller(Controller):
    def factory(self):
        # With implicit TLS aiosmtpd cannot tell the connection is encrypted, and says so.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return super().factory()


class SmtpServer:
    """aiosmtpd on 127.0.0.1: security "none", "starttls" (required) or "ssl"; optional AUTH.

    It offers SMTPUTF8 (addresses with non-ASCII local parts) unless `smtputf8` is False, and
    PIPELINING unless `pipelining` is False.
    """

    def __init__(
        self,
        security: str = "none",
        tls: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920), as real relays do
        self.port = free_port()
        self.script = SmtpScript()
        self.messages: list[Received] = []
        self.dropped: list[str] = []
        self.logins: list[tuple[str, bool]] = []  # (login, success)
        self.lock = threading.Lock()
        self.credentials = credentials
        kwargs: dict = {"hostname": self.host, "port": self.port, "enable_SMTPUTF8": smtputf8}
        if credentials:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if security == "starttls":
            kwargs.update(tls_context=server_context(*tls), require_starttls=True)
        elif security == "ssl":
            # Implicit TLS: aiosmtpd does not see it as TLS, so allow AUTH explicitly.
            kwargs.update(ssl_context=server_context(*tls), auth_require_tls=False)
        self.controller = _Controller(_Handler(self), **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (login, password) == self.credentials
        limit = self.script.refuse_logins_after
        if limit is not None and sum(success for _, success in self.logins) >= limit:
            ok = False
        self.logins.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    @property
    def connections(self) -> int:
        """Connections that delivered at least one message."""
        return len({m.peer for m in self.messages})

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.script.release.set()  # nothing is left waiting on a hold
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- SendGrid v3 Mail Send ---------------------------------------------------------------

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_REQUEST_BYTES = 30 * 1024 * 1024
MAX_CATEGORIES = 10
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class SendgridError(Exception):
    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status


@dataclass
class Delivery:
    """What one recipient of an accepted request would receive."""

    to_email: str
    to_name: str | None
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    custom_args: dict[str, str]
    request: dict


@dataclass
class SgAction:
    status: int = 0
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, then close the connection without an answer
    delay: float = 0.0  # wait this long before answering
    # Process the request as usual (delivered when valid), then close without an answer.
    accept_then_drop: bool = False


def _error_body(message: str, field_name: str | None = None, help_text: str | None = None):
    return {"errors": [{"message": message, "field": field_name, "help": help_text}]}


def _is_str(value) -> bool:
    return isinstance(value, str)


def _check_email_object(obj, where: str) -> str:
    if not isinstance(obj, dict) or not _is_str(obj.get("email")):
        raise SendgridError("The email object requires an email parameter.", f"{where}.email")
    if not _EMAIL.match(obj["email"]):
        raise SendgridError("Does not contain a valid address.", f"{where}.email")
    if "name" in obj and not _is_str(obj["name"]):
        raise SendgridError("Invalid type. Expected: string.", f"{where}.name")
    if "name" in obj and re.search(r"[\r\n]", obj["name"]):
        raise SendgridError("The name may not contain line breaks.", f"{where}.name")
    return obj["email"].lower()


def _check_headers(headers, where: str) -> None:
    if not isinstance(headers, dict):
        raise SendgridError("Invalid type. Expected: object.", where)
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise SendgridError(f"The header {name!r} is reserved and cannot be set.", where)
        if not _is_str(value):
            raise SendgridError("Invalid type. Expected: string.", f"{where}.{name}")
        if re.search(r"[\r\n]", value) or re.search(r"[\r\n:\s]", name):
            raise SendgridError("Header names and values may not contain line breaks.", where)


def _check_string_map(values, where: str, limit: int, what: str) -> None:
    if not isinstance(values, dict) or not all(
        _is_str(k) and _is_str(v) for k, v in values.items()
    ):
        raise SendgridError(f"{what} must be an object of strings.", where)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > limit:
        raise SendgridError(f"{what} may not exceed {limit} bytes per personalization.", where)


def validate_mail_send(body) -> None:
    """Raise SendgridError for what SendGrid's v3 Mail Send refuses (the limits we rely on)."""
    if not isinstance(body, dict):
        raise SendgridError("Bad Request")
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise SendgridError(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise SendgridError(
            "You may not have more than 1000 personalizations per request.", "personalizations"
        )
    if not isinstance(body.get("from"), dict):
        raise SendgridError("The from object must be provided for every email send.", "from.email")
    _check_email_object(body["from"], "from")
    if "reply_to" in body:
        _check_email_object(body["reply_to"], "reply_to")
    top_subject = body.get("subject")
    seen: set[str] = set()
    recipients = 0
    for n, p in enumerate(personalizations):
        where = f"personalizations.{n}"
        if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
            raise SendgridError(
                "The to array is required for all personalization objects, and must have "
                "at least one email object with a valid email address.",
                f"{where}.to",
            )
        for kind in ("to", "cc", "bcc"):
            for m, obj in enumerate(p.get(kind, [])):
                address = _check_email_object(obj, f"{where}.{kind}.{m}")
                if address in seen:
                    raise SendgridError(
                        "Each email address in the personalization block should be unique "
                        f"between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{obj['email']}] in the {where}.{kind} field.",
                        f"{where}.{kind}",
                    )
                seen.add(address)
                recipients += 1
        subject = p.get("subject", top_subject)
        if not _is_str(subject) or not subject:
            raise SendgridError(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
            )
        if "headers" in p:
            _check_headers(p["headers"], f"{where}.headers")
        if "substitutions" in p:
            _check_string_map(
                p["substitutions"],
                f"{where}.substitutions",
                MAX_SUBSTITUTION_BYTES,
                "Substitutions",
            )
        if "custom_args" in p:
            _check_string_map(
                {**body.get("custom_args", {}), **p["custom_args"]},
                f"{where}.custom_args",
                MAX_CUSTOM_ARGS_BYTES,
                "Custom args",
            )
    if recipients > MAX_RECIPIENTS:
        raise SendgridError("Too many recipients: at most 1000 per request.", "personalizations")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise SendgridError(
            "Unless a valid template_id is provided, the content parameter is required. "
            "There must be at least one defined content block.",
            "content",
        )
    types = [c.get("type") if isinstance(c, dict) else None for c in content]
    for n, c in enumerate(content):
        if not _is_str(c.get("value")) or not c["value"]:
            raise SendgridError(
                "The content value must be a string at least one character in length.",
                f"content.{n}.value",
            )
    expected = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected)] != expected:
        raise SendgridError(
            "If present, text/plain and text/html may only be provided in this order, "
            "followed by any other content.",
            "content",
        )
    if "headers" in body:
        _check_headers(body["headers"], "headers")
    categories = body.get("categories", [])
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES:
        raise SendgridError("You may not have more than 10 categories per request.", "categories")
    if not all(_is_str(c) and 0 < len(c) <= 255 for c in categories):
        raise SendgridError("A category must be a string of at most 255 characters.", "categories")
    if "send_at" in body:
        send_at = body["send_at"]
        if not isinstance(send_at, int) or send_at > time.time() + 72 * 3600:
            raise SendgridError(
                "The send_at parameter must be a unix timestamp no more than 72 hours ahead.",
                "send_at",
            )
    if "asm" in body and not isinstance(body["asm"].get("group_id"), int):
        raise SendgridError("The asm group_id must be an integer.", "asm.group_id")
    sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable", False)
    if not isinstance(sandbox, bool):
        raise SendgridError("Invalid type. Expected: boolean.", "mail_settings.sandbox_mode")


def substitute(text: str | None, substitutions: dict[str, str]) -> str | None:
    """Replace every substitution tag in one pass, as SendGrid does."""
    if not text or not substitutions:
        return text
    keys = sorted(substitutions, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(k) for k in keys))
    return pattern.sub(lambda m: substitutions[m.group(0)], text)


class HttpLoopback:
    """Start, stop and `with` for a loopback HTTP server that has .httpd, .thread and .release."""

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # whatever a scripted delay is waiting for
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class SendgridServer(HttpLoopback):
    """A threaded HTTP server that speaks SendGrid's v3 Mail Send contract on 127.0.0.1."""

    def __init__(
        self,
        api_key: str = "SG.loopback-test-key",
        faults: Callable[[], SgAction | None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.payload_limit = MAX_REQUEST_BYTES
        self.actions: deque[SgAction] = deque()
        # Asked, as each request arrives with no scripted action left, how to answer it:
        # an SgAction, or None to process it (random faults, storms, slow answers).
        self.faults = faults
        self.requests: list[dict] = []  # accepted request bodies
        self.headers: list[dict[str, str]] = []  # their HTTP headers
        self.attempts: list[tuple[int, int]] = []  # (status answered or 0 for dropped, bytes)
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends scripted delays early on stop()
        self.httpd = _HTTPServer(("127.0.0.1", 0), _SendgridHandler)
        self.httpd.owner = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(
        self,
        status: int = 0,
        body=None,
        headers=None,
        drop=False,
        delay=0.0,
        accept_then_drop=False,
    ) -> None:
        """Answer the next request this way instead of processing it."""
        action = SgAction(status, body, dict(headers or {}), drop, delay, accept_then_drop)
        self.actions.append(action)

    def next_action(self) -> SgAction | None:
        """What to do with the request that just arrived: scripted first, then `faults`."""
        try:
            return self.actions.popleft()
        except IndexError:  # empty, or another request took the last one
            return self.faults() if self.faults is not None else None

    def deliveries(self) -> list[Delivery]:
        """Every accepted request expanded into what each recipient would receive."""
        out = []
        for body in self.requests:
            content = {c["type"]: c["value"] for c in body["content"]}
            for p in body["personalizations"]:
                subs = p.get("substitutions", {})
                for to in p["to"]:
                    out.append(
                        Delivery(
                            to_email=to["email"],
                            to_name=to.get("name"),
                            subject=substitute(p.get("subject", body.get("subject")), subs),
                            text=substitute(content.get("text/plain"), subs),
                            html=substitute(content.get("text/html"), subs),
                            headers={**body.get("headers", {}), **p.get("headers", {})},
                            custom_args={**body.get("custom_args", {}), **p.get("custom_args", {})},
                            request=body,
                        )
                    )
        return out


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: SendgridServer


class _SendgridHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        action = owner.next_action()
        if action and action.delay:
            owner.release.wait(action.delay)
        if action and action.accept_then_drop:
            self._process(raw)  # recorded as delivered when valid
        if action and (action.drop or action.accept_then_drop):
            owner.attempts.append((0, length))
            self.close_connection = True
            return
        if action and action.status:
            owner.attempts.append((action.status, length))
            return self._answer(action.status, action.body, action.headers)
        status, body, headers = self._process(raw)
        owner.attempts.append((status, length))
        self._answer(status, body, headers)

    def _process(self, raw: bytes):
        owner = self.server.owner
        if self.path.rstrip("/") != "/v3/mail/send":
            return 404, _error_body("Not found"), {}
        if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return (
                401,
                _error_body("The provided authorization grant is invalid, expired, or revoked"),
                {},
            )
        if len(raw) > owner.payload_limit:
            return 413, _error_body("The request is larger than the maximum allowed."), {}
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return 415, _error_body("Content-Type should be application/json."), {}
        try:
            body = json.loads(raw)
            validate_mail_send(body)
        except ValueError:
            return 400, _error_body("Bad Request", None, "The JSON could not be parsed."), {}
        except SendgridError as exc:
            return exc.status, _error_body(exc.message, exc.field), {}
        with owner.lock:
            owner.requests.append(body)
            owner.headers.append(dict(self.headers))
        if body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"):
            return 200, None, {}  # sandbox: validated, nothing sent, no message id
        return 202, None, {"X-Message-Id": secrets.token_urlsafe(16)}

    def _answer(self, status: int, body, headers: dict[str, str]) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
