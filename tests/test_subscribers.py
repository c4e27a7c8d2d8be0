"""Subscriber lists: reading, validation, suppressions and locked edits, on real files."""

from __future__ import annotations

import shutil
import string
import tempfile
import tracemalloc
from dataclasses import replace
from pathlib import Path

import email_validator
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter import subscribers as subs
from newsletter.errors import SubscriberError
from newsletter.subscribers import Subscriber

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"


@pytest.fixture
def folder(workspace: Path) -> Path:
    """The workspace's subscribers/ folder (main.csv: ada, grace subscribed; alan unsubscribed)."""
    return workspace / "subscribers"


def put(folder: Path, fixture: str, name: str | None = None) -> Path:
    """Copy a fixture list into the workspace as subscribers/<name>.csv."""
    target = folder / f"{name or Path(fixture).stem}.csv"
    shutil.copyfile(FIXTURES / fixture, target)
    return target


def emails(rows) -> list[str]:
    return [row.email for row in rows]


# --- reading ---------------------------------------------------------------------------------


def test_reads_the_list_with_custom_fields_as_merge_fields(folder):
    ada, grace, alan = subs.iter_subscribers(folder / "main.csv")
    assert (ada.email, ada.name, ada.status, ada.line) == (
        "ada@example.org",
        "Ada Lovelace",
        "subscribed",
        2,
    )
    assert ada.fields == {"company": "Engines & <Co>"}
    assert grace.fields == {}  # empty custom values are not fields
    assert alan.status == "unsubscribed"
    assert ada.merge_fields() == {
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "status": "subscribed",
        "source": "import",
        "company": "Engines & <Co>",
    }
    assert "name" not in alan.merge_fields() and "first_name" not in alan.merge_fields()


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("Lovelace, Ada", "Ada", "Lovelace"),
        ("Cher", "Cher", ""),
    ],
)
def test_merge_fields_split_the_name(name, first, last):
    fields = Subscriber("a@example.org", name=name).merge_fields()
    assert (fields.get("first_name", ""), fields.get("last_name", "")) == (first, last)


def test_merge_fields_prefer_custom_first_and_last_name_columns():
    sub = Subscriber("a@example.org", name="Mary Ann Evans", fields={"first_name": "Mary Ann"})
    assert sub.merge_fields()["first_name"] == "Mary Ann"
    assert sub.merge_fields()["last_name"] == "Ann Evans"


def test_key_is_the_normalised_casefolded_address():
    assert Subscriber("Ada@EXAMPLE.org").key == "ada@example.org"
    assert Subscriber("josé@Bücher.example").key == Subscriber("JOSÉ@xn--bcher-kva.example").key
    assert subs.email_key(" not an address ") == "not an address"


def test_a_list_with_only_an_email_column_is_all_subscribed_and_blank_lines_are_skipped(folder):
    rows = list(subs.iter_subscribers(put(folder, "lists/email_only.csv")))
    assert [(r.email, r.status, r.line) for r in rows] == [
        ("ada@example.org", "subscribed", 2),
        ("grace@example.net", "subscribed", 4),
    ]


def test_a_list_with_a_header_only_is_an_empty_list(folder):
    put(folder, "lists/header_only.csv")
    assert list(subs.sendable(folder, "header_only")) == []
    assert sum(subs.count(folder, "header_only").values()) == 0


def test_the_first_bad_row_raises_naming_file_and_line(folder):
    put(folder, "lists/problems.csv")
    with pytest.raises(SubscriberError) as caught:
        list(subs.iter_subscribers(folder / "problems.csv"))
    assert str(caught.value) == (
        "subscribers/problems.csv:3: invalid email address 'foo@': "
        "There must be something after the @-sign."
    )


