"""The subscriber row, address normalisation and keys, and where list files live."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import email_validator

from newsletter.errors import SubscriberError

STATUSES = ("subscribed", "unsubscribed", "bounced", "complained", "pending")
COLUMNS = ("email", "name", "status", "subscribed_at", "updated_at", "source")
SUPPRESSION_COLUMNS = ("email", "reason", "at")
SUPPRESSIONS = "suppressions"
HASH_PREFIX = "sha256:"
NAME_MAX = 200  # characters of a name a message's To header shows; the rest is cut off

# How far a status is from "may be mailed": imports and merges only ever move rows upwards.
STATUS_RANK = {"subscribed": 0, "pending": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Names end up in From/To headers: no line breaks or other control characters.
HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
SURROGATE = re.compile(r"[\udc80-\udcff]")
TAGS = "tags"  # the optional column of tags, several in one cell separated by commas
# A tag is one word a segment can name (`tag:python`): no commas, spaces or quotes.
TAG_NAME = re.compile(r"[\w][\w.:/+-]*")


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str  # as given (used for sending)
    name: str = ""
    status: str = "subscribed"
    subscribed_at: str = ""
    updated_at: str = ""
    source: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)  # custom columns with a value
    line: int = 0  # line number in the file (for messages)
    # The key, when the reader has already worked it out (normalising is the costly part).
    known_key: str = field(default="", repr=False, compare=False)
    tags: tuple[str, ...] = ()  # the `tags` column, in the order written

    @property
    def key(self) -> str:
        """The normalised, case-folded address: identity for dedup, the ledger and suppressions."""
        return self.known_key or email_key(self.email)

    def merge_fields(self) -> dict[str, str]:
        """Template context `subscriber`; empty values are left out so `default()` filters apply."""
        first, last = split_name(self.name)
        values = {
            "email": self.email,
            "name": self.name,
            "first_name": first,
            "last_name": last,
            "status": self.status,
            "source": self.source,
            **self.fields,
        }
        return {key: value for key, value in values.items() if value}


@dataclass(frozen=True)
class Problem:
    where: str
    line: int
    message: str
    warning: bool = False  # worth knowing, but the row is usable as it is

    def __str__(self) -> str:
        return (
            f"{self.where}:{self.line}: {self.message}"
            if self.line
            else f"{self.where}: {self.message}"
        )


# --- addresses -------------------------------------------------------------------------------


class InvalidEmail(ValueError):
    """An address email-validator refuses; str() is its reason."""


_domains: dict[str, tuple[str, int] | None] = {}
_CASE_INSENSITIVE = frozenset(email_validator.rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES)


def normalize_email(email: str, *, check_deliverability: bool = False) -> str:
    """email-validator's normalised form (IDNA domain, NFC); raises InvalidEmail."""
    if not check_deliverability:
        fast = fast_normalize(email)
        if fast is not None:
            return fast
    try:
        result = email_validator.validate_email(
            email,
            check_deliverability=check_deliverability,
            dns_resolver=_resolver() if check_deliverability else None,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return result.normalized


def fast_normalize(email: str) -> str | None:
    """Same answer as email-validator for plain ASCII local parts, with the domain check cached.

    A full validation costs ~50 µs; a million-row list needs ~1 µs. None means "ask the library".
    """
    local, at, domain = email.rpartition("@")
    if not at:
        return None
    plain = local.replace(".", "")  # letters, digits and inner dots need no regex
    if not (plain.isascii() and plain.isalnum() and local[0] != "." != local[-1]):
        if not _ASCII_LOCAL.fullmatch(local):
            return None
    elif ".." in local:
        return None
    known = _domains.get(domain, False)
    if known is False:
        known = _check_domain(domain)
    if known is None or len(local) + known[1] > 254:
        return None
    if local.lower() in _CASE_INSENSITIVE:
        local = local.lower()
    return local + known[0]


def _check_domain(domain: str) -> tuple[str, int] | None:
    """("@" + normalised domain, length it adds to the address at most), or None if invalid."""
    try:
        result = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        answer = None
    else:
        forms = (domain.encode(), result.domain.encode(), result.ascii_domain.encode())
        answer = ("@" + result.domain, 1 + max(map(len, forms)))
    if len(_domains) > 100_000:
        _domains.clear()
    _domains[domain] = answer
    return answer


@cache
def _resolver():
    return email_validator.caching_resolver(timeout=10)


def email_key(email: str) -> str:
    """Identity of an address: normalised and case-folded (an invalid one is just case-folded)."""
    try:
        return normalize_email(email.strip()).casefold()
    except InvalidEmail:
        return email.strip().casefold()


def key_of(email: str) -> str:
    """The key of an address given to change or erase rows; an invalid one would match nothing."""
    try:
        return normalize_email(email.strip()).casefold()
    except InvalidEmail as exc:
        raise SubscriberError(f"invalid email address {email.strip()!r}: {exc}") from None


def address_matcher(key: str) -> Callable[[str], bool]:
    """Whether a cell holds the address with this key; most rows are told apart cheaply."""
    local = key.rpartition("@")[0]

    def same(cell: str) -> bool:
        cell = cell.strip()
        # An ASCII address normalises to its own local part (case aside), so compare that first.
        if cell.isascii() and cell.rpartition("@")[0].casefold() != local:
            return False
        return email_key(cell) == key

    return same


def suppression_hash(key: str) -> str:
    """What `forget` keeps of an address: enough to recognise it, not to read it."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_suppressed(key: str, suppressed: set[str] | Mapping[str, str]) -> bool:
    """Whether a key, or the hash `forget` left of it, is in the suppression set."""
    return bool(suppressed) and (key in suppressed or suppression_hash(key) in suppressed)


def split_name(name: str) -> tuple[str, str]:
    """'Ada Lovelace' or 'Lovelace, Ada' -> ('Ada', 'Lovelace')."""
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


# --- tags ------------------------------------------------------------------------------------


def parse_tags(cell: str) -> tuple[str, ...]:
    """A `tags` cell ("python, rust") as tags, once each; Mailchimp quotes each ("\"a\",\"b\"")."""
    found = (part.strip().strip('"').strip() for part in cell.split(","))
    return tuple(dict.fromkeys(tag for tag in found if tag))


def format_tags(tags: Iterable[str]) -> str:
    return ",".join(dict.fromkeys(tags))


def checked_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as given on the command line; refuses one a segment could not name."""
    found = []
    for tag in tags:
        tag = tag.strip()
        if not TAG_NAME.fullmatch(tag):
            raise SubscriberError(
                f"invalid tag {tag!r}: use letters, digits and _ . : / + - (no commas or spaces)"
            )
        found.append(tag)
    return tuple(dict.fromkeys(found))


# --- files and names -------------------------------------------------------------------------


def list_path(subscribers_dir: Path, name: str) -> Path:
    """subscribers/<name>.csv; refuses names that could leave the folder or hit the suppressions."""
    if not _LIST_NAME.fullmatch(name):
        raise SubscriberError(
            f"invalid list name {name!r}: use letters, digits, '-' and '_' "
            "(a list is the file subscribers/NAME.csv)"
        )
    if name.casefold() == SUPPRESSIONS:
        raise SubscriberError(
            f"'{SUPPRESSIONS}' is the workspace suppression file, not a list; choose another name"
        )
    return subscribers_dir / f"{name}.csv"


def suppressions_path(subscribers_dir: Path) -> Path:
    return subscribers_dir / f"{SUPPRESSIONS}.csv"


def list_names(subscribers_dir: Path) -> list[str]:
    """Names of the lists in the folder (the suppression file and rejects files are not lists)."""
    if not subscribers_dir.is_dir():
        return []
    names = (p.stem for p in subscribers_dir.glob("*.csv") if p.is_file())
    return sorted(n for n in names if _LIST_NAME.fullmatch(n) and n.casefold() != SUPPRESSIONS)


def existing_list(subscribers_dir: Path, name: str) -> Path:
    """list_path, plus a clear error naming the known lists when the file does not exist."""
    path = list_path(subscribers_dir, name)
    if not path.is_file():
        known = ", ".join(list_names(subscribers_dir)) or "none yet"
        raise SubscriberError(f"no list {name!r}: {display(path)} does not exist (lists: {known})")
    return path


def display(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def known_status(status: str) -> None:
    """Refuse a status that is not one of STATUSES."""
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
