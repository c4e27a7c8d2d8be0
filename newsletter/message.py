"""Rendered issue + one subscriber -> the exact message that subscriber receives.

The campaign (everything recipients share) is prepared once; per recipient the work is
evaluating the merge fields, one join per part, and a quoted-printable pass in C.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, localtime
from functools import cached_property, lru_cache
from urllib.parse import quote

import email_validator

from newsletter.config import Config
from newsletter.errors import ConfigError, SubscriberError
from newsletter.render import Personalized, Rendered
from newsletter.subscribers.model import NAME_MAX, email_key
from newsletter.tokens import address_id, make_token

CRLF = "\r\n"
WIDTH = 78  # RFC 5322's recommended line length: headers are folded to it where they can be
NEEDS_SMTPUTF8 = "the address has non-ASCII characters before the @"
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")


class AddressError(SubscriberError):
    """An address a message cannot carry as it is: that one recipient fails, nobody else."""


def header_safe(value: str) -> str:
    """Collapse CR, LF and other control characters: subscriber data cannot add a header."""
    # Printable, a string's only whitespace is " " (controls, NEL, NBSP, line and paragraph
    # separators are not printable): with no space to collapse it is already safe. Most are.
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value
    return " ".join(_CONTROL.sub(" ", value).split())


def _fold(tokens: list[str]) -> str:
    """Tokens joined by spaces, a line break before a token that would pass WIDTH columns.

    Unfolding (removing each CRLF) gives the tokens joined by single spaces again.
    """
    lines, line = [], tokens[0]
    for token in tokens[1:]:
        if len(line) + 1 + len(token) > WIDTH:
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
    lines.append(line)
    return CRLF.join(lines)


def _foldable(prefix: str, words: list[str]) -> bool:
    """Whether every word fits on a line of its own (the first after `prefix`)."""
    return len(prefix) + 1 + len(words[0]) <= WIDTH and max(map(len, words)) < WIDTH


def _encoded_words(name: str, value: str) -> list[str]:
    """RFC 2047 encoded-words for `value`, each short enough for a line of its own."""
    return Header(value, "utf-8", header_name=name).encode(linesep=CRLF).split()


@lru_cache(maxsize=4096)
def encode_header(name: str, value: str) -> str:
    """`Name: value`, folded to 78 columns: at spaces when it is plain ASCII with words that
    fit, else as RFC 2047 encoded-words (which split anywhere, so any value fits)."""
    value = header_safe(value)
    plain = value.isascii() and "=?" not in value  # readers would decode "=?...?=" themselves
    if plain and len(name) + len(value) + 2 <= WIDTH:
        return f"{name}: {value}"
    words = value.split(" ")
    if not (plain and _foldable(f"{name}:", words)):
        words = _encoded_words(name, value)
    return _fold([f"{name}:", *words])


@lru_cache(maxsize=1024)
def _ascii_domain(domain: str) -> str:
    """An internationalised domain in IDNA form (xn--…), as email-validator writes it."""
    try:
        result = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise AddressError(f"the domain {domain!r} has no IDNA form: {exc}") from None
    return result.ascii_domain


def wire_address(address: str, utf8: bool = False) -> str:
    """The address as headers and the SMTP envelope carry it.

    An internationalised domain is IDNA-encoded. A non-ASCII local part has no ASCII form:
    only an SMTPUTF8 message (`utf8`, RFC 6531/6532) can carry it, as it is written.
    """
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if local.isascii():
        return f"{local}@{_ascii_domain(domain)}"
    if not utf8:
        raise AddressError(f"{NEEDS_SMTPUTF8}: only an SMTPUTF8 message can carry {address!r}")
    return address


def address_header(name: str, display: str | None, address: str, utf8: bool = False) -> str:
    """`Name: display <address>`, folded to 78 columns, the display name cut to NAME_MAX."""
    address = header_safe(address)
    if not address or any(c in address for c in '<>,;"()'):
        raise AddressError(f"invalid address for {name}: {address!r}")
    address = wire_address(address, utf8)
    display = header_safe(display or "")[:NAME_MAX].rstrip()
    if not display:
        return f"{name}: {address}"
    tail = f"<{address}>"
    if "=?" not in display:  # else readers would decode it as an encoded-word
        # formataddr quotes or encodes the name as needed; it wants an ASCII address.
        phrase = formataddr((display, "@"), charset="utf-8")[: -len(" <@>")]
        line = f"{name}: {phrase} {tail}"
        if len(line) <= WIDTH:
            return line
        words = phrase.split(" ")  # atoms, or a quoted string: both may fold at a space
        if display.isascii() and _foldable(f"{name}:", words):
            return _fold([f"{name}:", *words, tail])
    return _fold([f"{name}:", *_encoded_words(name, display), tail])


def _qp(text: str) -> str:
    """Quoted-printable with CRLF line ends; every encoded line is at most 76 octets."""
    # A bare CR becomes a line break too: it must never reach the wire on its own.
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    # b2a_qp breaks lines with LF unless the data already has CRLF: make them all CRLF.
    return binascii.b2a_qp(data, istext=True).decode("ascii").replace("\n", CRLF)


SOFT_BREAK = "=" + CRLF


def qp_chunks(parts: list[str]) -> list[str]:
    """Pre-encode the literal chunks of a TOKEN.split() list (odd items stay token indexes).

    Each encoded chunk ends with a soft line break, so the next piece starts a fresh line:
    the encoding of the whole is the chunks' encodings joined, and decodes to the same text.
    """
    return [_qp(part) + SOFT_BREAK if i % 2 == 0 else part for i, part in enumerate(parts)]


def qp_fill(chunks: list[str], values: dict[int, str], stuffed: bool = False) -> str:
    """Quoted-printable of a part with per-recipient values: only the values are encoded.

    `stuffed`: the chunks are dot-stuffed already (Campaign.stuffed_html) and so is each value.
    """
    if len(chunks) == 1:
        return chunks[0]
    out = chunks[:]
    for i in range(1, len(chunks), 2):
        encoded = _qp(values[int(chunks[i])]) + SOFT_BREAK
        out[i] = dot_stuffed(encoded) if stuffed else encoded
    return "".join(out)


def dot_stuffed(text: str) -> str:
    """SMTP's transparency (RFC 5321 4.5.2): a dot that starts a line (at the top, or after a
    line feed) is doubled. Every piece of a message starts a line, so pieces stuffed alone
    make the whole stuffed: a campaign's parts once, each recipient's values as they come."""
    text = text.replace("\n.", "\n..")
    return "." + text if text.startswith(".") else text


@dataclass(frozen=True)
class Campaign:
    """What every message of one send shares."""

    config: Config
    rendered: Rendered
    list_name: str
    secret: bytes
    subject_prefix: str = ""
    boundary: str = field(default_factory=lambda: f"=_nl_{secrets.token_hex(12)}")
    slug: str | None = None  # where its messages are filed; the issue's slug unless given

    @property
    def issue_slug(self) -> str:
        return self.slug or self.rendered.issue.slug

    @cached_property
    def list_id(self) -> str:
        """RFC 2919 List-Id: `Name <list.domain>`."""
        label = re.sub(r"[^A-Za-z0-9-]+", "-", self.list_name).strip("-") or "list"
        return f"{header_safe(self.config.name)} <{label}.{self.config.sender_domain}>"

    @cached_property
    def list_id_header(self) -> str:
        """List-Id as sent: only the name is RFC 2047-encoded, never the <list.domain> part."""
        name, _, label = self.list_id.rpartition(" <")
        return formataddr((name, label[:-1]), charset="utf-8") if name else f"<{label}"

    @cached_property
    def encoded_html(self) -> list[str]:
        return qp_chunks(self.rendered.html_parts)

    @cached_property
    def encoded_text(self) -> list[str]:
        return qp_chunks(self.rendered.text_parts)

    @cached_property
    def stuffed_html(self) -> list[str]:
        """encoded_html dot-stuffed for SMTP's DATA (the token indexes stay as they are)."""
        return [dot_stuffed(c) if i % 2 == 0 else c for i, c in enumerate(self.encoded_html)]

    @cached_property
    def stuffed_text(self) -> list[str]:
        return [dot_stuffed(c) if i % 2 == 0 else c for i, c in enumerate(self.encoded_text)]

    @cached_property
    def static_headers(self) -> str:
        """The headers that are the same for every recipient, encoded once."""
        cfg = self.config
        if "@" not in cfg.from_email:
            raise ConfigError(f"from_email {cfg.from_email!r} is not an email address")
        lines = [address_header("From", cfg.from_name or cfg.name, cfg.from_email)]
        if cfg.reply_to:
            lines.append(address_header("Reply-To", None, cfg.reply_to))
        lines.append(f"List-Id: {self.list_id_header}")
        if cfg.send.feedback_id:
            lines.append(encode_header("Feedback-ID", cfg.send.feedback_id))
        lines.append("MIME-Version: 1.0")
        return CRLF.join(lines)

    def unsubscribe_links(self, key: str) -> tuple[str | None, str]:
        """(https URL or None without base_url, mailto URL) for one recipient."""
        return self._links(make_token(self.secret, self.list_name, key))

    def _links(self, token: str) -> tuple[str | None, str]:
        base = (self.config.base_url or "").rstrip("/")
        url = f"{base}/unsubscribe/{token}" if base else None
        # Tokens are URL-safe already (base64url and the list name); quote only what is not.
        subject = token if _URL_SAFE.fullmatch(token) else quote(token)
        mailto = f"mailto:{self.config.from_email}?subject=unsubscribe%20{subject}"
        return url, mailto

    def message(
        self, to_email: str, key: str, fields: dict[str, str], name: str = ""
    ) -> OutgoingMessage:
        """One recipient's message; merge fields are evaluated now (TemplateError if one fails)."""
        token = make_token(self.secret, self.list_name, key)
        url, mailto = self._links(token)
        values = self.rendered.values(fields, url or mailto)
        if self.rendered.tracked:
            from newsletter.tracking.rewrite import personal_values

            values.update(
                personal_values(
                    self.secret,
                    self.config.base_url or "",
                    self.issue_slug,
                    self.list_name,
                    key,
                    self.rendered.tracked,
                )
            )
        return OutgoingMessage(
            campaign=self,
            to_email=to_email,
            to_name=name,
            key=key,
            message_id=f"<{secrets.token_hex(16)}@{self.config.sender_domain}>",
            unsubscribe_url=url,
            unsubscribe_mailto=mailto,
            values=values,
            # The token's middle part: providers tag messages with it, no HMAC of their own.
            recipient_id=token.rsplit(".", 2)[1],
        )


