"""Postmark's batch Email API through postmarker: up to 500 messages per request, one result each."""

# Each recipient's message is complete in the request (Postmark's batch endpoint has no
# substitutions), sent on the Broadcast message stream with the unsubscribe headers. A 200
# answer holds an ErrorCode per message, in order: some may be refused while the rest go.

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formataddr
from json.encoder import encode_basestring_ascii

import requests

from newsletter.config import Config
from newsletter.errors import ProviderError, SubscriberError
from newsletter.message import NAME_MAX, NEEDS_SMTPUTF8, Campaign, OutgoingMessage, header_safe
from newsletter.providers.base import Provider, Result, SendOptions, Status, Step
from newsletter.providers.common import shaped_size
from newsletter.providers.postmark import api
from newsletter.render import fill

MAX_TAG = 1000
MAX_METADATA_VALUE = 80


def _json_len(text: str) -> int:
    """Bytes a string takes inside a JSON string as requests encodes it (ASCII, escaped)."""
    return len(encode_basestring_ascii(text)) - 2


@dataclass
class _Shared:
    """What every message of one campaign carries: computed once per campaign."""

    campaign: Campaign
    base: dict
    html_static: int  # JSON bytes of the HTML without its merge values
    text_static: int
    html_fields: list[int] = field(default_factory=list)  # each merge field where it is used
    text_fields: list[int] = field(default_factory=list)
    skeletons: dict[tuple, int] = field(default_factory=dict)  # see size_of

    def size_of(self, payload: dict) -> int:
        """The JSON bytes of a message without its bodies, as postmarker sends it (Headers as
        a list of Name/Value, no Attachments), without encoding it all for every recipient."""
        headers, meta = payload["Headers"], payload["Metadata"]
        shape = (tuple(payload), tuple(headers), tuple(meta))
        strings = [payload["To"], payload["Subject"], *headers.values(), *meta.values()]
        return shaped_size(self.skeletons, shape, strings, lambda: _wire_size(payload))


def _wire_size(payload: dict) -> int:
    wire = {**payload, "Headers": [{"Name": k, "Value": v} for k, v in payload["Headers"].items()]}
    return len(json.dumps({**wire, "Attachments": []}))


@dataclass
class _Item:
    index: int
    message: OutgoingMessage
    payload: dict
    size: int  # bytes it adds to the request body, separator included


@dataclass
class _Request:
    items: list[_Item] = field(default_factory=list)
    size: int = 2  # the brackets of the JSON array


# Bytes a body field adds to a message object beyond its escaped value: `, "HtmlBody": ""`.
_BODY_KEY = {key: len(json.dumps({key: ""})) for key in ("HtmlBody", "TextBody")}


