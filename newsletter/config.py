"""newsletter.toml -> a frozen Config; every key overridable from the environment."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.errors import ConfigError
from newsletter.sections import (  # noqa: F401  (re-exported: callers import them from here)
    DoctorConfig,
    MailgunConfig,
    PostmarkConfig,
    ResendConfig,
    SendConfig,
    SendgridConfig,
    ServeConfig,
    SesConfig,
    SmtpConfig,
    StoreConfig,
    SubscribeConfig,
    TrackingConfig,
)
from newsletter.theme import ThemeConfig, check_theme

CONFIG_NAME = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"

# Secrets are read from the environment only; naming one in the file is an error that says so.
SECRET_KEYS = {
    ("smtp", "password"): "NEWSLETTER_SMTP_PASSWORD",
    ("sendgrid", "api_key"): "SENDGRID_API_KEY",
    ("postmark", "server_token"): "POSTMARK_SERVER_TOKEN",
    ("postmark", "webhook_password"): "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD",
    ("resend", "api_key"): "RESEND_API_KEY",
    ("resend", "webhook_secret"): "RESEND_WEBHOOK_SECRET",
    ("ses", "aws_access_key_id"): "AWS_ACCESS_KEY_ID",
    ("ses", "aws_secret_access_key"): "AWS_SECRET_ACCESS_KEY",
    ("mailgun", "api_key"): "MAILGUN_API_KEY",
    ("mailgun", "webhook_signing_key"): "MAILGUN_WEBHOOK_SIGNING_KEY",
    (None, "secret"): "NEWSLETTER_SECRET",
}


@dataclass(frozen=True)
class Config:
    name: str
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    base_url: str | None = None
    template: str = "default"
    list: str = "main"
    lang: str = "en"  # the <html lang>, unless an issue's front matter says otherwise
    dir: str = "auto"  # ltr, rtl or auto (the reader's client decides)
    send: SendConfig = field(default_factory=SendConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    sendgrid: SendgridConfig = field(default_factory=SendgridConfig)
    postmark: PostmarkConfig = field(default_factory=PostmarkConfig)
    resend: ResendConfig = field(default_factory=ResendConfig)
    ses: SesConfig = field(default_factory=SesConfig)
    mailgun: MailgunConfig = field(default_factory=MailgunConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    subscribe: SubscribeConfig = field(default_factory=SubscribeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    theme: ThemeConfig = field(default_factory=ThemeConfig)
    # Where the file was found; every workspace path is relative to it.
    root: Path = Path(".")
    path: Path | None = None

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def state_dir(self) -> Path:
        """Git-ignored folder for the ledger, the generated secret and other machine state."""
        return self.root / ".newsletter"

    @property
    def sender_domain(self) -> str:
        return self.from_email.rpartition("@")[2]


SECTIONS: dict[str, type] = {
    "send": SendConfig,
    "smtp": SmtpConfig,
    "sendgrid": SendgridConfig,
    "postmark": PostmarkConfig,
    "resend": ResendConfig,
    "ses": SesConfig,
    "mailgun": MailgunConfig,
    "serve": ServeConfig,
    "doctor": DoctorConfig,
    "store": StoreConfig,
    "subscribe": SubscribeConfig,
    "tracking": TrackingConfig,
    "theme": ThemeConfig,
}
_INTERNAL = {"root", "path"}


def find_config(start: Path | None = None) -> Path:
    """Walk up from start (the current directory) to the nearest newsletter.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} in {here} or any parent folder; "
        "run `newsletter init DIR` or pass --config FILE"
    )


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read newsletter.toml (found by walking up when not given) and apply env overrides."""
    env = os.environ if env is None else env
    path = find_config() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, env=env, source=str(path), root=path.resolve().parent, path=path)


def config_from_dict(
    data: Mapping[str, object],
    *,
    env: Mapping[str, str] | None = None,
    source: str = CONFIG_NAME,
    root: Path = Path("."),
    path: Path | None = None,
) -> Config:
    env = {} if env is None else env
    top: dict[str, object] = {}
    sections: dict[str, object] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{key}] must be a table")
            sections[key] = _build(SECTIONS[key], value, env, source, key)
        else:
            top[key] = value
    for name, cls in SECTIONS.items():
        sections.setdefault(name, _build(cls, {}, env, source, name))
    config = _build(Config, top, env, source, None, extra=sections)
    if config.base_url is not None:
        env_name = ENV_PREFIX + "BASE_URL"
        check_base_url(config.base_url, env_name if env_name in env else f"{source}: base_url")
    _check_from_email(config.from_email, env, source)
    _check_language(config, env, source)
    check_theme(config.theme, source)
    if config.doctor.serve_url is not None:
        env_name = ENV_PREFIX + "DOCTOR_SERVE_URL"
        where = env_name if env_name in env else f"{source}: doctor.serve_url"
        check_base_url(config.doctor.serve_url, where)
    if config.store.url is not None:
        _check_store_url(config.store.url, env, source)
    return dataclasses.replace(config, root=root, path=path)


def _check_store_url(value: str, env: Mapping[str, str], source: str) -> None:
    """A postgresql:// URL; with a password only when it comes from the environment."""
    from_env = ENV_PREFIX + "STORE_URL" in env
    where = ENV_PREFIX + "STORE_URL" if from_env else f"{source}: store.url"
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{where}: must be a postgresql:// URL (or absent for the files store)")
    if not from_env and parts.password:
        raise ConfigError(
            f"{where}: holds a password; put the URL in NEWSLETTER_STORE_URL or the password "
            "in PGPASSWORD (or ~/.pgpass), never in newsletter.toml"
        )


