"""Resend's batch sending through the official SDK: up to 100 emails per request, idempotent."""

# Every request carries an Idempotency-Key made from the issue, the list (the send) and the
# request's recipients. Resend answers a repeated key with its first answer for 24 hours and
# sends nothing again, so a request whose answer was lost (the connection dropped after it
# went out) is simply sent again with the same key: the recipients get the issue once.
# Requests are made deterministically from the same recipients, so a later run that sends
# the same recipients again (--resend-unknown) also uses the same key and body.

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr

import resend
from resend.exceptions import ResendError

from newsletter.errors import ProviderError, SubscriberError
from newsletter.message import NAME_MAX, NEEDS_SMTPUTF8, Campaign, OutgoingMessage, header_safe
from newsletter.providers.base import Provider, Result, SendOptions, Status, Step
from newsletter.providers.resend import api
from newsletter.providers.resend.api import API_KEY_ENV

# Waits before sending a request again after its answer was lost; all well inside the
# idempotency window. After the last, its recipients stay unknown.
RETRY_WAITS = (0.2, 1.0, 3.0)
DEFAULT_429_RETRY_AFTER = 1.0  # Resend allows 2 requests per second by default
_TAG = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class _Request:
    emails: list[dict]
    key: str  # the Idempotency-Key


def idempotency_key(campaign: Campaign, keys: Sequence[str]) -> str:
    """The same for the same send of an issue to the same recipients; a test send's own."""
    parts = [campaign.issue_slug, campaign.list_name, campaign.subject_prefix]
    if campaign.subject_prefix:
        parts.append(campaign.boundary)  # test sends go again when asked: never deduplicated
    digest = hashlib.sha256("\0".join([*parts, *sorted(keys)]).encode()).hexdigest()
    return f"newsletter-{digest}"


def _tag(value: str) -> str:
    return _TAG.sub("_", value)[:256] or "_"