class PostmarkProvider(Provider):
    name = "postmark"
    max_batch = api.MAX_MESSAGES
    default_workers = 2
    supports_sandbox = True  # Postmark's test token: validated, not delivered
    reports_handovers = True
    max_request_bytes = api.MAX_REQUEST_BYTES

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        super().__init__(config, env, options)
        self._client: api.Client | None = None
        self._shared: _Shared | None = None

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        super().check(config, env, options)
        api.check(config, env, options.sandbox)

    @property
    def host(self) -> str:
        return api.api_host(self.config)

    def _api(self) -> api.Client:
        if self._client is None:
            self._client = api.client(self.config, self.env, self.options.sandbox)
        return self._client

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "_session"):
            self._client.session.close()

    # --- translate -----------------------------------------------------------------------

    def _shared_for(self, campaign: Campaign) -> _Shared:
        if self._shared is not None and self._shared.campaign is campaign:
            return self._shared
        cfg, rendered = self.config, campaign.rendered
        headers = {"List-Id": campaign.list_id_header}
        if cfg.send.feedback_id:
            headers["Feedback-ID"] = header_safe(cfg.send.feedback_id)
        base = {
            "From": formataddr((header_safe(cfg.from_name or cfg.name), cfg.from_email), "utf-8"),
            "MessageStream": cfg.postmark.message_stream,
            "Tag": campaign.issue_slug[:MAX_TAG],
            # Link tracking would rewrite the unsubscribe links through Postmark.
            "TrackOpens": False,
            "TrackLinks": "None",
            "Headers": headers,
        }
        if cfg.reply_to:
            base["ReplyTo"] = cfg.reply_to
        self._shared = _Shared(
            campaign=campaign,
            base=base,
            html_static=sum(_json_len(p) for p in rendered.html_parts[0::2]),
            text_static=sum(_json_len(p) for p in rendered.text_parts[0::2]),
            html_fields=[int(i) for i in rendered.html_parts[1::2]],
            text_fields=[int(i) for i in rendered.text_parts[1::2]],
        )
        return self._shared

    def _item(self, shared: _Shared, index: int, message: OutgoingMessage) -> _Item:
        if message.needs_smtputf8:
            # Postmark accepts ASCII mailboxes only: refuse here instead of a 300 per message.
            raise SubscriberError(
                f"{NEEDS_SMTPUTF8}: the {self.name} provider does not send to such addresses "
                "(SMTPUTF8)"
            )
        campaign = shared.campaign
        rendered = campaign.rendered
        html_values, text_values, subject = rendered.part_values(message.values)
        name = header_safe(message.to_name or "")[:NAME_MAX].rstrip()
        to = formataddr((name, message.to_email), "utf-8") if name else message.to_email
        meta = {
            "issue": campaign.issue_slug[:MAX_METADATA_VALUE],
            "list": campaign.list_name[:MAX_METADATA_VALUE],
            "recipient": message.recipient(),
        }
        payload = {
            **shared.base,
            "To": to,
            "Subject": header_safe(campaign.subject_prefix + subject),
            "Headers": {**shared.base["Headers"], **message.personal_headers()},
            "Metadata": meta,
        }
        # Measured as postmarker sends it (headers as a list, no attachments), bodies apart:
        # JSON escapes character by character, so a body's size is its parts' sizes summed.
        size = shared.size_of(payload) + 2  # and the ", " before it
        html = text = None
        if rendered.html_parts != [""]:
            html = fill(rendered.html_parts, html_values)
            dynamic = sum(map(_json_len, map(html_values.__getitem__, shared.html_fields)))
            size += _BODY_KEY["HtmlBody"] + shared.html_static + dynamic
        if rendered.text_parts != [""]:
            text = fill(rendered.text_parts, text_values)
            dynamic = sum(map(_json_len, map(text_values.__getitem__, shared.text_fields)))
            size += _BODY_KEY["TextBody"] + shared.text_static + dynamic
        if html is not None:
            payload["HtmlBody"] = html
        if text is not None:
            payload["TextBody"] = text
        return _Item(index, message, payload, size)

    def plan(self, messages: Sequence[OutgoingMessage]) -> tuple[list[Step], dict[int, Result]]:
        """Requests of up to 500 messages and 50 MB; refuse what no request can carry."""
        refused: dict[int, Result] = {}
        requests_: list[_Request] = []
        current = _Request()
        for index, message in enumerate(messages):
            shared = self._shared_for(message.campaign)
            try:
                item = self._item(shared, index, message)
            except (SubscriberError, UnicodeError) as exc:
                refused[index] = Result(message.key, Status.REJECTED, str(exc))
                continue
            if 2 + item.size > self.max_request_bytes:
                reason = f"message of {item.size} bytes is over Postmark's request limit"
                refused[index] = Result(message.key, Status.REJECTED, reason)
                continue
            full = len(current.items) >= api.MAX_MESSAGES
            if current.items and (full or current.size + item.size > self.max_request_bytes):
                requests_.append(current)
                current = _Request()
            current.items.append(item)
            current.size += item.size
        if current.items:
            requests_.append(current)
        return [Step(tuple(i.index for i in r.items), r) for r in requests_], refused

    # --- transport -----------------------------------------------------------------------

    def transport(
        self, step: Step, messages: Sequence[OutgoingMessage], results: dict[int, Result]
    ) -> None:
        """One /email/batch request; a 413 splits it in halves."""
        self._deliver(step.payload.items, results)

    def _deliver(self, items: list[_Item], results: dict[int, Result]) -> None:
        try:
            answers = self._api().emails.send_batch(*(item.payload for item in items))
        except api.Refused as exc:
            return self._refusal(items, results, exc)
        except requests.RequestException as exc:
            if api.sent(exc):
                reason = f"no answer from Postmark at {self.host} after sending: {_describe(exc)}"
                return _store(results, items, Status.UNKNOWN, reason)
            reason = f"cannot reach Postmark at {self.host}: {_describe(exc)}"
            return _store(results, items, Status.TEMPORARY, reason)
        except ValueError as exc:  # a 200 whose body is not JSON: they may all have gone
            reason = f"unreadable answer from Postmark after sending: {exc}"
            return _store(results, items, Status.UNKNOWN, reason)
        if not isinstance(answers, list) or len(answers) != len(items):
            reason = "Postmark's answer does not list one result per message"
            return _store(results, items, Status.UNKNOWN, reason)
        account = None
        for item, answer in zip(items, answers, strict=True):
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            if not isinstance(code, int):
                reason = "Postmark's answer for this message has no ErrorCode"
                results[item.index] = Result(item.message.key, Status.UNKNOWN, reason)
                continue
            text = api.one_line(answer.get("Message"))
            verdict = api.verdict(code)
            if verdict.status == "account":
                account = account or f"{api.ACCOUNT_CODES[code]} ({code}: {text})"
                continue  # left without a result: the base makes it TEMPORARY and stops
            results[item.index] = self._result(item, verdict, code, text, answer)
        if account:
            raise ProviderError(account)

    def _result(self, item: _Item, verdict: api.Verdict, code: int, text: str, answer) -> Result:
        key = item.message.key
        if verdict.status == "accepted":
            reason = "sandbox: validated by Postmark, not delivered" if self.options.sandbox else ""
            return Result(key, Status.ACCEPTED, reason, provider_id=answer.get("MessageID"))
        reason = f"Postmark refused this message ({code}): {text}"
        if verdict.status == "temporary":
            return Result(key, Status.TEMPORARY, reason, retry_after=verdict.retry_after)
        return Result(key, Status.REJECTED, reason, hard_bounce=verdict.hard_bounce)

    def _refusal(self, items: list[_Item], results: dict[int, Result], exc: api.Refused) -> None:
        status, code, text = exc.status, exc.code, exc.message
        said = f"{code}: {text}" if code is not None else text
        if status == 401 or code == 10:
            raise ProviderError(f"Postmark refused the server token (401): check {api.TOKEN_ENV}")
        if status in (404, 405):
            raise ProviderError(
                f"Postmark answered {status} at {self.host}/email/batch: check [postmark] host"
            )
        if status == 413:
            if len(items) == 1:
                reason = "Postmark refused the message as too large (413)"
                return _store(results, items, Status.REJECTED, reason)
            half = len(items) // 2
            self._deliver(items[:half], results)
            return self._deliver(items[half:], results)
        if status == 429 or status >= 500:
            what = "rate limit" if status == 429 else "server error"
            wait = api.retry_after(exc.headers)
            if wait is None and status == 429:
                wait = api.DEFAULT_429_RETRY_AFTER
            reason = f"Postmark {what} ({status}): {said}"
            return _store(results, items, Status.TEMPORARY, reason, retry_after=wait)
        if status == 422 and code is not None:
            verdict = api.verdict(code)
            if verdict.status == "account":
                raise ProviderError(f"{api.ACCOUNT_CODES[code]} ({code}: {text})")
            reason = f"Postmark refused the request (422, {said})"
            if verdict.status == "temporary":
                return _store(
                    results, items, Status.TEMPORARY, reason, retry_after=verdict.retry_after
                )
            if verdict.status == "rejected":
                hard = verdict.hard_bounce and len(items) == 1
                return _store(results, items, Status.REJECTED, reason, hard_bounce=hard)
        reason = f"unexpected answer from Postmark ({status}): {said}"
        return _store(results, items, Status.TEMPORARY, reason)


def _store(results: dict[int, Result], items: list[_Item], status: Status, reason="", **extra):
    for item in items:
        results[item.index] = Result(item.message.key, status, reason, **extra)


def _describe(exc: BaseException) -> str:
    # requests nests urllib3's errors; the innermost says what happened, without the URL twice.
    inner = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    return (
        api.one_line(reason if isinstance(reason, BaseException) else inner) or type(exc).__name__
    )
