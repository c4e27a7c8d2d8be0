"""Resend's POST /emails/batch on loopback, strict: shapes, limits, auth, idempotency, faults.

Kept apart from loopback.py so each provider's server is one file to read.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback import HttpLoopback

MAX_EMAILS = 100
MAX_TO = 50
MAX_KEY = 256
WINDOW = 24 * 3600
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_NAMED = re.compile(r"^(?:\"?(?P<name>[^<>\"]*)\"?\s*)?<(?P<address>[^<>]+)>$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
KNOWN_FIELDS = frozenset(
    {"from", "to", "subject", "bcc", "cc", "reply_to", "html", "text", "headers", "tags"}
)
NOT_IN_BATCH = frozenset({"attachments", "scheduled_at"})


class Invalid(Exception):
    pass


@dataclass
class ReAction:
    status: int = 0
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, close without an answer, deliver nothing
    accept_then_drop: bool = False  # process it as usual (deliver), then close unanswered
    delay: float = 0.0
    answer_after: float = 0.0  # process it as usual, then wait this long before answering


def _error(status: int, name: str, message: str) -> tuple[int, dict, dict]:
    return status, {"statusCode": status, "name": name, "message": message}, {}


def _address(value, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"Invalid `{where}` field. Expected a string.")
    match = _NAMED.match(value.strip())
    address = match.group("address") if match else value.strip()
    if not _ADDRESS.match(address) or "\r" in value or "\n" in value:
        raise Invalid(
            f"Invalid `{where}` field. The email address needs to follow the "
            "`email@example.com` or `Name <email@example.com>` format."
        )
    return address.lower()


def validate_email(email) -> None:
    """Raise Invalid for what Resend refuses in one email of a batch."""
    if not isinstance(email, dict):
        raise Invalid("Each email must be an object.")
    for name in email:
        if name in NOT_IN_BATCH:
            raise Invalid(f"The `{name}` field is not supported for batch emails.")
        if name not in KNOWN_FIELDS:
            raise Invalid(f"Unknown field `{name}`.")
    if "from" not in email:
        raise Invalid("Missing `from` field.")
    _address(email["from"], "from")
    to = email.get("to")
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to:
        raise Invalid("Missing `to` field.")
    if len(to) > MAX_TO:
        raise Invalid(f"Too many recipients: `to` holds at most {MAX_TO}.")
    for value in to:
        _address(value, "to")
    for name in ("reply_to", "cc", "bcc"):
        values = email.get(name, [])
        for value in [values] if isinstance(values, str) else values:
            _address(value, name)
    if not isinstance(email.get("subject"), str) or not email["subject"]:
        raise Invalid("Missing `subject` field.")
    if not any(isinstance(email.get(k), str) and email[k] for k in ("html", "text")):
        raise Invalid("Missing `html` or `text` field.")
    headers = email.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and not re.search(r"[\r\n]", k + v)
        for k, v in headers.items()
    ):
        raise Invalid("Invalid `headers` field: an object of single-line strings.")
    for tag in email.get("tags", []):
        if not (
            isinstance(tag, dict)
            and _TAG.match(str(tag.get("name", "")))
            and _TAG.match(str(tag.get("value", "")))
        ):
            raise Invalid(
                "Tags should only contain ASCII letters, numbers, underscores, or dashes."
            )


@dataclass
class Sent:
    to: str
    email: dict
    id: str


class ResendServer(HttpLoopback):
    """A threaded HTTP server that speaks Resend's batch email contract on 127.0.0.1."""

    def __init__(self, api_key: str = "re_loopback", faults: Callable | None = None) -> None:
        self.api_key = api_key
        self.faults = faults
        self.actions: deque[ReAction] = deque()
        self.sent: list[Sent] = []  # every email delivered, once per recipient
        self.requests: list[dict] = []  # (headers, emails) of each request that arrived
        self.keep_requests = True  # benchmarks keep only counts
        self.answers: list[int] = []  # status of each request, 0 when dropped
        self.keys: dict[str, tuple[float, str, int, dict] | None] = {}  # None: in progress
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, **kwargs) -> None:
        """Answer the next request this way instead of processing it."""
        self.actions.append(ReAction(**kwargs))

    def next_action(self) -> ReAction | None:
        try:
            return self.actions.popleft()
        except IndexError:
            return self.faults() if self.faults is not None else None

    def received(self) -> list[str]:
        with self.lock:
            return [s.to for s in self.sent]

    def process(self, headers, raw: bytes) -> tuple[int, dict, dict]:
        if headers.get("Authorization") is None:
            return _error(401, "missing_api_key", "Missing API key in the authorization header")
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(403, "invalid_api_key", "API key is invalid")
        if not (headers.get("Content-Type") or "").startswith("application/json"):
            return _error(422, "validation_error", "Content-Type must be application/json")
        key = headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= MAX_KEY:
            return _error(422, "invalid_idempotency_key", "The key must be 1-256 characters.")
        try:
            emails = json.loads(raw)
        except ValueError:
            return _error(422, "validation_error", "Invalid JSON body.")
        with self.lock:
            if self.keep_requests:
                self.requests.append({"headers": dict(headers), "emails": emails})
            digest = hashlib.sha256(raw).hexdigest()  # the body, kept small
            if key is not None:
                now = time.time()
                known = self.keys.get(key, ())
                if known is None:
                    return _error(
                        409,
                        "concurrent_idempotent_requests",
                        "Same idempotency key used while original request is still in progress.",
                    )
                if known and now - known[0] < WINDOW:
                    if known[1] != digest:
                        return _error(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload.",
                        )
                    return known[2], known[3], {}
                self.keys[key] = None
        status, body, extra = self._send(headers, emails)
        with self.lock:
            if key is not None:
                if 200 <= status < 300:
                    self.keys[key] = (time.time(), hashlib.sha256(raw).hexdigest(), status, body)
                else:
                    self.keys.pop(key, None)  # only answers that sent something are kept
        return status, body, extra

    def _send(self, headers, emails) -> tuple[int, dict, dict]:
        if not isinstance(emails, list) or not emails:
            return _error(422, "validation_error", "The body must be an array of emails.")
        if len(emails) > MAX_EMAILS:
            return _error(422, "validation_error", f"Too many emails: at most {MAX_EMAILS}.")
        permissive = headers.get("x-batch-validation", "strict") == "permissive"
        errors = []
        for index, email in enumerate(emails):
            try:
                validate_email(email)
            except Invalid as exc:
                if not permissive:
                    return _error(422, "validation_error", f"emails[{index}]: {exc}")
                errors.append({"index": index, "message": str(exc)})
        failed = {e["index"] for e in errors}
        data = []
        with self.lock:
            for index, email in enumerate(emails):
                if index in failed:
                    continue
                ident = str(uuid.uuid4())
                to = email["to"] if isinstance(email["to"], list) else [email["to"]]
                for value in to:
                    self.sent.append(Sent(_address(value, "to"), email, ident))
                data.append({"id": ident})
        body: dict = {"data": data}
        if permissive:
            body["errors"] = errors
        return 200, body, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: ResendServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/emails/batch":
            return self._answer(*_error(404, "not_found", "The requested endpoint does not exist."))
        action = owner.next_action()
        if action and action.delay:
            owner.release.wait(action.delay)
        if action and action.accept_then_drop:
            owner.process(self.headers, raw)
        if action and (action.drop or action.accept_then_drop):
            owner.answers.append(0)
            self.close_connection = True
            return
        if action and action.status:
            body = action.body or {
                "statusCode": action.status,
                "name": "application_error",
                "message": "scripted",
            }
            owner.answers.append(action.status)
            return self._answer(action.status, body, action.headers)
        status, body, headers = owner.process(self.headers, raw)
        if action and action.answer_after:
            owner.release.wait(action.answer_after)
        owner.answers.append(status)
        self._answer(status, body, headers)

    def _answer(self, status: int, body: dict, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