MALFORMED = {
    "no_email.csv": "1: no 'email' column (columns: address, name)",
    "semicolons.csv": (
        "1: no 'email' column: the header is separated by ';'; subscriber lists are comma-separated"
    ),
    "nul.csv": "2: NUL byte: the file is binary or UTF-16; save it as CSV UTF-8",
    "latin1.csv": "2: not valid UTF-8 (byte 0xe9); save the file as CSV UTF-8",
    "utf16.csv": " the file is UTF-16; save it as CSV UTF-8",
    "empty.csv": (
        " the file is empty; the first line must be a header naming the columns, at least 'email'"
    ),
    "unclosed_quote.csv": '2: a quoted value starting on this line is never closed (a missing ")',
    "text_after_quote.csv": (
        '2: text after a closing quote: quote the whole value and double any " inside it'
    ),
    "duplicate_column.csv": "1: column 'Email' appears twice (columns 1 and 3)",
    "unnamed_column.csv": "1: column 2 of the header has no name",
}


@pytest.mark.parametrize("fixture", sorted(MALFORMED))
def test_a_malformed_file_gets_one_line_and_is_left_unchanged(folder, fixture):
    path = put(folder, f"malformed/{fixture}", "broken")
    before = path.read_bytes()
    expected = f"subscribers/broken.csv:{MALFORMED[fixture]}"
    for attempt in (
        lambda: list(subs.iter_subscribers(path)),
        lambda: subs.add_subscriber(folder, "broken", "new@example.org"),
        lambda: subs.set_status(folder, "broken", "ada@example.org", "unsubscribed"),
        lambda: subs.forget(folder, "ada@example.org"),
    ):
        with pytest.raises(SubscriberError) as caught:
            attempt()
        assert str(caught.value) == expected
        assert "\n" not in str(caught.value)
    assert path.read_bytes() == before


def test_an_over_long_line_is_refused_without_reading_it_whole(folder):
    path = folder / "huge.csv"
    with path.open("w") as f:
        f.write("email,name\n")
        f.write("a@example.org," + "x" * (40 * 1024 * 1024) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(SubscriberError) as caught:
            subs.count(folder, "huge")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        "subscribers/huge.csv:2: line longer than 1,048,576 characters: "
        "this is not a subscriber list (or a quote is missing)"
    )
    assert peak < 16 * 1024 * 1024  # the 40 MB line was never held whole


def test_an_unbalanced_quote_is_reported_where_it_starts(folder):
    path = folder / "quotes.csv"
    path.write_text('email,name\nada@example.org,"Ada\n' + "x@example.org,X\n" * 30_000)
    with pytest.raises(SubscriberError, match=r"^subscribers/quotes.csv:2: a value longer than"):
        subs.count(folder, "quotes")


# --- names and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../main", "a/b", "", ".hidden", "main.csv", "x" * 65, "é"])
def test_list_names_cannot_leave_the_folder(folder, name):
    with pytest.raises(SubscriberError, match="invalid list name"):
        subs.list_path(folder, name)


@pytest.mark.parametrize("name", ["suppressions", "Suppressions"])
def test_the_suppression_file_is_not_a_list(folder, name):
    with pytest.raises(SubscriberError, match="the workspace suppression file, not a list"):
        subs.list_path(folder, name)


def test_list_enumeration_skips_suppressions_rejects_and_temporary_files(folder):
    for name in ("suppressions.csv", "old.rejects.csv", ".main.csv.abc.tmp", "b-2.csv"):
        (folder / name).write_text("email\n")
    assert subs.list_names(folder) == ["b-2", "main"]


def test_an_unknown_list_names_the_known_ones(folder):
    with pytest.raises(SubscriberError) as caught:
        list(subs.sendable(folder, "nope"))
    assert str(caught.value) == "no list 'nope': subscribers/nope.csv does not exist (lists: main)"


# --- sending ---------------------------------------------------------------------------------


def test_sendable_skips_unsubscribed_suppressed_erased_and_repeated_addresses(folder):
    subs.write_subscribers(
        folder / "main.csv",
        [
            Subscriber("ada@example.org", "Ada"),
            Subscriber("Ada@Example.ORG", "Ada again"),
            Subscriber("alan@example.com", status="unsubscribed"),
            Subscriber("bounce@example.com"),
            Subscriber("erased@example.com"),
            Subscriber("pending@example.com", status="pending"),
            Subscriber("grace@example.net"),
        ],
    )
    subs.add_suppression(folder, "BOUNCE@example.com", "hard bounce")
    (folder / "other.csv").write_text("email\nerased@example.com\n")
    subs.forget(folder, "erased@example.com")
    subs.write_subscribers(folder / "main.csv", [*subs.iter_subscribers(folder / "main.csv")])
    rows = list(subs.sendable(folder, "main"))
    assert [(r.email, r.name) for r in rows] == [
        ("ada@example.org", "Ada"),
        ("grace@example.net", ""),
    ]


