"""SendGrid's v3 Mail Send through the official client: up to 1,000 recipients per request."""

# The HTML and text travel once per request, with SendGrid substitution tags where
# the merge fields are; each recipient's personalization carries their values, subject and
# unsubscribe headers. Every limit of the API is kept while the requests are packed, so a
# request is never refused for its shape.

from __future__ import annotations

import http.client
import json
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import python_http_client.exceptions as http_errors

from newsletter.config import Config
from newsletter.errors import ConfigError, ProviderError, SubscriberError
from newsletter.message import (
    Campaign,
    OutgoingMessage,
    header_safe,
    wire_address,
)
from newsletter.providers.base import Provider, Result, SendOptions, Status, Step
from newsletter.providers.common import place
from newsletter.providers.sendgrid import api
from newsletter.providers.sendgrid.api import API_KEY_ENV
from newsletter.providers.sendgrid.personalize import (
    HTML_TAG,
    TEXT_TAG,
    checked_headers,
    encoded,
)

MAX_PERSONALIZATIONS = 1000  # also the recipients per request: one `to` per personalization
MAX_CATEGORIES = 10
# A 429 without Retry-After or X-RateLimit-Reset is still throttling: wait, do not count it
# as a failure. A bare 5xx is not: an outage must stop the send, not be waited out forever.
DEFAULT_429_RETRY_AFTER = 1.0
TRACKING_OFF = {
    # Click tracking rewrites every link (unsubscribe links included) through SendGrid.
    "click_tracking": {"enable": False, "enable_text": False},
    "open_tracking": {"enable": False},
    "subscription_tracking": {"enable": False},
    "ganalytics": {"enable": False},
}


@dataclass
class _Shared:
    """What every request of one campaign carries: computed once per campaign."""

    campaign: Campaign
    base: dict  # the request without personalizations
    # The request's JSON before and after its personalizations, as json.dumps writes it.
    head: str = ""
    tail: str = ""

    def __post_init__(self) -> None:
        # Nothing follows the personalizations in the body: the last placeholder is theirs.
        encoded = json.dumps({**self.base, "personalizations": ["\0"]})
        self.head, _, self.tail = encoded.rpartition(json.dumps("\0"))

    @property
    def base_size(self) -> int:
        return len(self.head) + len(self.tail)


@dataclass
class _Item:
    index: int  # position in the batch
    message: OutgoingMessage
    encoded: str  # its personalization, as json.dumps writes it
    address: str  # lower-cased: one request never holds an address twice
    content: list[dict] | None = None  # its own full content when substitutions are too big

    @property
    def size(self) -> int:
        """Bytes it adds to the request: its JSON and the ", " before the next."""
        return len(self.encoded) + 2


@dataclass
class _Request:
    shared: _Shared
    items: list[_Item] = field(default_factory=list)
    size: int = 0
    addresses: set[str] = field(default_factory=set)

    def body(self) -> str:
        """The request's JSON, exactly as the client's json.dumps would write it."""
        if self.items and self.items[0].content is not None:  # one recipient, own content
            only = self.items[0]
            personalization = json.loads(only.encoded)
            body = {**self.shared.base, "personalizations": [personalization]}
            return json.dumps({**body, "content": only.content})
        shared = self.shared
        return shared.head + ", ".join([item.encoded for item in self.items]) + shared.tail