def single_message(
    config: Config,
    secret: bytes,
    *,
    to_email: str,
    subject: str,
    html: str,
    text: str,
    list_name: str,
    slug: str,
) -> OutgoingMessage:
    """One message outside any issue (a confirmation), with the headers an issue's messages have."""
    rendered = Rendered(None, subject, None, html, text, "", [], {})
    campaign = Campaign(config, rendered, list_name, secret, slug=slug)
    return campaign.message(to_email, email_key(to_email), {})


_date_cache: list = [0, ""]


def _now_header() -> str:
    """RFC 5322 date, computed at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, format_datetime(localtime())]
    return _date_cache[1]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One recipient's message: what providers translate and transport."""

    campaign: Campaign
    to_email: str
    to_name: str
    key: str  # normalised address: the identity in lists, ledger and suppressions
    message_id: str
    unsubscribe_url: str | None
    unsubscribe_mailto: str
    values: dict[int, object]
    recipient_id: str = ""  # address_id(secret, list, key), as the token carries it; "" unknown
    # (provider name, its encode_ahead of this message) when the read-ahead worked it out.
    ahead: tuple[str, object] | None = None

    def recipient(self) -> str:
        """address_id of the recipient: what webhooks and opt-outs match them by."""
        if self.recipient_id:
            return self.recipient_id
        campaign = self.campaign
        return address_id(campaign.secret, campaign.list_name, self.key)

    @property
    def one_click(self) -> bool:
        """RFC 8058 one-click is offered for https: links only."""
        return bool(self.unsubscribe_url) and self.unsubscribe_url.startswith("https://")

    @property
    def list_unsubscribe(self) -> str:
        links = [f"<{self.unsubscribe_url}>"] if self.unsubscribe_url else []
        return ", ".join([*links, f"<{self.unsubscribe_mailto}>"])

    def personal_headers(self) -> dict[str, str]:
        """Headers that differ per recipient, as plain values (providers encode them)."""
        headers = {"List-Unsubscribe": self.list_unsubscribe}
        if self.one_click:
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return headers

    def personalized(self) -> Personalized:
        rendered = self.campaign.rendered
        return rendered.fill_values(self.values)

    @property
    def subject(self) -> str:
        return self.campaign.subject_prefix + self.personalized().subject

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the address has a non-ASCII local part: only SMTPUTF8 can deliver it."""
        return not self.to_email.rpartition("@")[0].isascii()

    def as_bytes(self, utf8: bool = False, stuffed: bool = False) -> bytes:
        """The complete RFC 5322 message, CRLF line ends, no line over 998 octets.

        With `utf8`, an address with a non-ASCII local part is written as it is (an SMTPUTF8
        message, RFC 6532); without, such an address raises AddressError. With `stuffed`, it
        is dot-stuffed for SMTP's DATA (no header line can start with a dot).
        """
        camp = self.campaign
        html_values, text_values, subject = camp.rendered.part_values(self.values)
        boundary = camp.boundary
        links = [f"<{self.unsubscribe_url}>"] if self.unsubscribe_url else []
        head = [
            camp.static_headers,
            address_header("To", self.to_name, self.to_email, utf8),
            encode_header("Subject", camp.subject_prefix + subject),
            f"Date: {_now_header()}",
            f"Message-ID: {self.message_id}",
            "List-Unsubscribe: " + f",{CRLF} ".join([*links, f"<{self.unsubscribe_mailto}>"]),
        ]
        if self.one_click:
            head.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        parts = [
            CRLF.join(head),
            "",
            f"--{boundary}",
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            qp_fill(camp.stuffed_text if stuffed else camp.encoded_text, text_values, stuffed),
            f"--{boundary}",
            'Content-Type: text/html; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            qp_fill(camp.stuffed_html if stuffed else camp.encoded_html, html_values, stuffed),
            f"--{boundary}--",
            "",
        ]
        return CRLF.join(parts).encode("utf-8" if utf8 else "ascii")
