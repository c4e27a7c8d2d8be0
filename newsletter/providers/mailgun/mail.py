"""Mailgun's Messages API through the official SDK: batches of up to 1,000 recipients."""

# One request carries the issue's HTML and text once, with %recipient.x% placeholders where
# the merge fields are, one `to` per recipient and `recipient-variables` holding each one's
# values, subject and unsubscribe URL (Mailgun's batch sending: each recipient gets a message
# of their own, and sees no other address). Mailgun answers for the request as a whole.

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formataddr

import requests

from newsletter.config import Config
from newsletter.errors import ProviderError, SubscriberError
from newsletter.message import (
    NAME_MAX,
    NEEDS_SMTPUTF8,
    Campaign,
    OutgoingMessage,
    header_safe,
    wire_address,
)
from newsletter.providers.base import Provider, Result, SendOptions, Status, Step
from newsletter.providers.common import json_text, place
from newsletter.providers.mailgun import api

HTML_VAR = "h{}"  # recipient variable names of the merge fields
TEXT_VAR = "t{}"
MAX_TAG = 128
# Bytes one multipart field adds beyond its name and value, as requests encodes it:
# --<32-hex boundary>\r\nContent-Disposition: form-data; name=""\r\n\r\n<value>\r\n
FIELD_OVERHEAD = 2 + 32 + 2 + len('Content-Disposition: form-data; name=""') + 4 + 2
CLOSING = 2 + 32 + 4  # --<boundary>--\r\n


def placeholder(name: str) -> str:
    return f"%recipient.{name}%"


def field_size(name: str, value: str) -> int:
    return FIELD_OVERHEAD + len(name) + len(value.encode())


@dataclass
class _Shared:
    """What every request of one campaign carries: computed once per campaign."""

    campaign: Campaign
    fields: list[tuple[str, str]]  # the request without `to` and recipient-variables
    size: int  # their multipart bytes, closing boundary and the variables' field included


@dataclass
class _Item:
    index: int
    message: OutgoingMessage
    to: str
    address: str  # the key of its recipient variables
    entry: str  # `"address": {...variables}`, JSON-encoded once: measured and sent as is
    size: int  # bytes it adds: its `to` field and its entry in recipient-variables


@dataclass
class _Request:
    shared: _Shared
    items: list[_Item] = field(default_factory=list)
    size: int = 0
    addresses: set[str] = field(default_factory=set)

    def fields(self) -> list[tuple[str, str]]:
        # As json.dumps of the object would write it; addresses are unique per request.
        variables = "{" + ", ".join(item.entry for item in self.items) + "}"
        return [
            *self.shared.fields,
            *(("to", item.to) for item in self.items),
            ("recipient-variables", variables),
        ]


