"""A loopback server that speaks Postmark's batch Email API (POST /email/batch) strictly.

It refuses what Postmark refuses: a wrong server token (401), more than 500 messages or
50 MB (422 ErrorCode 410, 413), bodies that are not a JSON array of messages (422), and per
message a missing sender, recipient or body, a From that is not a Sender Signature, an
unknown message stream, metadata or tags over their limits (ErrorCode 300 and friends) and
inactive recipients (406), each in its place in a 200 answer. It can be scripted to answer
429, 5xx or nothing at all, like SendgridServer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback import HttpLoopback

TEST_TOKEN = "POSTMARK_API_TEST"
MAX_MESSAGES = 500
MAX_REQUEST_BYTES = 50_000_000
MAX_RECIPIENTS = 50
MAX_TAG = 1000
MAX_METADATA_KEYS = 10
MAX_METADATA_KEY = 20
MAX_METADATA_VALUE = 80
TRACK_LINKS = {"None", "HtmlAndText", "HtmlOnly", "TextOnly"}
KNOWN_FIELDS = {
    "From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo",
    "Headers", "TrackOpens", "TrackLinks", "Metadata", "Attachments", "MessageStream",
}  # fmt: skip
# Postmark's mailbox and domain rules for addresses (its support article on ErrorCode 300).
_MAILBOX = re.compile(r"^[a-z0-9.!#$%&'`*+\-/=^_{}|~]+$", re.I)
_DOMAIN = re.compile(r"^((\.)?[a-zA-Z0-9\-])+$")


class PmError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class PmAction:
    status: int = 0
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, then close without an answer (nothing delivered)
    delay: float = 0.0
    accept_then_drop: bool = False  # deliver as usual, then close without an answer


def _address_ok(text: str) -> bool:
    local, _, domain = text.rpartition("@")
    return bool(local) and bool(_MAILBOX.match(local)) and bool(_DOMAIN.match(domain))


def _recipients(value) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        raise PmError(300, "Invalid 'To' address: ''.")
    found = [addr for _, addr in getaddresses([value])]
    if not found or not all(_address_ok(a) for a in found):
        raise PmError(300, f"Invalid 'To' address: '{value}'.")
    if len(found) > MAX_RECIPIENTS:
        raise PmError(300, "Maximum of 50 recipients allowed per email message.")
    return found


def validate_message(message, senders: set[str], streams: set[str]) -> list[str]:
    """The message's recipients; PmError with Postmark's ErrorCode for what it refuses."""
    if not isinstance(message, dict):
        raise PmError(403, "Incompatible JSON input.")
    unknown = set(message) - KNOWN_FIELDS
    if unknown:
        raise PmError(403, f"Incompatible JSON input: unknown fields {sorted(unknown)}.")
    sender = message.get("From")
    if not isinstance(sender, str) or not sender:
        raise PmError(300, "Invalid 'From' address: ''.")
    [(_, from_email)] = getaddresses([sender]) or [("", "")]
    if not _address_ok(from_email):
        raise PmError(300, f"Invalid 'From' address: '{sender}'.")
    if from_email.lower() not in senders:
        raise PmError(
            400,
            f"The 'From' address you supplied ({from_email}) is not a Sender Signature on "
            "your account.",
        )
    to = _recipients(message.get("To"))
    if not (message.get("HtmlBody") or message.get("TextBody")):
        raise PmError(300, "Provide either email TextBody or HtmlBody or both.")
    for key in ("Subject", "HtmlBody", "TextBody", "ReplyTo", "Tag"):
        if key in message and not isinstance(message[key], str):
            raise PmError(403, f"Incompatible JSON input: {key} must be a string.")
    if len(message.get("Tag") or "") > MAX_TAG:
        raise PmError(300, "Tag may not exceed 1000 characters.")
    stream = message.get("MessageStream", "outbound")
    if stream not in streams:
        raise PmError(1235, f"The message stream '{stream}' does not exist on this server.")
    links = message.get("TrackLinks", "None")
    if links not in TRACK_LINKS:
        raise PmError(300, f"Invalid TrackLinks value: '{links}'.")
    headers = message.get("Headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, dict)
        and set(h) == {"Name", "Value"}
        and all(isinstance(v, str) and "\n" not in v and "\r" not in v for v in h.values())
        for h in headers
    ):
        raise PmError(300, "Headers must be a list of {Name, Value} strings without line breaks.")
    metadata = message.get("Metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise PmError(300, "Metadata: at most 10 fields.")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(value, str):
            raise PmError(300, f"Metadata field name '{key}' is too long or its value not text.")
        if len(value) > MAX_METADATA_VALUE:
            raise PmError(300, f"Metadata value of '{key}' is over 80 characters.")
    if message.get("Attachments"):
        raise PmError(411, "Attachments are not expected here.")
    return to


class PostmarkServer(HttpLoopback):
    """A threaded HTTP server that speaks Postmark's /email/batch contract on 127.0.0.1."""

    def __init__(
        self,
        token: str = "pm-loopback-token",
        senders: tuple[str, ...] = ("news@example.org",),
        streams: tuple[str, ...] = ("outbound", "broadcast"),
        faults: Callable[[], PmAction | None] | None = None,
    ) -> None:
        self.token = token
        self.senders = {s.lower() for s in senders}
        self.streams = set(streams)
        self.payload_limit = MAX_REQUEST_BYTES
        self.inactive: set[str] = set()  # recipients refused with ErrorCode 406
        self.refuse_once: dict[str, tuple[int, str]] = {}  # recipient -> (ErrorCode, Message)
        self.actions: deque[PmAction] = deque()
        self.faults = faults
        self.messages: list[dict] = []  # accepted messages (not those of the test token)
        self.tested: list[dict] = []  # messages validated with the test token
        self.requests: list[list] = []  # bodies of requests answered 200
        self.headers: list[dict[str, str]] = []
        self.attempts: list[tuple[int, int]] = []  # (status, or 0 when dropped; bytes)
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(
        self, status=0, body=None, headers=None, drop=False, delay=0.0, accept_then_drop=False
    ):
        """Answer the next request this way instead of processing it."""
        self.actions.append(
            PmAction(status, body, dict(headers or {}), drop, delay, accept_then_drop)
        )

    def next_action(self) -> PmAction | None:
        try:
            return self.actions.popleft()
        except IndexError:
            return self.faults() if self.faults is not None else None

    def recipients(self) -> list[str]:
        """Every address an accepted message went to, once per message."""
        return [addr for m in self.messages for _, addr in getaddresses([m["To"]])]

    def process(self, path: str, headers, raw: bytes) -> tuple[int, object]:
        if path.rstrip("/") != "/email/batch":
            return 404, {"ErrorCode": 404, "Message": "Not found."}
        token = headers.get("X-Postmark-Server-Token")
        if token not in (self.token, TEST_TOKEN):
            return 401, {
                "ErrorCode": 10,
                "Message": "The Server Token you provided in the X-Postmark-Server-Token "
                "request header was invalid.",
            }
        if "application/json" not in (headers.get("Accept") or ""):
            return 422, {"ErrorCode": 409, "Message": "JSON data required: set Accept."}
        if not (headers.get("Content-Type") or "").startswith("application/json"):
            return 422, {"ErrorCode": 409, "Message": "JSON data required."}
        if len(raw) > self.payload_limit:
            return 413, {"ErrorCode": 413, "Message": "Payload Too Large."}
        try:
            body = json.loads(raw)
        except ValueError:
            return 422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}
        if not isinstance(body, list) or not body:
            return 422, {"ErrorCode": 403, "Message": "Incompatible JSON input: expected an array."}
        if len(body) > MAX_MESSAGES:
            return 422, {"ErrorCode": 410, "Message": "Too many batch messages (at most 500)."}
        answers = []
        accepted = []
        with self.lock:
            for message in body:
                try:
                    to = validate_message(message, self.senders, self.streams)
                    for addr in to:
                        if addr.lower() in self.inactive:
                            raise PmError(
                                406,
                                "You tried to send to recipient(s) that have been marked as "
                                f"inactive. Found inactive addresses: {addr}. Inactive "
                                "recipients are ones that have generated a hard bounce, a spam "
                                "complaint, or a manual suppression.",
                            )
                        if addr.lower() in self.refuse_once:
                            code, text = self.refuse_once.pop(addr.lower())
                            raise PmError(code, text)
                except PmError as exc:
                    answers.append({"ErrorCode": exc.code, "Message": exc.message})
                    continue
                accepted.append(message)
                answers.append(
                    {
                        "To": message["To"],
                        "SubmittedAt": dt.datetime.now(dt.UTC).isoformat(),
                        "MessageID": str(uuid.uuid4()),
                        "ErrorCode": 0,
                        "Message": "OK" if token == self.token else "Test job accepted",
                    }
                )
            (self.messages if token == self.token else self.tested).extend(accepted)
            self.requests.append(body)
            self.headers.append(dict(headers))
        return 200, answers


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: PostmarkServer

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (timeout tests) is not the server's error


class _Handler(BaseHTTPRequestHandler):
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
            owner.process(self.path, self.headers, raw)
        if action and (action.drop or action.accept_then_drop):
            owner.attempts.append((0, length))
            self.close_connection = True
            return
        if action and action.status:
            owner.attempts.append((action.status, length))
            return self._answer(action.status, action.body, action.headers)
        status, body = owner.process(self.path, self.headers, raw)
        owner.attempts.append((status, length))
        self._answer(status, body, {})

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