# RFC 3986 characters, less those that would end a `<url>` in List-Unsubscribe or an HTML attribute.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def is_loopback(host: str) -> bool:
    """Whether a host name (no port, IPv6 without brackets) is this machine's loopback."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(value: str, where: str) -> None:
    """Links in messages are built from base_url: refuse anything but https (http on loopback)."""
    if not _URL_CHARS.fullmatch(value):
        raise ConfigError(
            f"{where}: {value!r} has characters a URL cannot hold here "
            "(spaces, quotes, <, >, or non-ASCII; write an IDN host as xn--…)"
        )
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port  # ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(
            f"{where}: {value!r} is not an https:// URL (http:// is allowed only for localhost)"
        )
    if not host:
        raise ConfigError(f"{where}: {value!r} has no host name")
    if parts.query or parts.fragment or "@" in parts.netloc or value.endswith(("?", "#")):
        raise ConfigError(
            f"{where}: {value!r} must be a plain address without user, query or fragment"
        )
    if scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{where}: {value!r} uses http://, which is allowed only for localhost; use https://"
        )


def _check_from_email(value: str, env: Mapping[str, str], source: str) -> None:
    """Every message, link and `serve` page needs a real sender address: refuse one early."""
    import email_validator

    try:
        email_validator.validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        name = ENV_PREFIX + "FROM_EMAIL"
        where = name if name in env else source
        raise ConfigError(
            f"{where}: from_email {value!r} is not an email address ({exc})"
        ) from None


def _check_language(config: Config, env: Mapping[str, str], source: str) -> None:
    from newsletter.language import dir_problem, lang_problem

    for key, problem in (("lang", lang_problem(config.lang)), ("dir", dir_problem(config.dir))):
        if problem:
            name = ENV_PREFIX + key.upper()
            raise ConfigError(f"{name if name in env else source}: {problem}")


def _build(cls, values, env, source, section, extra=None):
    hints = typing.get_type_hints(cls)
    names = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in _INTERNAL and f.name not in SECTIONS
    ]
    prefix = f"{section}." if section else ""
    for key in values:
        if key not in names:
            secret_env = SECRET_KEYS.get((section, key))
            if secret_env:
                raise ConfigError(
                    f"{source}: {prefix}{key}: secrets are not read from the config file; "
                    f"set {secret_env} in the environment"
                )
            known = ", ".join(names)
            raise ConfigError(f"{source}: unknown key {prefix}{key} (known: {known})")
    kwargs: dict[str, object] = dict(extra or {})
    for name in names:
        env_name = ENV_PREFIX + (f"{section}_{name}" if section else name).upper()
        if env_name in env:
            kwargs[name] = _coerce(env[env_name], hints[name], env_name, from_env=True)
        elif name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{source}: {prefix}{name}")
    for f in dataclasses.fields(cls):
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and f.name not in kwargs:
            raise ConfigError(f"{source}: missing required key {prefix}{f.name}")
    return cls(**kwargs)


def _coerce(value, hint, where: str, from_env: bool = False):
    """Check (and, for environment strings, convert) a value against a field's type."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None or (from_env and value == ""):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin is dict:  # names to strings: a TOML table, or NAME=VALUE,... in the environment
        if from_env:
            pairs = (part.partition("=") for part in value.split(",") if part.strip())
            return {k.strip(): v.strip() for k, _, v in pairs}
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        raise ConfigError(f"{where}: expected a table of strings, got {_kind(value)}")
    if origin is list:
        if from_env:
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{where}: expected a list of strings, got {_kind(value)}")
    if hint is bool:
        if from_env:
            lowered = value.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_kind(value)}")
    if hint in (int, float):
        if from_env:
            try:
                return hint(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_kind(value)}")
        if hint is int and isinstance(value, float):
            raise ConfigError(f"{where}: expected a whole number, got {value}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_kind(value)}")
        return value
    raise AssertionError(f"unsupported config type {hint}")  # a bug in the schema, not user input


def _kind(value) -> str:
    return {dict: "a table", list: "a list", bool: "a boolean", str: "a string"}.get(
        type(value), type(value).__name__
    )