class SendgridProvider(Provider):
    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS
    default_workers = 2
    supports_send_at = True
    max_schedule_ahead = api.MAX_SCHEDULE_SECONDS
    supports_sandbox = True
    reports_handovers = True
    max_request_bytes = 30_000_000  # SendGrid's 30 MB, counted in the JSON actually sent

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        super().__init__(config, env, options)
        self._client = None
        self._shared: _Shared | None = None

    @property
    def host(self) -> str:
        return api.api_host(self.config)

    @property
    def sandbox(self) -> bool:
        return self.options.sandbox or self.config.sendgrid.sandbox

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        super().check(config, env, options)
        api.api_key(env, api.MAIL_SEND)
        api.api_host(config)
        categories = config.sendgrid.categories
        if len(categories) > MAX_CATEGORIES:
            raise ConfigError(f"[sendgrid] categories: SendGrid allows at most {MAX_CATEGORIES}")
        if any(not 0 < len(c) <= 255 for c in categories):
            raise ConfigError("[sendgrid] categories: each must be 1 to 255 characters")
        api.check_send_at(options.send_at)

    def _api(self):
        if self._client is None:
            self._client = api.client(self.config, self.env, api.MAIL_SEND)
            # Bodies go as the JSON text they were measured as (and, for most recipients,
            # encoded by the read-ahead): the client passes a str through as it is when
            # the Content-Type is not the bare "application/json" it would encode for.
            self._client.request_headers["Content-Type"] = "application/json; charset=utf-8"
        return self._client

    # --- translate -----------------------------------------------------------------------

    def _shared_for(self, campaign: Campaign) -> _Shared:
        if self._shared is not None and self._shared.campaign is campaign:
            return self._shared
        cfg, rendered = self.config, campaign.rendered
        _, html, text = rendered.with_tokens(HTML_TAG, TEXT_TAG)
        headers = {"List-Id": campaign.list_id_header}
        if cfg.send.feedback_id:
            headers["Feedback-ID"] = header_safe(cfg.send.feedback_id)
        checked_headers(headers)
        sender = wire_address(cfg.from_email)
        base: dict = {
            "from": {"email": sender, "name": header_safe(cfg.from_name or cfg.name)},
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
            "headers": headers,
            "tracking_settings": TRACKING_OFF,
        }
        if cfg.reply_to:
            base["reply_to"] = {"email": wire_address(cfg.reply_to)}
        if cfg.sendgrid.categories:
            base["categories"] = list(cfg.sendgrid.categories)
        if cfg.sendgrid.asm_group_id is not None:
            base["asm"] = {"group_id": cfg.sendgrid.asm_group_id}
        if self.options.send_at is not None:
            base["send_at"] = int(self.options.send_at)
        if self.sandbox:
            base["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self._shared = _Shared(campaign=campaign, base=base)
        return self._shared

    @classmethod
    def encode_ahead(cls, message: OutgoingMessage) -> str | None:
        """The recipient's personalization as JSON: the read-ahead's part of the request."""
        text, content = encoded(message)
        return text if content is None else None

    def _item(self, shared: _Shared, index: int, message: OutgoingMessage) -> _Item:
        text, content = self.ahead_of(message), None
        if text is None:
            text, content = encoded(message)
        address = wire_address(message.to_email).lower()
        return _Item(index, message, text, address, content)

    def plan(self, messages: Sequence[OutgoingMessage]) -> tuple[list[Step], dict[int, Result]]:
        """Pack the batch into requests that keep every Mail Send limit; refuse what cannot."""
        requests: list[_Request] = []
        refused: dict[int, Result] = {}
        open_requests: dict[int, list[_Request]] = {}
        for index, message in enumerate(messages):
            shared = self._shared_for(message.campaign)
            try:
                item = self._item(shared, index, message)
            except (SubscriberError, UnicodeError) as exc:  # this recipient's alone
                refused[index] = Result(message.key, Status.REJECTED, str(exc))
                continue
            if item.content is not None:
                request = _Request(shared, [item])
                body_size = len(request.body())
                if body_size > self.max_request_bytes:
                    reason = f"message of {body_size} bytes is over SendGrid's request limit"
                    refused[index] = Result(message.key, Status.REJECTED, reason)
                else:
                    requests.append(request)
                continue
            if shared.base_size + item.size > self.max_request_bytes:
                reason = "the issue is too large for one SendGrid request"
                refused[index] = Result(message.key, Status.REJECTED, reason)
                continue
            request, opened = place(
                open_requests.setdefault(id(shared.campaign), []),
                lambda shared=shared: _Request(shared, size=shared.base_size),
                item.size,
                item.address,
                max_items=MAX_PERSONALIZATIONS,
                max_bytes=self.max_request_bytes,
            )
            if opened:
                requests.append(request)
            request.items.append(item)
        steps = [Step(tuple(item.index for item in r.items), r) for r in requests]
        return steps, refused

    # --- transport -----------------------------------------------------------------------

    def transport(
        self, step: Step, messages: Sequence[OutgoingMessage], results: dict[int, Result]
    ) -> None:
        """One request; an answer of 413 splits it, a 400 naming recipients sends the rest again."""
        request = step.payload
        self._deliver(request.shared, request.items, results)

    def _deliver(
        self, shared: _Shared, items: list[_Item], results: dict[int, Result], resend: bool = True
    ) -> None:
        """Send one request and put a Result for each of its items into `results`."""
        request = _Request(shared, items)
        try:
            response = self._api().mail.send.post(request_body=request.body())
        except http_errors.HTTPError as exc:
            return self._refusal(shared, items, results, exc, resend)
        except urllib.error.URLError as exc:  # raised before the request was complete
            reason = f"cannot reach SendGrid at {self.host}: {exc.reason}"
            return _store(results, items, Status.TEMPORARY, reason)
        except (http.client.HTTPException, OSError) as exc:  # it went out; no answer came back
            reason = f"no answer from SendGrid at {self.host} after sending: {_describe(exc)}"
            return _store(results, items, Status.UNKNOWN, reason)
        headers = response.headers
        message_id = headers.get("X-Message-Id") if headers is not None else None
        reason = "sandbox mode: validated by SendGrid, not delivered" if self.sandbox else ""
        _store(results, items, Status.ACCEPTED, reason, provider_id=message_id)

    def _refusal(self, shared, items, results, exc, resend) -> None:
        status = exc.status_code
        details = api.details(exc)
        if status == 401:
            raise ProviderError(f"SendGrid refused the API key (401): check {API_KEY_ENV}")
        if status == 403:
            raise ProviderError(
                f"SendGrid refused the request (403): {details}; check that {API_KEY_ENV} "
                "has the Mail Send permission and from_email is a verified sender"
            )
        if status in (404, 405):
            raise ProviderError(
                f"SendGrid answered {status} at {self.host}/v3/mail/send: check [sendgrid] host"
            )
        if status == 413:
            if len(items) == 1:
                reason = "SendGrid refused the message as too large (413)"
                return _store(results, items, Status.REJECTED, reason)
            half = len(items) // 2
            self._deliver(shared, items[:half], results, resend)
            return self._deliver(shared, items[half:], results, resend)
        if status == 429 or status >= 500:
            what = "rate limit" if status == 429 else "server error"
            reason = f"SendGrid {what} ({status}): {details}"
            retry_after = api.retry_after(exc.headers)
            if retry_after is None and status == 429:
                retry_after = DEFAULT_429_RETRY_AFTER
            return _store(results, items, Status.TEMPORARY, reason, retry_after=retry_after)
        if 400 <= status < 500:
            culprits = _culprits(api.errors(exc.body), len(items))
            if status == 400 and resend and culprits and len(culprits) < len(items):
                # Only some recipients are at fault: refuse them, send the others once more.
                for n, reason in culprits.items():
                    results[items[n].index] = Result(items[n].message.key, Status.REJECTED, reason)
                rest = [item for n, item in enumerate(items) if n not in culprits]
                return self._deliver(shared, rest, results, resend=False)
            reason = f"SendGrid rejected the request ({status}): {details}"
            return _store(results, items, Status.REJECTED, reason)
        reason = f"unexpected answer from SendGrid ({status}): {details}"
        return _store(results, items, Status.TEMPORARY, reason)


def _store(results: dict[int, Result], items: list[_Item], status: Status, reason="", **extra):
    for item in items:
        results[item.index] = Result(item.message.key, status, reason, **extra)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _culprits(errors: list[dict], count: int) -> dict[int, str]:
    """{personalization index: reason} when every error names one personalization, else {}."""
    found: dict[int, str] = {}
    for error in errors:
        where = str(error.get("field") or "")
        head, _, rest = where.partition(".")
        number = rest.partition(".")[0]
        if head != "personalizations" or not number.isdigit() or int(number) >= count:
            return {}
        found[int(number)] = f"SendGrid rejected this recipient (400): {api.format_error(error)}"
    return found