class ResendProvider(Provider):
    name = "resend"
    max_batch = api.MAX_BATCH
    default_workers = 2
    reports_handovers = True
    idempotent = True  # a request sent again within Resend's window is not delivered again

    @classmethod
    def check(cls, config, env, options: SendOptions) -> None:
        super().check(config, env, options)
        api.api_key(env)
        api.api_host(config)

    # --- translate -----------------------------------------------------------------------

    def _email(self, message: OutgoingMessage) -> dict:
        campaign, cfg = message.campaign, self.config
        if message.needs_smtputf8:
            raise SubscriberError(
                f"{NEEDS_SMTPUTF8}: the {self.name} provider does not send to such addresses "
                "(SMTPUTF8)"
            )
        filled = campaign.rendered.fill_values(message.values)
        headers = {"List-Id": campaign.list_id_header, **message.personal_headers()}
        if cfg.send.feedback_id:
            headers["Feedback-ID"] = header_safe(cfg.send.feedback_id)
        name = header_safe(message.to_name or "")[:NAME_MAX].strip()
        email = {
            "from": formataddr((header_safe(cfg.from_name or cfg.name), cfg.from_email)),
            "to": [formataddr((name, message.to_email)) if name else message.to_email],
            "subject": header_safe(campaign.subject_prefix + filled.subject),
            "html": filled.html,
            "text": filled.text,
            "headers": headers,
            "tags": [
                {"name": "issue", "value": _tag(campaign.issue_slug)},
                {"name": "list", "value": _tag(campaign.list_name)},
            ],
        }
        if cfg.reply_to:
            email["reply_to"] = [cfg.reply_to]
        return email

    def plan(self, messages: Sequence[OutgoingMessage]) -> tuple[list[Step], dict[int, Result]]:
        """One request per campaign in the batch; recipients Resend cannot take are refused."""
        refused: dict[int, Result] = {}
        groups: dict[int, tuple[Campaign, list[int], list[dict]]] = {}
        for index, message in enumerate(messages):
            try:
                email = self._email(message)
            except (SubscriberError, UnicodeError) as exc:
                refused[index] = Result(message.key, Status.REJECTED, str(exc))
                continue
            _, indexes, emails = groups.setdefault(id(message.campaign), (message.campaign, [], []))
            indexes.append(index)
            emails.append(email)
        steps = []
        for campaign, indexes, emails in groups.values():
            key = idempotency_key(campaign, [messages[i].key for i in indexes])
            steps.append(Step(tuple(indexes), _Request(emails, key)))
        return steps, refused

    # --- transport -----------------------------------------------------------------------

    def transport(
        self, step: Step, messages: Sequence[OutgoingMessage], results: dict[int, Result]
    ) -> None:
        """One request; sent again with the same key while its answer is lost, then unknown."""
        request: _Request = step.payload
        options = {"idempotency_key": request.key, "batch_validation": "permissive"}
        sent, reason = False, ""
        for wait in (*RETRY_WAITS, None):
            api.use(self.config, self.env)
            try:
                response = resend.Batch.send(request.emails, options)
            except ResendError as exc:
                lost = exc.__context__ if isinstance(exc.__context__, api.Transport) else None
                if lost is not None:
                    sent = sent or lost.sent
                    reason = str(lost)
                elif exc.error_type == "concurrent_idempotent_requests":
                    sent, reason = True, "Resend is still handling the first request"
                else:
                    return self._refusal(step, messages, results, exc)
                if wait is not None:
                    time.sleep(wait)
                continue
            return self._accepted(step, messages, results, response)
        host = api.api_host(self.config)
        if sent:
            reason = f"no answer from Resend at {host} after sending: {reason}"
            return _store(step, messages, results, Status.UNKNOWN, reason)
        reason = f"cannot reach Resend at {host}: {reason}"
        _store(step, messages, results, Status.TEMPORARY, reason)

    def _accepted(self, step, messages, results, response) -> None:
        errors = {}
        for error in response.get("errors") or []:
            if isinstance(error, dict) and isinstance(error.get("index"), int):
                errors[error["index"]] = str(error.get("message") or "refused")
        ids = [item.get("id") for item in response.get("data") or [] if isinstance(item, dict)]
        taken = [n for n in range(len(step.indexes)) if n not in errors]
        by_position = dict(zip(taken, ids, strict=False)) if len(ids) == len(taken) else {}
        for n, index in enumerate(step.indexes):
            key = messages[index].key
            if n in errors:
                reason = f"Resend rejected this email (422): {errors[n]}"
                results[index] = Result(key, Status.REJECTED, reason)
            else:
                results[index] = Result(key, Status.ACCEPTED, provider_id=by_position.get(n))

    def _refusal(self, step, messages, results, exc: ResendError) -> None:
        code = int(exc.code) if str(exc.code).isdigit() else 0
        kind, said = exc.error_type, " ".join(str(exc.message).split())[:300]
        host = api.api_host(self.config)
        if code == 401 or kind in ("missing_api_key", "invalid_api_key", "restricted_api_key"):
            raise ProviderError(f"Resend refused the API key ({code}): check {API_KEY_ENV}")
        if code == 403:
            raise ProviderError(f"Resend refused the request (403): {said}; check from_email")
        if code in (404, 405):
            raise ProviderError(
                f"Resend answered {code} at {host}/emails/batch: check [resend] host"
            )
        if kind in ("daily_quota_exceeded", "monthly_quota_exceeded"):
            raise ProviderError(f"Resend refused the request ({code}): {said}")
        if code == 409 and kind == "invalid_idempotent_request":
            # Resend has this key from a request with another body: those recipients were
            # handed over before (the issue was edited since). Sending under a new key could
            # mail them twice.
            reason = f"Resend already had this batch's Idempotency-Key for another body: {said}"
            return _store(step, messages, results, Status.UNKNOWN, reason)
        if code == 429 or code >= 500:
            what = "rate limit" if code == 429 else "server error"
            wait = api.retry_after(exc.headers)
            if wait is None and code == 429:
                wait = DEFAULT_429_RETRY_AFTER
            # Retried by the send with the same key: safe even after an unanswered try.
            reason = f"Resend {what} ({code}): {said}"
            return _store(step, messages, results, Status.TEMPORARY, reason, retry_after=wait)
        if 400 <= code < 500:
            reason = f"Resend rejected the request ({code}): {said}"
            return _store(step, messages, results, Status.REJECTED, reason)
        reason = f"unexpected answer from Resend ({exc.code}): {said}"
        _store(step, messages, results, Status.TEMPORARY, reason)


def _store(step, messages, results, status: Status, reason: str = "", **extra) -> None:
    for index in step.indexes:
        results[index] = Result(messages[index].key, status, reason, **extra)
