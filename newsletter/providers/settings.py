"""What every provider checks the same way: a secret from the environment, an API base URL."""

from __future__ import annotations

from collections.abc import Mapping

from newsletter.errors import ConfigError


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
