"""A loopback server that speaks SES v2's SendEmail (POST /v2/email/outbound-emails) strictly.

It refuses what SES refuses: a request without a well-formed SigV4 Authorization header
(403), a body that is not SendEmail's JSON, a raw message over 40 MB or more than 50
destinations (400 BadRequestException), a From that is not a verified identity (400
MessageRejected), an unknown configuration set (404 NotFoundException). It can be scripted
to answer 429 TooManyRequestsException, 5xx, or nothing at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback import HttpLoopback

PATH = "/v2/email/outbound-emails"
MAX_RAW_BYTES = 40 * 1024 * 1024
MAX_DESTINATIONS = 50
_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/\d{8}/(?P<region>[a-z0-9-]+)"
    r"/ses/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=[0-9a-f]{64}$"
)


class SesError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class SesAction:
    status: int = 0
    code: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # read the request, then close without an answer (nothing delivered)
    delay: float = 0.0
    accept_then_drop: bool = False  # deliver as usual, then close without an answer


@dataclass
class Sent:
    sender: str
    to: list[str]
    raw: bytes
    configuration_set: str | None
    tags: dict[str, str]


class SesServer(HttpLoopback):
    """A threaded HTTP server that speaks SES v2 SendEmail (raw content) on 127.0.0.1."""

    def __init__(
        self,
        key_id: str = "AKIALOOPBACK0000TEST",
        region: str = "eu-west-1",
        identities: tuple[str, ...] = ("example.org",),
        configuration_sets: tuple[str, ...] = ("newsletters",),
        faults: Callable[[], SesAction | None] | None = None,
    ) -> None:
        self.key_id, self.region = key_id, region
        self.identities = set(identities)
        self.configuration_sets = set(configuration_sets)
        self.rejected: dict[str, str] = {}  # recipient -> MessageRejected message
        self.actions: deque[SesAction] = deque()
        self.faults = faults
        self.messages: list[Sent] = []
        self.attempts: list[int] = []  # status per request, 0 when dropped
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
        self, status=0, code="", headers=None, drop=False, delay=0.0, accept_then_drop=False
    ):
        """Answer the next request this way instead of processing it."""
        self.actions.append(
            SesAction(status, code, dict(headers or {}), drop, delay, accept_then_drop)
        )

    def next_action(self) -> SesAction | None:
        try:
            return self.actions.popleft()
        except IndexError:
            return self.faults() if self.faults is not None else None

    def recipients(self) -> list[str]:
        return [to for m in self.messages for to in m.to]

    def process(self, method: str, path: str, headers, raw: bytes) -> tuple[int, dict]:
        try:
            return 200, self._send_email(method, path, headers, raw)
        except SesError as exc:
            return exc.status, {"__type": exc.code, "message": exc.message}

    def _send_email(self, method: str, path: str, headers, raw: bytes) -> dict:
        if method != "POST" or path.split("?")[0] != PATH:
            raise SesError(404, "NotFoundException", f"no operation at {method} {path}")
        auth = _SIGV4.match(headers.get("Authorization") or "")
        if not auth or not headers.get("X-Amz-Date"):
            raise SesError(403, "InvalidSignatureException", "missing or malformed SigV4")
        if auth["key"] != self.key_id:
            raise SesError(403, "UnrecognizedClientException", "The security token is invalid.")
        if auth["region"] != self.region or "host" not in auth["signed"].split(";"):
            raise SesError(403, "InvalidSignatureException", "credential scope does not match")
        try:
            body = json.loads(raw)
            data = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise SesError(
                400, "BadRequestException", "body is not SendEmail with Raw content"
            ) from None
        if len(body["Content"]["Raw"]["Data"]) > MAX_RAW_BYTES:
            raise SesError(400, "BadRequestException", "Message length exceeds 40 MB")
        dest = body.get("Destination") or {}
        to = [*dest.get("ToAddresses", []), *dest.get("CcAddresses", []),
              *dest.get("BccAddresses", [])]  # fmt: skip
        if not to or len(to) > MAX_DESTINATIONS:
            raise SesError(400, "BadRequestException", "1 to 50 destinations per message")
        sender = body.get("FromEmailAddress") or ""
        if sender.rpartition("@")[2] not in self.identities and sender not in self.identities:
            raise SesError(
                400,
                "MessageRejected",
                f"Email address is not verified. The following identities failed the check: {sender}",
            )
        cset = body.get("ConfigurationSetName")
        if cset is not None and cset not in self.configuration_sets:
            raise SesError(404, "NotFoundException", f"Configuration set <{cset}> does not exist.")
        tags = {t["Name"]: t["Value"] for t in body.get("EmailTags", [])}
        if any(not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v) for v in tags.values()):
            raise SesError(400, "BadRequestException", "invalid EmailTags value")
        for address in to:
            if address in self.rejected:
                raise SesError(400, "MessageRejected", self.rejected[address])
        with self.lock:
            self.messages.append(Sent(sender, to, data, cset, tags))
        return {"MessageId": f"0102{uuid.uuid4().hex}-000000"}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: SesServer

    def handle_error(self, request, client_address) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    # Headers and body in one segment: two small writes meet the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - quiet test output
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = owner.next_action()
        if action and action.delay:
            owner.release.wait(action.delay)
        if action and action.accept_then_drop:
            owner.process("POST", self.path, self.headers, raw)
        if action and (action.drop or action.accept_then_drop):
            owner.attempts.append(0)
            self.close_connection = True
            return
        if action and action.status:
            owner.attempts.append(action.status)
            body = {"__type": action.code, "message": f"scripted {action.code}"}
            return self._answer(
                action.status, body, {"x-amzn-ErrorType": action.code, **action.headers}
            )
        status, body = owner.process("POST", self.path, self.headers, raw)
        owner.attempts.append(status)
        headers = {"x-amzn-ErrorType": body["__type"]} if status != 200 else {}
        self._answer(status, body, headers)

    def _answer(self, status: int, body, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
