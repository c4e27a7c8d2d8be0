"""The one place SES is spoken to: credentials, region, the boto3 sesv2 client, its errors."""

# Retries are boto3's default, and a retried SendEmail whose first answer was lost is a
# second copy in someone's inbox: the client makes exactly one attempt, and the engine
# decides what happens to a message whose answer never came (UNKNOWN, not sent again).

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import boto3
import botocore.config
import botocore.exceptions as bx

from newsletter.config import SECRET_KEYS, Config
from newsletter.errors import ConfigError

KEY_ID_ENV = SECRET_KEYS[("ses", "aws_access_key_id")]
SECRET_ENV = SECRET_KEYS[("ses", "aws_secret_access_key")]
TOKEN_ENV = "AWS_SESSION_TOKEN"
MAX_RAW_BYTES = 40 * 1024 * 1024  # a raw message, base64-encoded as it travels
DEFAULT_THROTTLE_WAIT = 1.0

THROTTLING = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
)
# Refusals of this one message: the rest of the send goes on.
MESSAGE_CODES = frozenset({"MessageRejected", "BadRequestException"})
# The account, sender or settings cannot send at all: every further message would meet the same.
ACCOUNT_CODES = {
    "AccountSuspendedException": "the SES account is suspended from sending",
    "SendingPausedException": "sending is paused for this SES account or configuration set",
    "MailFromDomainNotVerifiedException": "from_email's MAIL FROM domain is not verified in SES",
    "NotFoundException": "SES does not know a resource named here: check [ses] configuration_set",
    "AccessDeniedException": "these AWS credentials may not call ses:SendEmail",
    "UnrecognizedClientException": f"SES does not recognize the credentials: check {KEY_ID_ENV}",
    "InvalidClientTokenId": f"SES does not recognize the credentials: check {KEY_ID_ENV}",
    "InvalidSignatureException": f"SES refused the request signature: check {SECRET_ENV}",
    "SignatureDoesNotMatch": f"SES refused the request signature: check {SECRET_ENV}",
    "ExpiredTokenException": f"the AWS session token has expired: renew {TOKEN_ENV}",
    "ExpiredToken": f"the AWS session token has expired: renew {TOKEN_ENV}",
}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def check(config: Config, env: Mapping[str, str]) -> None:
    """ConfigError unless region, endpoint and credentials can work; connects to nothing."""
    region = config.ses.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(
            "[ses] region is not set: name the SES region you send from, e.g. eu-west-1"
        )
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", region):
        raise ConfigError(f"[ses] region {region!r} is not an AWS region, e.g. eu-west-1")
    url = config.ses.endpoint_url
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(f"[ses] endpoint_url {url!r} is not a URL: leave it out for AWS's own")
    name = config.ses.configuration_set
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ConfigError(f"[ses] configuration_set {name!r} is not a configuration set name")
    has_id, has_secret = bool(env.get(KEY_ID_ENV)), bool(env.get(SECRET_ENV))
    if has_id != has_secret:
        raise ConfigError(f"set both {KEY_ID_ENV} and {SECRET_ENV}, or neither (AWS_PROFILE)")


def region_of(config: Config, env: Mapping[str, str]) -> str:
    return config.ses.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""


def client(config: Config, env: Mapping[str, str]):
    """A sesv2 client making one attempt per call; keys from env, else the AWS chain."""
    keys = {}
    if env.get(KEY_ID_ENV):
        keys = {
            "aws_access_key_id": env[KEY_ID_ENV],
            "aws_secret_access_key": env[SECRET_ENV],
            "aws_session_token": env.get(TOKEN_ENV) or None,
        }
    session = boto3.session.Session(
        profile_name=None if keys else (env.get("AWS_PROFILE") or None), **keys
    )
    settings = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=config.ses.timeout,
        read_timeout=config.ses.timeout,
        max_pool_connections=2,
    )
    try:
        return session.client(
            "sesv2",
            region_name=region_of(config, env),
            endpoint_url=config.ses.endpoint_url or None,
            config=settings,
        )
    except bx.ProfileNotFound as exc:
        raise ConfigError(f"AWS_PROFILE: {exc}") from None


@dataclass(frozen=True)
class Answer:
    """An error answer: (code, message, HTTP status, seconds to wait if it said)."""

    code: str
    message: str
    status: int
    retry_after: float | None


def answer_of(exc: bx.ClientError) -> Answer:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    headers = meta.get("HTTPHeaders", {}) or {}
    wait = None
    with contextlib.suppress(ValueError):
        wait = max(0.0, float(headers.get("retry-after", "")))
    return Answer(
        str(error.get("Code", "")),
        one_line(error.get("Message", "")),
        int(meta.get("HTTPStatusCode") or 0),
        wait,
    )


def tag(value: str) -> str:
    """An EmailTags value: SES allows letters, digits, _ and - only, up to 256."""
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


def one_line(value) -> str:
    return " ".join(str(value or "").split())[:300]