def test_sendable_counts_the_rows_it_leaves_out_and_why(folder):
    rows = [
        Subscriber("ada@example.org", "Ada"),
        Subscriber("Ada@Example.ORG", "Ada again"),  # repeated
        Subscriber("ada@example.org", status="unsubscribed"),
        Subscriber("alan@example.com", status="unsubscribed"),
        Subscriber("bob@example.com", status="bounced"),
        Subscriber("carol@example.com", status="complained"),
        Subscriber("pending@example.com", status="pending"),
        Subscriber("bounce@example.com"),  # suppressed
        Subscriber("BOUNCE@example.com"),  # suppressed, not repeated: it was never sent
        Subscriber("erased@example.com"),  # its hash is suppressed
        Subscriber("grace@example.net"),
        Subscriber("grace@example.net", "Grace again"),  # repeated
    ]
    subs.add_suppression(folder, "bounce@example.com", "hard bounce")
    subs.forget(folder, "erased@example.com")
    subs.write_subscribers(folder / "main.csv", rows)
    stats = subs.SendableStats()
    stream = subs.sendable(folder, "main", stats)
    assert next(stream).name == "Ada"
    assert stats == subs.SendableStats()  # counted as the rows go by
    assert [(r.email, r.name) for r in stream] == [("grace@example.net", "")]
    assert stats == subs.SendableStats(
        not_subscribed={"unsubscribed": 2, "bounced": 1, "complained": 1, "pending": 1},
        suppressed=3,
        repeated=2,
    )


_pool = ["ada@example.org", "ADA@example.org", "josé@bücher.example", "grace@example.net"]


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.builds(Subscriber, email=st.sampled_from(_pool), status=st.sampled_from(subs.STATUSES)),
        max_size=12,
    ),
    suppressed=st.sets(st.sampled_from(_pool)),
)
def test_sendable_sends_each_address_once_and_accounts_for_every_row(rows, suppressed):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subs.write_subscribers(folder / "main.csv", rows)
        subs.add_suppressions(folder, [(email, "test") for email in suppressed])
        stats = subs.SendableStats()
        sent = [(r.email, r.line) for r in subs.sendable(folder, "main", stats)]
    blocked = {subs.email_key(email) for email in suppressed}
    first: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(rows, 2):
        if row.status == "subscribed" and row.key not in blocked:
            first.setdefault(row.key, (row.email, line))
    assert sent == list(first.values())
    left_out = sum(stats.not_subscribed.values()) + stats.suppressed + stats.repeated
    assert len(sent) + left_out == len(rows)
    assert stats.not_subscribed == {
        status: sum(row.status == status for row in rows)
        for status in subs.STATUSES
        if status != "subscribed"
    }
    assert stats.suppressed == sum(r.status == "subscribed" and r.key in blocked for r in rows)


def test_sendable_fails_closed_when_the_suppression_file_is_broken(folder):
    shutil.copyfile(FIXTURES / "malformed" / "nul.csv", folder / "suppressions.csv")
    with pytest.raises(SubscriberError, match="^subscribers/suppressions.csv:2: NUL byte"):
        list(subs.sendable(folder, "main"))


# --- validation ------------------------------------------------------------------------------


def test_validate_reports_every_problem_with_its_line(folder):
    put(folder, "lists/problems.csv")
    problems = [str(p) for p in subs.validate(folder, "problems")]
    assert problems == [
        "subscribers/problems.csv:3: invalid email address 'foo@': "
        "There must be something after the @-sign.",
        "subscribers/problems.csv:4: missing email address",
        "subscribers/problems.csv:5: duplicate of line 2: ADA@example.org",
        "subscribers/problems.csv:6: name contains a line break or control character "
        "(names go into mail headers)",
        "subscribers/problems.csv:8: unknown status 'active' "
        "(expected one of: subscribed, unsubscribed, bounced, complained, pending)",
        "subscribers/problems.csv:8: subscribed_at '03/01/2024' is not an ISO 8601 date "
        "(like 2024-05-01T09:30:00+00:00)",
        "subscribers/problems.csv:10: 8 values but the header has 7 columns "
        "(a comma in a value that is not in quotes?)",
    ]


