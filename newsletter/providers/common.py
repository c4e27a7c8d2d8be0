"""What providers do alike: secrets from the environment, API base URLs, Retry-After, packing
recipients into requests and measuring them, and the age of a signed webhook delivery."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii
from typing import Any

from newsletter.errors import ConfigError

# json.dumps(value) with its defaults, without building an encoder per call (a third of
# its time for a small value): the same text, checked in tests/test_providers_sizes.py.
# No circular-reference check: what is encoded is built here, never from itself.
_ENCODE = (
    c_make_encoder(
        None, JSONEncoder().default, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    if c_make_encoder is not None
    else None
)


def json_text(value: Any) -> str:
    """json.dumps(value), as the providers' clients write it; faster for many small values."""
    if _ENCODE is None:  # an interpreter without the json accelerator
        import json

        return json.dumps(value)
    return "".join(_ENCODE(value, 0))


def env_secret(env: Mapping[str, str], name: str, how: str) -> str:
    """The secret in env[name], stripped; ConfigError saying `how` to get one when unusable."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {how} and export it as {name}")
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ConfigError(f"{name} contains spaces or control characters: copy it again")
    return value


def api_base(value: str, key: str, example: str) -> str:
    """An API base URL without its trailing slash; ConfigError naming `key` when it is not one."""
    host = value.rstrip("/")
    if not host.startswith(("https://", "http://")):
        raise ConfigError(f"{key} {host!r} is not a URL: use {example}")
    return host


def seconds_from(value: str | None) -> float | None:
    """A Retry-After value (seconds or an HTTP date) as seconds to wait; None if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def timestamp_age(timestamp: str, tolerance: float, now: float | None = None) -> str | None:
    """Why a signed delivery's unix timestamp is refused (not a number, too old or too far
    ahead), or None when it is within `tolerance` seconds."""
    try:
        sent = int(timestamp)
    except ValueError:
        return "timestamp is not a number"
    age = (time.time() if now is None else now) - sent
    if abs(age) > tolerance:
        return f"timestamp is {age:.0f} s off (allowed: {tolerance:.0f} s)"
    return None


def place(
    open_requests: list[Any],
    new: Callable[[], Any],
    size: int,
    address: str,
    *,
    max_items: int,
    max_bytes: int,
) -> tuple[Any, bool]:
    """The first open request with room for one more recipient of `size` bytes (under
    `max_items` recipients and `max_bytes`, `address` not in it yet), else a `new()` one
    (True); the recipient's size and address are counted into it. A request has `items`,
    `size` and `addresses`."""
    for request in open_requests:
        if (
            len(request.items) < max_items
            and address not in request.addresses
            and request.size + size <= max_bytes
        ):
            opened = False
            break
    else:
        request, opened = new(), True
        open_requests.append(request)
    request.size += size
    request.addresses.add(address)
    return request, opened


def shaped_size(
    fixed_parts: dict[tuple, int], shape: tuple, strings: Sequence, measure: Callable[[], int]
) -> int:
    """The JSON bytes of a value, without encoding it all: values of one `shape` (the same
    keys everywhere) differ only in their `strings`, so the JSON of one is its shape's fixed
    part (`measure()` minus its strings, once per shape, kept in `fixed_parts`) plus each
    string encoded alone, as json.dumps encodes it (ASCII, escaped)."""
    try:
        joined = "".join(strings)
    except TypeError:  # not all strings
        return measure()
    # json escapes character by character, so the strings encoded one by one are as long
    # as their concatenation encoded once, plus the quotes around each.
    measured = len(encode_basestring_ascii(joined)) - 2 + 2 * len(strings)
    fixed = fixed_parts.get(shape)
    if fixed is None:
        fixed = fixed_parts[shape] = measure() - measured
    return fixed + measured
