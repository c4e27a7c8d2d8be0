"""Mailgun's POST /v3/<domain>/messages on loopback, strict: auth, shapes, limits, faults.

It refuses what Mailgun refuses: a wrong API key (401 "Forbidden"), an unknown domain
(404), a body that is not multipart/form-data or form-urlencoded, a missing from / to /
subject / body (400), more than 1,000 recipients, recipient-variables that are not a JSON
object covering every `to` (400), an o:deliverytime that is not an RFC 2822 date or is more
than three days ahead (400), and bodies over 25 MB (413). Each accepted message is filled in
as Mailgun would (%recipient.x% from its recipient's variables), so tests see what each
recipient gets. It can be scripted to answer 429, 5xx or nothing at all, like the others.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from loopback import HttpLoopback

MAX_RECIPIENTS = 1000
MAX_BYTES = 25_000_000
MAX_SCHEDULE = 3 * 24 * 3600
_PATH = re.compile(r"^/v3/(?P<domain>[^/]+)/messages$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_VARIABLE = re.compile(r"%recipient\.([A-Za-z0-9_.-]+)%")
_DISPOSITION = re.compile(
    rb'^Content-Disposition: form-data; name="([^"]*)"(?:; filename="[^"]*")?$', re.I
)


class MgError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class MgAction:
    status: int = 0
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, then close without an answer (nothing delivered)
    delay: float = 0.0
    accept_then_drop: bool = False  # deliver as usual, then close without an answer


def parse_multipart(content_type: str, raw: bytes) -> list[tuple[str, str]]:
    """The (name, value) fields of a multipart/form-data body; MgError when malformed."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise MgError(400, "multipart body without a boundary")
    boundary = b"--" + match.group(1).encode()
    if not raw.startswith(boundary) or not raw.endswith(boundary + b"--\r\n"):
        raise MgError(400, "malformed multipart body")
    fields = []
    for part in raw[len(boundary) : -len(boundary) - 4].split(b"\r\n" + boundary):
        if not part.startswith(b"\r\n"):
            raise MgError(400, "malformed multipart part")
        head, sep, value = part[2:].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        name = next((m.group(1) for line in lines if (m := _DISPOSITION.match(line))), None)
        if not sep or name is None:
            raise MgError(400, "multipart part without a form-data name")
        try:
            fields.append((name.decode(), value.decode("utf-8")))
        except UnicodeDecodeError:
            raise MgError(400, "multipart field is not UTF-8") from None
    return fields


def fill(text: str, variables: dict) -> str:
    return _VARIABLE.sub(lambda m: str(variables.get(m.group(1), "")), text)