def test_validate_without_a_list_checks_every_list_and_the_suppression_file(folder):
    put(folder, "lists/hand_edited.csv")
    (folder / "suppressions.csv").write_text("email,reason,at\nnope,bounced,\nsha256:12,erased,\n")
    assert [str(p) for p in subs.validate(folder)] == [
        "subscribers/hand_edited.csv:3: invalid email address 'not an address': "
        "An email address must have an @-sign.",
        "subscribers/suppressions.csv:2: invalid email address 'nope': "
        "An email address must have an @-sign.",
        "subscribers/suppressions.csv:3: malformed hash 'sha256:12'",
    ]


def test_count_counts_by_status_without_checking_rows(folder):
    put(folder, "lists/statuses.csv")
    assert subs.count(folder, "statuses") == {
        "subscribed": 2,  # an empty status means subscribed
        "unsubscribed": 0,
        "bounced": 1,
        "complained": 0,
        "pending": 1,
        "invalid": 1,
    }


def test_page_returns_one_page_of_rows_with_a_status(folder):
    subs.write_subscribers(
        folder / "big.csv",
        [Subscriber(f"u{i}@example.org", status=subs.STATUSES[i % 2]) for i in range(25)],
    )
    page = subs.page(folder, "big", status="unsubscribed", number=2, per_page=5)
    assert page.total == 12
    assert emails(page.subscribers) == [f"u{i}@example.org" for i in (11, 13, 15, 17, 19)]


# --- addresses -------------------------------------------------------------------------------

