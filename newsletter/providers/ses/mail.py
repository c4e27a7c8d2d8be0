"""SES v2 SendEmail through boto3: one request per message, its exact MIME bytes as Raw content."""

# Why Raw content and SendEmail rather than SendBulkEmail: bulk sends need a stored SES
# template and build the message themselves from it, so our List-Unsubscribe (with its
# per-recipient token), List-Unsubscribe-Post, List-Id and Message-ID headers and our
# quoted-printable parts would be SES's, not ours; and a bulk call's 50 destinations share
# one template where each of our messages is already complete. Raw content is the message
# exactly as the SMTP and outbox providers write it. One request per message also makes
# every answer the answer for one recipient: a lost answer leaves one message in doubt.

from __future__ import annotations

from collections.abc import Mapping

import botocore.exceptions as bx

from newsletter.config import Config
from newsletter.errors import ProviderError, SubscriberError
from newsletter.message import NEEDS_SMTPUTF8, OutgoingMessage
from newsletter.providers.base import Provider, Result, SendOptions, Status, Unavailable
from newsletter.providers.ses import api


class SesProvider(Provider):
    name = "ses"
    max_batch = 50
    default_workers = 4
    reports_handovers = True  # one message per step: a crash leaves one per worker in doubt

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        super().__init__(config, env, options)
        self._client = None

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        super().check(config, env, options)
        api.check(config, env)

    @property
    def where(self) -> str:
        return self.config.ses.endpoint_url or f"SES in {api.region_of(self.config, self.env)}"

    def _api(self):
        if self._client is None:
            self._client = api.client(self.config, self.env)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(self, message: OutgoingMessage) -> dict:
        """The SendEmail parameters for one message (SubscriberError when SES cannot carry it)."""
        if message.needs_smtputf8:
            raise SubscriberError(
                f"{NEEDS_SMTPUTF8}: the {self.name} provider does not send to such addresses "
                "(SMTPUTF8)"
            )
        raw = message.as_bytes()
        if (len(raw) + 2) // 3 * 4 > api.MAX_RAW_BYTES:
            raise SubscriberError(f"message of {len(raw)} bytes is over SES's 40 MB limit")
        campaign = message.campaign
        params = {
            "FromEmailAddress": self.config.from_email,
            "Destination": {"ToAddresses": [message.to_email]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [
                {"Name": "issue", "Value": api.tag(campaign.issue_slug)},
                {"Name": "list", "Value": api.tag(campaign.list_name)},
            ],
        }
        if self.config.ses.configuration_set:
            params["ConfigurationSetName"] = self.config.ses.configuration_set
        return params

    def send_one(self, message: OutgoingMessage) -> Result:
        key = message.key
        try:
            params = self.request(message)
        except (SubscriberError, UnicodeError) as exc:
            return Result(key, Status.REJECTED, str(exc))
        try:
            answer = self._api().send_email(**params)
        except bx.ClientError as exc:
            return self._refusal(key, api.answer_of(exc))
        except bx.ConnectionError as exc:  # refused, unresolvable, TLS: nothing went out
            raise Unavailable(f"cannot reach {self.where}: {api.one_line(exc)}") from None
        except (bx.HTTPClientError, OSError) as exc:  # lost or timed out after sending
            reason = f"no answer from {self.where} after sending: {api.one_line(exc)}"
            return Result(key, Status.UNKNOWN, reason)
        except bx.ParamValidationError as exc:
            return Result(key, Status.REJECTED, f"SES cannot take this message: {exc}")
        except (bx.NoCredentialsError, bx.PartialCredentialsError):
            raise ProviderError(
                f"no AWS credentials found: set {api.KEY_ID_ENV} and {api.SECRET_ENV}, "
                "or AWS_PROFILE, or give the machine a role"
            ) from None
        except bx.BotoCoreError as exc:  # raised before anything was sent
            raise ProviderError(f"SES client error: {api.one_line(exc)}") from None
        return Result(key, Status.ACCEPTED, provider_id=answer.get("MessageId"))

    def _refusal(self, key: str, answer: api.Answer) -> Result:
        said = f"{answer.code}: {answer.message}" if answer.message else answer.code
        if answer.code in api.ACCOUNT_CODES:
            raise ProviderError(f"{api.ACCOUNT_CODES[answer.code]} ({said})")
        if answer.code in api.THROTTLING or answer.status == 429:
            wait = answer.retry_after or api.DEFAULT_THROTTLE_WAIT
            return Result(key, Status.TEMPORARY, f"SES throttled ({said})", retry_after=wait)
        if answer.status >= 500:
            return Result(key, Status.TEMPORARY, f"SES server error ({answer.status}, {said})")
        if answer.code in api.MESSAGE_CODES:
            return Result(key, Status.REJECTED, f"SES refused this message ({said})")
        if answer.status in (401, 403):
            raise ProviderError(f"SES refused the credentials ({answer.status}, {said})")
        return Result(
            key, Status.TEMPORARY, f"unexpected answer from SES ({answer.status}, {said})"
        )