class MailgunProvider(Provider):
    name = "mailgun"
    max_batch = api.MAX_RECIPIENTS
    default_workers = 2
    supports_send_at = True  # o:deliverytime
    max_schedule_ahead = 72 * 3600  # Mailgun schedules up to 3 days ahead (7 on some plans)
    supports_sandbox = True  # o:testmode: accepted and validated, delivered to nobody
    reports_handovers = True
    max_request_bytes = api.MAX_MESSAGE_BYTES

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        super().__init__(config, env, options)
        self._client = None
        self._shared: _Shared | None = None

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        super().check(config, env, options)
        api.check(config, env)

    @property
    def where(self) -> str:
        return f"{api.base_url(self.config)}/v3/{api.domain(self.config)}/messages"

    def _api(self):
        if self._client is None:
            self._client = api.client(self.config, self.env)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- translate -----------------------------------------------------------------------

    def _shared_for(self, campaign: Campaign, first: OutgoingMessage) -> _Shared:
        if self._shared is not None and self._shared.campaign is campaign:
            return self._shared
        cfg, rendered = self.config, campaign.rendered
        _, html, text = rendered.with_tokens(placeholder(HTML_VAR), placeholder(TEXT_VAR))
        personal_subject = len(rendered.subject_parts) > 1
        subject = (
            placeholder("subject")
            if personal_subject
            else header_safe(campaign.subject_prefix + rendered.subject_parts[0])
        )
        sender = formataddr((header_safe(cfg.from_name or cfg.name), wire_address(cfg.from_email)))
        fields = [("from", sender), ("subject", subject), ("text", text), ("html", html)]
        fields += [
            ("h:List-Unsubscribe", placeholder("unsubscribe")),
            ("h:List-Id", campaign.list_id_header),
        ]
        if first.one_click:  # base_url decides it for the whole campaign
            fields.append(("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        if cfg.send.feedback_id:
            fields.append(("h:Feedback-ID", header_safe(cfg.send.feedback_id)))
        if cfg.reply_to:
            fields.append(("h:Reply-To", wire_address(cfg.reply_to)))
        fields += [
            ("o:tag", campaign.issue_slug[:MAX_TAG]),
            # Tracking would rewrite every link, the unsubscribe links included.
            ("o:tracking", "no"),
            ("o:tracking-clicks", "no"),
            ("o:tracking-opens", "no"),
            ("v:issue", campaign.issue_slug),
            ("v:list", campaign.list_name),
        ]
        if self.options.send_at is not None:
            fields.append(("o:deliverytime", api.delivery_time(self.options.send_at)))
        if self.options.sandbox:
            fields.append(("o:testmode", "yes"))
        size = sum(field_size(k, v) for k, v in fields) + CLOSING
        # The variables' field, as "{}": each item adds its entry and a ", " (one too many).
        size += field_size("recipient-variables", "{}") - 2
        self._shared = _Shared(
            campaign=campaign,
            fields=fields,
            size=size,
        )
        return self._shared

    @classmethod
    def encode_ahead(cls, message: OutgoingMessage) -> tuple[str, str, str]:
        """(`to`, address, recipient-variables entry): the read-ahead's part of the request."""
        return _recipient(message)

    def _item(self, shared: _Shared, index: int, message: OutgoingMessage) -> _Item:
        to, address, entry = self.ahead_of(message) or _recipient(message)
        size = len(entry) + 2 + field_size("to", to)  # and the ", " after it
        return _Item(index, message, to, address, entry, size)

    def plan(self, messages: Sequence[OutgoingMessage]) -> tuple[list[Step], dict[int, Result]]:
        """Requests of up to 1,000 recipients and 25 MB, no address twice in one."""
        refused: dict[int, Result] = {}
        requests_: list[_Request] = []
        open_requests: dict[int, list[_Request]] = {}
        for index, message in enumerate(messages):
            shared = self._shared_for(message.campaign, message)
            try:
                item = self._item(shared, index, message)
            except (SubscriberError, UnicodeError) as exc:
                refused[index] = Result(message.key, Status.REJECTED, str(exc))
                continue
            if shared.size + item.size > self.max_request_bytes:
                reason = "the issue is too large for one Mailgun request (25 MB)"
                refused[index] = Result(message.key, Status.REJECTED, reason)
                continue
            request, opened = place(
                open_requests.setdefault(id(shared.campaign), []),
                lambda shared=shared: _Request(shared, size=shared.size),
                item.size,
                item.address.lower(),
                max_items=api.MAX_RECIPIENTS,
                max_bytes=self.max_request_bytes,
            )
            if opened:
                requests_.append(request)
            request.items.append(item)
        return [Step(tuple(i.index for i in r.items), r) for r in requests_], refused

    # --- transport -----------------------------------------------------------------------

    def transport(
        self, step: Step, messages: Sequence[OutgoingMessage], results: dict[int, Result]
    ) -> None:
        """One POST /v3/<domain>/messages; a 413 splits it in halves."""
        request = step.payload
        self._deliver(request.shared, request.items, results)

    def _deliver(self, shared: _Shared, items: list[_Item], results: dict[int, Result]) -> None:
        from mailgun.handlers.error_handler import ApiError

        fields = _Request(shared, items).fields()
        try:
            response = self._api().messages.create(
                domain=api.domain(self.config),
                files=[(name, (None, value)) for name, value in fields],  # multipart/form-data
            )
        except ApiError as exc:
            inner = api.cause(exc)
            if not isinstance(inner, requests.RequestException):
                raise ProviderError(f"Mailgun client refused the request: {exc}") from None
            if api.sent(inner):
                reason = f"no answer from Mailgun at {self.where} after sending: "
                return _store(results, items, Status.UNKNOWN, reason + api.describe(inner))
            reason = f"cannot reach Mailgun at {self.where}: {api.describe(inner)}"
            return _store(results, items, Status.TEMPORARY, reason)
        except (ValueError, TypeError) as exc:  # the SDK's own checks of what it is given
            raise ProviderError(
                f"Mailgun client refused the request: {api.one_line(exc)}"
            ) from None
        if response.status_code == 200:
            try:
                message_id = response.json().get("id")
            except (ValueError, AttributeError):
                message_id = None
            reason = "test mode: accepted by Mailgun, not delivered" if self.options.sandbox else ""
            return _store(results, items, Status.ACCEPTED, reason, provider_id=message_id)
        return self._refusal(shared, items, results, response)

    def _refusal(self, shared, items, results, response: requests.Response) -> None:
        status, said = response.status_code, api.message(response)
        if status == 401:
            raise ProviderError(f"Mailgun refused the API key (401): check {api.API_KEY_ENV}")
        if status == 403:
            raise ProviderError(
                f"Mailgun refused the request (403): {said}; check that {api.API_KEY_ENV} "
                "may send for [mailgun] domain"
            )
        if status in (404, 405):
            raise ProviderError(
                f"Mailgun answered {status} at {self.where} ({said}): check [mailgun] domain "
                f"and base_url (EU domains use {api.REGIONS['EU']})"
            )
        if status == 413:
            if len(items) == 1:
                reason = "Mailgun refused the message as too large (413)"
                return _store(results, items, Status.REJECTED, reason)
            half = len(items) // 2
            self._deliver(shared, items[:half], results)
            return self._deliver(shared, items[half:], results)
        if status == 429 or status >= 500:
            what = "rate limit" if status == 429 else "server error"
            wait = api.retry_after(response.headers)
            if wait is None and status == 429:
                wait = api.DEFAULT_429_RETRY_AFTER
            reason = f"Mailgun {what} ({status}): {said}"
            return _store(results, items, Status.TEMPORARY, reason, retry_after=wait)
        if status == 400:
            reason = f"Mailgun rejected the request (400): {said}"
            return _store(results, items, Status.REJECTED, reason)
        reason = f"unexpected answer from Mailgun ({status}): {said}"
        return _store(results, items, Status.TEMPORARY, reason)


def _recipient(message: OutgoingMessage) -> tuple[str, str, str]:
    """The recipient's `to` field, address, and `"address": {...variables}` as JSON text."""
    if message.needs_smtputf8:
        raise SubscriberError(
            f"{NEEDS_SMTPUTF8}: the mailgun provider does not send to such addresses (SMTPUTF8)"
        )
    campaign = message.campaign
    rendered = campaign.rendered
    html_values, text_values, subject = rendered.part_values(message.values)
    address = wire_address(message.to_email)
    name = header_safe(message.to_name or "")[:NAME_MAX].rstrip()
    to = formataddr((name, address), "utf-8") if name else address
    names = rendered.tags(HTML_VAR, TEXT_VAR)
    variables = {var: html_values[i] for var, i in names.html}
    variables.update({var: text_values[i] for var, i in names.text})
    variables["unsubscribe"] = message.list_unsubscribe
    if len(rendered.subject_parts) > 1:  # a personal subject
        variables["subject"] = header_safe(campaign.subject_prefix + subject)
    # ASCII: escaped as json.dumps escapes it.
    return to, address, f"{json_text(address)}: {json_text(variables)}"


def _store(results: dict[int, Result], items: list[_Item], status: Status, reason="", **extra):
    for item in items:
        results[item.index] = Result(item.message.key, status, reason, **extra)
