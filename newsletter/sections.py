"""The sections of newsletter.toml ([send], [smtp], [serve], [store], ...): one frozen
dataclass each, with its defaults; config.py reads the file into them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SendConfig:
    provider: str = "outbox"
    rate: float | None = None
    workers: int | None = None
    batch_size: int | None = None
    test_to: list[str] = field(default_factory=list)
    feedback_id: str | None = None
    max_consecutive_failures: int = 10


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class SendgridConfig:
    host: str = "https://api.sendgrid.com"
    categories: list[str] = field(default_factory=list)
    asm_group_id: int | None = None
    sandbox: bool = False
    timeout: float = 30.0


@dataclass(frozen=True)
class PostmarkConfig:
    host: str = "https://api.postmarkapp.com"
    message_stream: str = "broadcast"  # a Broadcast stream: newsletters must not go Transactional
    webhook_username: str = "postmark"  # the user in the webhook URL's basic auth credentials
    webhook_allow_ips: list[str] = field(default_factory=list)  # [] = any; else IPs or networks
    timeout: float = 30.0


@dataclass(frozen=True)
class ResendConfig:
    host: str = "https://api.resend.com"
    timeout: float = 30.0


@dataclass(frozen=True)
class SesConfig:
    region: str | None = None  # None = the AWS chain's (AWS_REGION, ~/.aws/config)
    endpoint_url: str | None = None  # None = SES's own endpoint for the region
    configuration_set: str | None = None
    timeout: float = 30.0
    # Where SNS signing certificates may be fetched from (host globs, https only).
    sns_certificate_hosts: list[str] = field(default_factory=lambda: ["sns.*.amazonaws.com"])
    sns_topic_arns: list[str] = field(default_factory=list)  # [] = any topic


@dataclass(frozen=True)
class MailgunConfig:
    domain: str | None = None  # the sending domain as Mailgun knows it, e.g. mg.example.org
    base_url: str = "https://api.mailgun.net"  # EU accounts: https://api.eu.mailgun.net
    timeout: float = 30.0


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    webhook_public_key: str | None = None
    confirm_ttl_hours: int = 48
    webhook_max_age_seconds: int = 300  # older (or later) signed timestamps are refused
    subscribe_lists: list[str] = field(default_factory=list)  # joinable lists; [] = `list`
    subscribe_per_ip_per_hour: int = 10  # subscribe form posts from one client IP
    confirmations_per_address_per_day: int = 3  # confirmation messages to one address
    archive: str = "sent"  # /issues/<slug>.html: "sent" issues only, "all", or "off"
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1"])


@dataclass(frozen=True)
class SubscribeConfig:
    # An issue file mailed by `serve` to each address that confirms (once per address).
    welcome: str | None = None  # for every list
    welcome_lists: dict[str, str] = field(default_factory=dict)  # a list's own; "" = none

    def welcome_for(self, list_name: str) -> str | None:
        return self.welcome_lists.get(list_name, self.welcome) or None


@dataclass(frozen=True)
class StoreConfig:
    # None: the files store (CSV lists, SQLite in .newsletter/); postgresql://...: PostgreSQL.
    # A password belongs in NEWSLETTER_STORE_URL or PGPASSWORD, never in the file.
    url: str | None = None
    pool_size: int = 10  # connections one `serve` process keeps open
    lease_seconds: float = 60.0  # a sender's claim on a batch; after it, the batch is unknown


@dataclass(frozen=True)
class DoctorConfig:
    nameservers: list[str] = field(default_factory=list)  # host or host:port; [] = the system's
    dkim_selectors: list[str] = field(default_factory=list)  # [] = the provider's usual ones
    serve_url: str | None = None  # where to POST the one-click check instead of base_url
    timeout: float = 5.0


@dataclass(frozen=True)
class TrackingConfig:
    """Click and open tracking of our own (newsletter.tracking); both off unless asked for."""

    clicks: bool = False  # links of the HTML part go through base_url/c/<token>
    opens: bool = False  # a 1x1 image at base_url/o/<token>
