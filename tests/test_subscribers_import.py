"""Imports of real export shapes: format detection, status mapping, merges, rejects."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from newsletter import subscribers as subs
from newsletter.errors import SubscriberError

EXPORTS = Path(__file__).parent / "fixtures" / "subscribers" / "exports"


@pytest.fixture
def folder(workspace: Path) -> Path:
    """subscribers/ of a fresh workspace: main.csv has ada, grace (subscribed), alan (unsubscribed)."""
    return workspace / "subscribers"


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """A copy of the export fixtures (imports write their rejects next to the input)."""
    return Path(shutil.copytree(EXPORTS, tmp_path / "exports"))


def rows(folder: Path, name: str = "main") -> dict[str, subs.Subscriber]:
    return {row.key: row for row in subs.iter_subscribers(folder / f"{name}.csv")}


def counts(report: subs.ImportReport) -> tuple[int, int, int, int]:
    return report.added, report.updated, report.unchanged, report.rejected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("mailchimp_subscribed_members.csv", "mailchimp"),
        ("mailchimp_unsubscribed_members.csv", "mailchimp"),
        ("mailchimp_cleaned_members.csv", "mailchimp"),
        ("substack_email_list.csv", "substack"),
        ("buttondown_subscribers.csv", "buttondown"),
        ("listmonk_subscribers.csv", "listmonk"),
        ("excel_contacts.csv", "csv"),
    ],
)
def test_the_format_is_recognised_by_the_header(fixture, expected):
    with (EXPORTS / fixture).open(encoding="utf-8-sig", newline="") as f:
        assert subs.detect_format(next(csv.reader(f))) == expected


def test_mailchimp_subscribed_export_adds_new_members_with_their_names(folder, exports):
    report = subs.import_file(folder, "main", exports / "mailchimp_subscribed_members.csv")
    assert report.format == "mailchimp"
    assert counts(report) == (2, 0, 1, 1)  # ada was already there; one address is broken
    marie = rows(folder)["marie@example.com"]
    assert (marie.email, marie.name, marie.status, marie.source) == (
        "MARIE@Example.COM",
        "Marie Skłodowska-Curie",
        "subscribed",
        "import:mailchimp",
    )
    assert marie.fields == {
        "first_name": "Marie",
        "last_name": "Skłodowska-Curie",
        "notes": 'Met at "Solvay", 1911',
    }
    assert marie.subscribed_at == "2022-02-11T08:00:00"  # OPTIN_TIME, as CONFIRM_TIME is empty
    assert rows(folder)["josé@bücher.example"].subscribed_at == "2022-03-01T12:10:00"
    assert "MEMBER_RATING" in report.ignored_columns and "LEID" in report.ignored_columns
    assert [str(p) for p in report.problems] == [
        f"{exports / 'mailchimp_subscribed_members.csv'}:5: invalid email address "
        "'not-an-address': An email address must have an @-sign."
    ]


def test_mailchimp_unsubscribed_export_unsubscribes_existing_members_without_update(
    folder, exports
):
    report = subs.import_file(folder, "main", exports / "mailchimp_unsubscribed_members.csv")
    assert counts(report) == (1, 1, 0, 0)
    assert rows(folder)["grace@example.net"].status == "unsubscribed"
    assert rows(folder)["grace@example.net"].name == "Grace Hopper"  # other fields untouched
    assert rows(folder)["hedy@example.com"].status == "unsubscribed"


def test_mailchimp_cleaned_export_adds_bounced_rows_and_suppresses_them(folder, exports):
    report = subs.import_file(folder, "main", exports / "mailchimp_cleaned_members.csv")
    assert (counts(report), report.suppressed) == ((1, 0, 0, 0), 1)
    assert rows(folder)["gone@example.com"].status == "bounced"
    assert subs.suppression_reasons(folder) == {"gone@example.com": "bounced"}


def test_substack_export_maps_email_disabled_and_rejects_duplicates(folder, exports):
    report = subs.import_file(folder, "main", exports / "substack_email_list.csv")
    assert counts(report) == (3, 0, 0, 2)
    found = rows(folder)
    assert found["carl@example.com"].status == "unsubscribed"  # the less mailable twin wins
    assert found["bob@example.com"].fields == {"active_subscription": "true", "plan": "monthly"}
    assert found["bob@example.com"].subscribed_at == "2024-02-01T10:00:00+00:00"
    rejects = report.rejects_path
    assert rejects == exports / "substack_email_list.rejects.csv"
    assert rejects.read_text().splitlines() == [
        "rejected_line,rejected_reason,email,active_subscription,expiry,plan,email_disabled,"
        "created_at,first_payment_at",
        "5,duplicate of line 4,CARL@example.com,true,2026-06-01T00:00:00.000Z,annually,false,"
        "2024-03-02T10:00:00.000Z,2024-03-02T10:00:00.000Z",
        "6,invalid email address 'not-a-mail': An email address must have an @-sign.,"
        "not-a-mail,false,,,false,2024-03-03T10:00:00.000Z,",
    ]


def test_buttondown_export_maps_subscriber_types_and_metadata(folder, exports):
    report = subs.import_file(folder, "main", exports / "buttondown_subscribers.csv")
    assert (counts(report), report.suppressed) == ((6, 0, 0, 1), 2)
    found = rows(folder)
    statuses = {key: row.status for key, row in found.items() if key.endswith("@example.com")}
    assert statuses == {
        "alan@example.com": "unsubscribed",
        "reg@example.com": "subscribed",
        "paid@example.com": "subscribed",
        "new@example.com": "pending",
        "left@example.com": "unsubscribed",
        "spam@example.com": "unsubscribed",
        "dead@example.com": "bounced",
    }
    assert found["reg@example.com"].fields == {
        "company": "Acme, Inc.",
        "seats": "12",
    }
    assert found["reg@example.com"].tags == ("vip",)  # Buttondown's tags column holds tags
    assert subs.suppression_reasons(folder) == {
        "spam@example.com": "spammy",
        "dead@example.com": "bounced",
    }
    assert str(report.problems[0]).endswith(
        ":8: unknown status 'mystery' for a buttondown file (blocked, churning, complained, "
        "gifted, past_due, paused, premium, regular, removed, spammy, trialed, unactivated, "
        "undeliverable, unpaid, unsubscribed)"
    )


def test_listmonk_export_reads_attributes_and_go_timestamps(folder, exports):
    report = subs.import_file(folder, "main", exports / "listmonk_subscribers.csv", update=True)
    assert (counts(report), report.suppressed) == ((3, 1, 0, 1), 1)
    found = rows(folder)
    assert found["ada@example.org"].fields == {
        "company": "Engines & <Co>",
        "city": "London",
        "projects": '["engine"]',
    }
    assert found["linus@example.com"].subscribed_at == "2023-01-06T09:00:00+02:00"
    assert found["quiet@example.com"].status == "unsubscribed"
    assert found["blocked@example.com"].status == "unsubscribed"
    assert subs.suppression_reasons(folder) == {"blocked@example.com": "blocklisted"}
    assert str(report.problems[0]).endswith(":6: attributes are not valid JSON")


def test_a_spreadsheet_export_with_bom_crlf_and_quoted_newlines(folder, exports):
    report = subs.import_file(folder, "main", exports / "excel_contacts.csv")
    assert counts(report) == (3, 0, 0, 2)
    found = rows(folder)
    assert found["kim@example.com"].name == "Kim, Dae-jung"
    assert found["kim@example.com"].fields == {
        "company": "Sejong Institute, Seoul",
        "notes": "First line\r\nsecond line",
    }
    assert found["олег@пример.рф"].fields == {"company": "Ёлка ООО"}
    assert found["sam@example.com"].status == "unsubscribed"
    assert [p.message for p in report.problems] == [
        "name contains a line break or control character",
        "unknown status 'member' for a csv file (active, bounced, cleaned, complained, "
        "confirmed, pending, subscribed, unconfirmed, unsubscribed)",
    ]
    assert report.rejects_path.read_bytes().startswith(b"\xef\xbb\xbfrejected_line,")


def test_a_semicolon_separated_export_is_sniffed(folder, exports):
    report = subs.import_file(folder, "main", exports / "semicolons.csv")
    assert counts(report) == (2, 0, 0, 0)
    assert rows(folder)["anna@example.de"].fields == {"city": "Köln"}


def test_an_import_never_resubscribes_anyone(folder, exports):
    subs.set_status(folder, "main", "ada@example.org", "complained")
    subs.set_status(folder, "main", "grace@example.net", "bounced")
    before = (folder / "main.csv").read_bytes()
    export = exports / "back.csv"
    export.write_text(
        "email,name,status\n"
        "ada@example.org,Ada Lovelace,subscribed\n"
        "grace@example.net,Grace Hopper,pending\n"
        "alan@example.com,Alan Turing,subscribed\n"
    )
    report = subs.import_file(folder, "main", export, update=True)
    assert counts(report) == (0, 1, 2, 0)
    statuses = {key: row.status for key, row in rows(folder).items()}
    assert statuses == {
        "ada@example.org": "complained",
        "grace@example.net": "bounced",
        "alan@example.com": "unsubscribed",
    }
    assert rows(folder)["alan@example.com"].name == "Alan Turing"  # --update still updates fields
    assert before != (folder / "main.csv").read_bytes()


def test_without_update_existing_rows_keep_their_fields(folder, exports):
    export = exports / "names.csv"
    export.write_text("email,name,company\nada@example.org,Countess Lovelace,New Co\n")
    report = subs.import_file(folder, "main", export)
    assert counts(report) == (0, 0, 1, 0)
    assert rows(folder)["ada@example.org"].name == "Ada Lovelace"
    report = subs.import_file(folder, "main", export, update=True)
    assert counts(report) == (0, 1, 0, 0)
    ada = rows(folder)["ada@example.org"]
    assert (ada.name, ada.fields) == ("Countess Lovelace", {"company": "New Co"})


def test_suppressed_and_erased_addresses_are_not_imported(folder, exports):
    subs.add_suppression(folder, "spam@example.com", "complained")
    subs.forget(folder, "grace@example.net")
    export = exports / "again.csv"
    export.write_text("email\nspam@example.com\nGrace@example.net\nnew@example.com\n")
    report = subs.import_file(folder, "main", export)
    assert counts(report) == (1, 0, 0, 2)
    assert [p.message for p in report.problems] == [
        "suppressed (complained) in subscribers/suppressions.csv",
        "erased with `forget`; it cannot be imported again",
    ]
    assert "grace" not in (folder / "main.csv").read_text()


def test_map_names_columns_and_skips_others(folder, exports):
    export = exports / "odd.csv"
    export.write_text("Adresse,Nom,Firma,Secret\nx@example.org,X Y,Z Ltd,hunter2\n")
    mapping = {"adresse": "email", "Nom": "name", "Firma": "company", "Secret": ""}
    report = subs.import_file(folder, "main", export, mapping=mapping)
    assert counts(report) == (1, 0, 0, 0)
    assert report.ignored_columns == ("Secret",)
    x = rows(folder)["x@example.org"]
    assert (x.name, x.fields) == ("X Y", {"company": "Z Ltd"})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"Nope": "email"},
            "--map Nope=email: the file has no column 'Nope' (columns: email, name, city)",
        ),
        ({"city": "updated_at"}, "updated_at is set when a row changes"),
        ({"city": "not a field"}, "a field name is letters, digits, '_' and '-'"),
    ],
)
def test_bad_mappings_are_refused(folder, exports, mapping, message):
    with pytest.raises(SubscriberError, match=message.replace("(", r"\(").replace(")", r"\)")):
        subs.import_file(folder, "main", exports / "semicolons.csv", mapping=mapping, format="csv")


def test_a_file_without_an_email_column_or_rows_changes_nothing(folder, exports):
    before = (folder / "main.csv").read_bytes()
    export = exports / "no_email.csv"
    export.write_text("who,what\nx,y\n")
    with pytest.raises(SubscriberError) as caught:
        subs.import_file(folder, "main", export)
    assert str(caught.value) == (
        f"{export}:1: no email column (columns: who, what); name it with --map COLUMN=email"
    )
    with pytest.raises(SubscriberError, match="no rows after the header; nothing to import"):
        subs.import_file(folder, "main", exports / "header_only.csv")
    assert (folder / "main.csv").read_bytes() == before
    assert not list(exports.glob("*.rejects.csv"))


def test_every_row_is_counted_once(folder, exports):
    for fixture in sorted(EXPORTS.glob("*.csv")):
        if fixture.name == "header_only.csv":
            continue
        report = subs.import_file(folder, "main", exports / fixture.name)
        with fixture.open(encoding="utf-8-sig", newline="") as f:
            data_rows = (
                sum(
                    1
                    for row in csv.reader(f, delimiter=";" if "semi" in fixture.name else ",")
                    if any(row)
                )
                - 1
            )
        assert sum(counts(report)) == data_rows, fixture.name
        assert report.rejected == len(report.problems)