class MailgunServer(HttpLoopback):
    """A threaded HTTP server that speaks Mailgun's Messages API on 127.0.0.1."""

    def __init__(
        self,
        api_key: str = "mg-loopback-key",
        domain: str = "mg.example.org",
        faults: Callable[[], MgAction | None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.domains = {domain}
        self.payload_limit = MAX_BYTES
        self.actions: deque[MgAction] = deque()
        self.faults = faults
        self.messages: list[dict] = []  # one per delivered recipient, filled in
        self.tested: list[dict] = []  # the same for o:testmode requests (delivered to nobody)
        self.requests: list[list[tuple[str, str]]] = []  # fields of requests answered 200
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
            MgAction(status, body, dict(headers or {}), drop, delay, accept_then_drop)
        )

    def next_action(self) -> MgAction | None:
        try:
            return self.actions.popleft()
        except IndexError:
            return self.faults() if self.faults is not None else None

    def recipients(self) -> list[str]:
        """Every address a delivered message went to, once per message."""
        return [m["address"] for m in self.messages]

    def _authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, key = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return user == "api" and key == self.api_key

    def process(self, path: str, headers, raw: bytes) -> tuple[int, object]:
        match = _PATH.match(path)
        if not match:
            return 404, {"message": "Not Found"}
        if not self._authorized(headers.get("Authorization")):
            return 401, "Forbidden"
        if match.group("domain") not in self.domains:
            return 404, {"message": f"Domain not found: {match.group('domain')}"}
        if len(raw) > self.payload_limit:
            return 413, {"message": "Request Entity Too Large"}
        try:
            fields = self._fields(headers.get("Content-Type") or "", raw)
            delivered = self._messages(fields)
        except MgError as exc:
            return exc.status, {"message": exc.message}
        testmode = any(k == "o:testmode" and v.lower() in ("yes", "true") for k, v in fields)
        message_id = f"<{uuid.uuid4().hex}@{match.group('domain')}>"
        with self.lock:
            (self.tested if testmode else self.messages).extend(
                [{**m, "id": message_id} for m in delivered]
            )
            self.requests.append(fields)
            self.headers.append(dict(headers))
        return 200, {"id": message_id, "message": "Queued. Thank you."}

    @staticmethod
    def _fields(content_type: str, raw: bytes) -> list[tuple[str, str]]:
        if content_type.startswith("multipart/form-data"):
            return parse_multipart(content_type, raw)
        if content_type.startswith("application/x-www-form-urlencoded"):
            return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        raise MgError(400, "Expected multipart/form-data or form-urlencoded")

    def _messages(self, fields: list[tuple[str, str]]) -> list[dict]:
        """The message each recipient gets; MgError for what Mailgun refuses."""
        one = {}
        for name, value in fields:
            if name != "to" and name in one and not name.startswith(("h:", "o:tag")):
                raise MgError(400, f"'{name}' parameter given twice")
            one.setdefault(name, value)
        for required in ("from", "subject"):
            if not one.get(required):
                raise MgError(400, f"'{required}' parameter is missing")
        if not (one.get("html") or one.get("text")):
            raise MgError(400, "Need at least one of 'text' or 'html' parameters specified")
        [(_, sender)] = getaddresses([one["from"]]) or [("", "")]
        if not _ADDRESS.match(sender):
            raise MgError(
                400, "'from' parameter is not a valid address. please check documentation"
            )
        to = [value for name, value in fields if name == "to"]
        if not to:
            raise MgError(400, "'to' parameter is missing")
        if len(to) > MAX_RECIPIENTS:
            raise MgError(400, "Too many recipients: at most 1000 per message")
        addresses = []
        for value in to:
            found = [addr for _, addr in getaddresses([value])]
            if len(found) != 1 or not _ADDRESS.match(found[0]):
                raise MgError(400, f"to parameter is not a valid address: {value}")
            addresses.append(found[0])
        variables: dict = {}
        if "recipient-variables" in one:
            try:
                variables = json.loads(one["recipient-variables"])
            except ValueError:
                raise MgError(400, "recipient-variables parameter is not valid JSON") from None
            if not isinstance(variables, dict):
                raise MgError(400, "recipient-variables parameter is not a JSON object")
            missing = [a for a in addresses if not isinstance(variables.get(a), dict)]
            if missing:
                raise MgError(400, f"recipient-variables has no entry for {missing[0]}")
        when = one.get("o:deliverytime")
        if when is not None:
            try:
                at = email.utils.parsedate_to_datetime(when).timestamp()
            except (TypeError, ValueError):
                raise MgError(400, "o:deliverytime is not a valid RFC 2822 date") from None
            if at - time.time() > MAX_SCHEDULE:
                raise MgError(400, "o:deliverytime is more than 3 days in the future")
        headers = {k[2:]: v for k, v in fields if k.startswith("h:")}
        tags = [v for k, v in fields if k == "o:tag"]
        user_variables = {k[2:]: v for k, v in fields if k.startswith("v:")}
        options = {k: v for k, v in fields if k.startswith("o:") and k != "o:tag"}
        out = []
        for value, address in zip(to, addresses, strict=True):
            mine = variables.get(address, {})
            out.append(
                {
                    "to": value,
                    "address": address,
                    "from": one["from"],
                    "subject": fill(one["subject"], mine),
                    "html": fill(one.get("html", ""), mine),
                    "text": fill(one.get("text", ""), mine),
                    "headers": {k: fill(v, mine) for k, v in headers.items()},
                    "tags": tags,
                    "user_variables": user_variables,
                    "options": options,
                }
            )
        return out


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: MailgunServer

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
        if isinstance(body, str):
            data, kind = body.encode(), "text/plain"
        else:
            data, kind = (b"" if body is None else json.dumps(body).encode()), "application/json"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