_local = st.text(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-.", max_size=70)
_domain = st.sampled_from(
    ["example.org", "EXAMPLE.com", "bücher.example", "xn--bcher-kva.example", "a.b", "localhost"]
    + ["x.test", "-bad.org", "ok-.org", "exa_mple.org", "a..b", "a" * 250 + ".org", "1.2.3.4"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(local=_local, at=st.sampled_from(["@", "@@", ""]), domain=_domain)
def test_the_fast_path_gives_the_same_answer_as_email_validator(local, at, domain):
    address = f"{local}{at}{domain}"
    try:
        expected = email_validator.validate_email(address, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        expected = f"invalid: {exc}"
    try:
        got = subs.normalize_email(address)
    except subs.InvalidEmail as exc:
        got = f"invalid: {exc}"
    assert got == expected


# --- editing ---------------------------------------------------------------------------------


def test_add_adds_updates_or_leaves_unchanged(folder):
    assert subs.add_subscriber(folder, "main", " new@example.org ", name="New") == "added"
    assert subs.add_subscriber(folder, "main", "NEW@example.org", fields={"company": "X"}) == (
        "updated"
    )
    assert subs.add_subscriber(folder, "main", "new@example.org", name="New") == "unchanged"
    new = list(subs.iter_subscribers(folder / "main.csv"))[-1]
    assert (new.email, new.name, new.fields, new.source) == (
        "new@example.org",
        "New",
        {"company": "X"},
        "",
    )
    assert new.subscribed_at and new.updated_at


def test_add_creates_a_list_with_the_standard_columns_and_new_fields(folder):
    subs.add_subscriber(folder, "fresh", "a@example.org", fields={"city": "Paris"}, source="form")
    header = (folder / "fresh.csv").read_text().splitlines()[0]
    assert header == "email,name,status,subscribed_at,updated_at,source,city"


def test_add_never_resubscribes_without_being_asked(folder):
    with pytest.raises(SubscriberError) as caught:
        subs.add_subscriber(folder, "main", "alan@example.com")
    assert str(caught.value) == (
        "alan@example.com is unsubscribed in list 'main' (line 4); "
        "add --resubscribe if they asked to be subscribed again"
    )
    assert subs.add_subscriber(folder, "main", "alan@example.com", resubscribe=True) == "updated"
    assert subs.count(folder, "main")["subscribed"] == 3


def test_add_does_not_subscribe_a_pending_address_without_being_asked(folder):
    subs.add_subscriber(folder, "main", "new@example.org", status="pending", source="web")
    with pytest.raises(SubscriberError) as caught:
        subs.add_subscriber(folder, "main", "New@example.org", name="New")
    assert str(caught.value) == (
        "New@example.org is pending in list 'main' (line 5): they have not confirmed; "
        "add --resubscribe if they asked you to subscribe them"
    )
    assert subs.count(folder, "main")["pending"] == 1
    assert subs.add_subscriber(folder, "main", "new@example.org", resubscribe=True) == "updated"
    assert subs.count(folder, "main")["pending"] == 0


def test_add_refuses_suppressed_and_erased_addresses(folder):
    subs.add_suppression(folder, "spam@example.com", "complained")
    with pytest.raises(SubscriberError) as caught:
        subs.add_subscriber(folder, "main", "Spam@example.com", resubscribe=True)
    assert str(caught.value) == (
        "Spam@example.com is suppressed (complained) in subscribers/suppressions.csv; "
        "remove that line first if they really asked to be mailed again"
    )
    subs.forget(folder, "ada@example.org")
    with pytest.raises(SubscriberError, match="was erased with `forget`; it cannot be added again"):
        subs.add_subscriber(folder, "main", "ada@example.org")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"email": "foo@"},
            "invalid email address 'foo@': There must be something after the @-sign.",
        ),
        ({"name": "Eve\r\nBcc: x@example.org"}, "name contains a line break or control character"),
        ({"fields": {"email": "x"}}, "invalid field name 'email'"),
        ({"fields": {"has space": "x"}}, "invalid field name 'has space'"),
        ({"fields": {"ok": "a\0b"}}, "ok: contains a NUL byte"),
        ({"status": "active"}, "unknown status 'active'"),
    ],
)
def test_add_refuses_what_could_not_be_read_back(folder, kwargs, message):
    before = (folder / "main.csv").read_bytes()
    with pytest.raises(
        SubscriberError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        subs.add_subscriber(folder, "main", **{"email": "new@example.org", **kwargs})
    assert (folder / "main.csv").read_bytes() == before


def test_remove_marks_unsubscribed_and_keeps_the_row(folder):
    assert subs.remove_subscriber(folder, "main", "GRACE@example.net") == (True, "subscribed")
    assert subs.remove_subscriber(folder, "main", "grace@example.net") == (False, "unsubscribed")
    grace = list(subs.iter_subscribers(folder / "main.csv"))[1]
    assert (grace.email, grace.name, grace.status) == (
        "grace@example.net",
        "Grace Hopper",
        "unsubscribed",
    )
    with pytest.raises(SubscriberError, match="^nobody@example.org is not in list 'main'$"):
        subs.remove_subscriber(folder, "main", "nobody@example.org")


def test_remove_does_not_turn_a_bounce_into_an_unsubscribe(folder):
    subs.set_status(folder, "main", "ada@example.org", "bounced")
    assert subs.remove_subscriber(folder, "main", "ada@example.org") == (False, "bounced")


def test_set_status_reports_whether_a_row_changed(folder):
    assert subs.set_status(folder, "main", "ada@example.org", "unsubscribed", source="link")
    assert not subs.set_status(folder, "main", "ada@example.org", "unsubscribed")
    assert not subs.set_status(folder, "main", "nobody@example.org", "unsubscribed")
    ada = next(subs.iter_subscribers(folder / "main.csv"))
    assert (ada.status, ada.source) == ("unsubscribed", "link")
    assert ada.updated_at != "2024-01-01T00:00:00+00:00"


def test_confirming_a_pending_row_sets_subscribed_at(folder):
    subs.add_subscriber(folder, "main", "new@example.org", status="pending", source="form")
    new = list(subs.iter_subscribers(folder / "main.csv"))[-1]
    assert (new.status, new.subscribed_at) == ("pending", "")
    assert subs.set_status(folder, "main", "new@example.org", "subscribed", source="confirm")
    new = list(subs.iter_subscribers(folder / "main.csv"))[-1]
    assert (new.status, new.source) == ("subscribed", "confirm") and new.subscribed_at


def test_downgrade_status_only_makes_rows_less_mailable(folder):
    assert subs.downgrade_status(folder, "main", "ada@example.org", "bounced", source="sendgrid")
    assert not subs.downgrade_status(folder, "main", "ada@example.org", "unsubscribed")
    assert subs.downgrade_status(folder, "main", "ada@example.org", "complained")
    assert subs.downgrade_status(folder, "main", "alan@example.com", "bounced")
    assert not subs.downgrade_status(folder, "main", "nobody@example.org", "bounced")
    statuses = {row.email: (row.status, row.source) for row in subs.iter_rows(folder / "main.csv")}
    assert statuses["ada@example.org"] == ("complained", "sendgrid")
    assert statuses["alan@example.com"] == ("bounced", "import")
    assert not subs.downgrade_status(folder, "main", "ada@example.org", "subscribed")


def test_iter_rows_reads_rows_that_do_not_pass_validation(folder):
    path = put(folder, "lists/hand_edited.csv")
    rows = [(row.email, row.key, row.line) for row in subs.iter_rows(path)]
    assert rows == [
        ("ada@example.org", "ada@example.org", 2),
        ("not an address", "not an address", 3),
        ("grace@example.net", "grace@example.net", 4),
    ]
    with pytest.raises(SubscriberError, match="^subscribers/broken.csv:2: NUL byte"):
        list(subs.iter_rows(put(folder, "malformed/nul.csv", "broken")))


def test_set_status_refuses_to_subscribe_a_suppressed_address(folder):
    subs.add_suppression(folder, "ada@example.org", "complained")
    with pytest.raises(SubscriberError, match="is suppressed \\(complained\\)"):
        subs.set_status(folder, "main", "ada@example.org", "subscribed")


def test_edits_keep_rows_they_cannot_parse_and_the_file_format(folder):
    path = put(folder, "lists/hand_edited.csv")
    subs.set_status(folder, "hand_edited", "grace@example.net", "unsubscribed")
    text = path.read_bytes()
    assert text.startswith(b"\xef\xbb\xbfemail,name")  # the BOM stays
    assert b"\r\nnot an address,Typo,subscribed,,,hand\r\n" in text  # so do the bad row and CRLF
    assert text.count(b"\r\n") == 4


def test_edits_add_missing_columns_and_keep_custom_ones(folder):
    path = put(folder, "lists/email_only.csv")
    subs.add_subscriber(folder, "email_only", "new@example.org", fields={"city": "Oslo"})
    lines = path.read_text().splitlines()
    assert lines[0] == "email,name,status,subscribed_at,updated_at,source,city"
    assert lines[1] == "ada@example.org,,,,,,"
    assert lines[3].startswith("new@example.org,,subscribed,")
    assert lines[3].endswith(",,Oslo")


# --- suppressions and erasure ----------------------------------------------------------------


def test_add_suppressions_keeps_the_first_reason_and_counts_new_ones(folder):
    assert (
        subs.add_suppressions(folder, [("a@example.org", "bounced"), ("A@example.org", "x")]) == 1
    )
    assert subs.add_suppressions(folder, [("a@example.org", "complained")]) == 0
    assert subs.suppression_reasons(folder) == {"a@example.org": "bounced"}
    with pytest.raises(SubscriberError, match="^invalid email address 'nope'"):
        subs.add_suppression(folder, "nope", "bounced")


def test_forget_erases_the_address_everywhere_and_keeps_only_a_hash(folder):
    (folder / "other.csv").write_text("email,name\nAda@example.org,Ada\nada@EXAMPLE.org,Again\n")
    subs.add_suppression(folder, "ada@example.org", "bounced")
    assert subs.forget(folder, "ADA@example.org") == {"main": 1, "other": 2}
    assert subs.forget(folder, "ada@example.org") == {}  # idempotent
    everything = "".join(p.read_text() for p in folder.glob("*.csv")).casefold()
    assert "ada@example.org" not in everything
    digest = subs.suppression_hash("ada@example.org")
    assert (folder / "suppressions.csv").read_text().count(digest) == 1
    assert subs.is_suppressed("ada@example.org", subs.load_suppressed(folder))
    # A later bounce of the erased address must not write it back in plain text.
    assert subs.add_suppressions(folder, [("ada@example.org", "bounced")]) == 0
    assert "ada@" not in (folder / "suppressions.csv").read_text()


def test_forget_refuses_something_that_is_not_an_address(folder):
    before = (folder / "main.csv").read_bytes()
    with pytest.raises(SubscriberError, match="^invalid email address ''"):
        subs.forget(folder, "")
    assert (folder / "main.csv").read_bytes() == before


# --- export ----------------------------------------------------------------------------------


def test_export_writes_the_rows_with_a_status(folder, tmp_path):
    target = tmp_path / "out" / "unsubscribed.csv"
    target.parent.mkdir()
    assert subs.export(folder, "main", statuses=["unsubscribed"], to=target) == 1
    assert target.read_text() == (
        "email,name,status,subscribed_at,updated_at,source,company\n"
        "alan@example.com,,unsubscribed,2024-01-03T00:00:00+00:00,2024-01-04T00:00:00+00:00,import,\n"
    )


def test_export_refuses_to_overwrite_a_list(folder):
    with pytest.raises(SubscriberError, match="^refusing to write subscribers/other.csv"):
        subs.export(folder, "main", to=folder / "other.csv")


# --- round trips -----------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=30)
_name = _text.map(lambda s: "".join(c for c in s if c.isprintable()).strip())
_value = st.one_of(
    _text,
    st.sampled_from(
        ["a, b", 'say "hi"', "line 1\nline 2", "cr\r\nlf", "\r", "Ёлка, 東京", " pad "]
    ),
)
_address = st.sampled_from(["ada@example.org", "josé@bücher.example", "A+b@x.example.com"])


def _subscribers(fields: st.SearchStrategy[str], values: st.SearchStrategy[str], min_size=0):
    return st.lists(
        st.builds(
            Subscriber,
            email=_address,
            name=_name,
            status=st.sampled_from(subs.STATUSES),
            source=_text,
            fields=st.dictionaries(fields, values, max_size=3),
        ),
        min_size=min_size,
        max_size=4,
    )


@settings(max_examples=100, deadline=None)
@given(rows=_subscribers(st.sampled_from(["company", "City", "Plan-2", "_x"]), _value.filter(bool)))
def test_lists_round_trip_names_and_fields_with_commas_quotes_newlines_and_any_script(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "round.csv"
        subs.write_subscribers(path, rows)
        assert [replace(row, line=0) for row in subs.iter_subscribers(path)] == rows


@settings(max_examples=50, deadline=None)
@given(rows=_subscribers(st.sampled_from(["company", "city", "note"]), _value.filter(str.strip), 1))
def test_an_export_imported_into_an_empty_list_keeps_names_and_fields(rows):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subscribers"
        subs.write_subscribers(folder / "round.csv", rows)
        subs.export(folder, "round", to=Path(tmp) / "export.csv")
        subs.import_file(folder, "copy", Path(tmp) / "export.csv")
        copied = [(r.key, r.name, r.fields) for r in subs.iter_subscribers(folder / "copy.csv")]
    first: dict[str, Subscriber] = {}
    for row in rows:
        first.setdefault(row.key, row)
    assert copied == [(key, row.name, row.fields) for key, row in first.items()]


def test_the_key_the_reader_works_out_is_the_one_email_key_gives(tmp_path):
    from newsletter.subscribers import email_key, iter_subscribers

    path = tmp_path / "main.csv"
    path.write_text(
        "email,name\nAda@Example.ORG,Ada\nGrace.Hopper+news@Example.NET,Grace\nJosé@exämple.org,José\n",
        encoding="utf-8",
    )
    for subscriber in iter_subscribers(path):
        assert subscriber.known_key
        assert subscriber.key == email_key(subscriber.email)
