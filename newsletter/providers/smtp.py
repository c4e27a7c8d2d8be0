"""SMTP through smtplib: one connection per provider instance, reused for every message."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Mapping

from newsletter.config import Config
from newsletter.errors import ConfigError, ProviderError, SubscriberError
from newsletter.message import NEEDS_SMTPUTF8, OutgoingMessage, wire_address
from newsletter.providers import smtp_pipeline
from newsletter.providers.base import Provider, Result, SendOptions, Status, Unavailable

PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
SECURITY = ("starttls", "ssl", "none")
HARD_BOUNCE_CODES = frozenset({550, 551, 553})  # at RCPT: the mailbox itself is refused
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class _Tracking:
    """Remembers whether the server said 354: after that the message itself is on its way."""

    data_started = False

    def getreply(self):
        code, text = super().getreply()
        if code == 354:
            self.data_started = True
        return code, text


class _SMTP(_Tracking, smtplib.SMTP):
    pass


class _SMTPS(_Tracking, smtplib.SMTP_SSL):
    pass


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


class SmtpProvider(Provider):
    name = "smtp"
    max_batch = 50
    default_workers = 4
    reports_handovers = True

    def __init__(
        self, config: Config, env: Mapping[str, str], options: SendOptions | None = None
    ) -> None:
        super().__init__(config, env, options)
        self._conn: _SMTP | _SMTPS | None = None

    @property
    def _where(self) -> str:
        return f"{self.config.smtp.host}:{self.config.smtp.port}"

    @classmethod
    def check(cls, config: Config, env: Mapping[str, str], options: SendOptions) -> None:
        super().check(config, env, options)
        cfg = config.smtp
        if cfg.security not in SECURITY:
            raise ConfigError(
                f"[smtp] security must be one of {', '.join(SECURITY)}, not {cfg.security!r}"
            )
        if not cfg.host:
            raise ConfigError("[smtp] host is empty: set the SMTP server's name")
        if not 0 < cfg.port < 65536:
            raise ConfigError(f"[smtp] port {cfg.port} is not a TCP port (587, 465, 25, ...)")
        if cfg.username and not env.get(PASSWORD_ENV):
            raise ConfigError(
                f"[smtp] username is set but {PASSWORD_ENV} is not: "
                "put the SMTP password in that environment variable"
            )
        if cfg.username and cfg.security == "none" and cfg.host not in _LOOPBACK:
            raise ConfigError(
                f'[smtp] security = "none" would send {PASSWORD_ENV} unencrypted to {cfg.host}; '
                'use security = "starttls" or "ssl"'
            )

    def send_one(self, message: OutgoingMessage) -> Result:
        key = message.key
        utf8 = message.needs_smtputf8
        try:
            payload = message.as_bytes(utf8=utf8, stuffed=True)  # for DATA, as it goes
            sender = wire_address(self.config.from_email, utf8)
            recipient = wire_address(message.to_email, utf8)
        except (SubscriberError, UnicodeError) as exc:  # what this one message cannot carry
            return Result(key, Status.REJECTED, str(exc))
        for attempt in (1, 2):
            conn = self._connection()
            options = []
            if utf8:
                if not conn.has_extn("smtputf8"):
                    reason = (
                        f"{NEEDS_SMTPUTF8} and SMTP server {self._where} does not offer SMTPUTF8"
                    )
                    return Result(key, Status.REJECTED, reason)
                options = (
                    ["SMTPUTF8", "BODY=8BITMIME"] if conn.has_extn("8bitmime") else ["SMTPUTF8"]
                )
            conn.data_started = False
            try:
                smtp_pipeline.send(conn, sender, recipient, payload, options)
                return Result(key, Status.ACCEPTED, provider_id=message.message_id)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                if code == 421 and attempt == 1:  # the server closed the connection
                    self._drop()
                    continue
                return self._refused(key, code, text, at_rcpt=True)
            except smtplib.SMTPSenderRefused as exc:
                if exc.smtp_code == 421 and attempt == 1:
                    self._drop()
                    continue
                if 400 <= exc.smtp_code < 500:
                    return Result(key, Status.TEMPORARY, _reply(exc.smtp_code, exc.smtp_error))
                raise ProviderError(
                    f"SMTP server {self._where} refused the sender {self.config.from_email} "
                    f"({_reply(exc.smtp_code, exc.smtp_error)}); "
                    "check from_email and [smtp] username"
                ) from None
            except smtplib.SMTPDataError as exc:
                if exc.smtp_code == 421:
                    self._drop()
                return self._refused(key, exc.smtp_code, exc.smtp_error, at_rcpt=False)
            except smtplib.SMTPServerDisconnected as exc:
                lost = exc
            except smtplib.SMTPException as exc:
                self._drop()
                return Result(key, Status.TEMPORARY, f"SMTP error from {self._where}: {exc}")
            except OSError as exc:  # a timeout or reset that smtplib did not wrap
                lost = exc
            self._drop()
            if conn.data_started:
                reason = f"connection to {self._where} lost after the message was sent: {lost}"
                return Result(key, Status.UNKNOWN, reason)
            if attempt == 2:
                reason = f"connection to {self._where} lost twice: {lost}"
                return Result(key, Status.TEMPORARY, reason)
        raise AssertionError("unreachable")

    @staticmethod
    def _refused(key: str, code: int, text: bytes | str, at_rcpt: bool) -> Result:
        reason = _reply(code, text)
        if code < 500:
            return Result(key, Status.TEMPORARY, reason)
        policy = reason.partition(" ")[2].startswith("5.7.")  # policy, not a missing mailbox
        hard = at_rcpt and code in HARD_BOUNCE_CODES and not policy
        return Result(key, Status.REJECTED, reason, hard_bounce=hard)

    def _connection(self) -> _SMTP | _SMTPS:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> _SMTP | _SMTPS:
        cfg, where = self.config.smtp, self._where
        conn = None
        try:
            if cfg.security == "ssl":
                context = ssl.create_default_context()
                conn = _SMTPS(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
            else:
                conn = _SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            conn.ehlo()
            if cfg.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise ProviderError(
                        f'SMTP server {where} does not offer STARTTLS; set [smtp] security = "ssl" '
                        'for port 465, or "none" only for a local relay'
                    )
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, self.env.get(PASSWORD_ENV, ""))
            return conn
        except ProviderError:
            _close(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close(conn)
            raise ProviderError(
                f"SMTP server {where} refused the login for {cfg.username!r} "
                f"({_reply(exc.smtp_code, exc.smtp_error)}); "
                f"check [smtp] username and {PASSWORD_ENV}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            _close(conn)
            raise ProviderError(
                f"SMTP server {where} does not offer AUTH on this connection; "
                'remove [smtp] username or use security = "starttls" or "ssl"'
            ) from None
        except ssl.SSLCertVerificationError as exc:
            _close(conn)
            raise ProviderError(
                f"the TLS certificate of {where} cannot be verified ({exc.verify_message}); "
                "check [smtp] host, or point SSL_CERT_FILE at the CA that signed it"
            ) from None
        except ssl.SSLError as exc:
            _close(conn)
            raise ProviderError(
                f"TLS with {where} failed ({exc.reason or exc}); "
                f'is [smtp] security = "{cfg.security}" right for port {cfg.port}?'
            ) from None
        except smtplib.SMTPResponseException as exc:
            _close(conn)
            reason = _reply(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise Unavailable(f"SMTP server {where} is busy: {reason}") from None
            raise ProviderError(f"SMTP server {where} refused the connection: {reason}") from None
        except smtplib.SMTPServerDisconnected as exc:
            _close(conn)
            raise Unavailable(f"SMTP server {where} hung up while connecting: {exc}") from None
        except smtplib.SMTPException as exc:  # e.g. no AUTH mechanism both sides know
            _close(conn)
            raise ProviderError(f"SMTP server {where}: {exc}") from None
        except OSError as exc:
            _close(conn)
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise Unavailable(f"cannot connect to SMTP server {where}: {detail}") from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _close(conn)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
            _close(conn)


def _close(conn) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
