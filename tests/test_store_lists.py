"""Subscriber lists and suppressions behave the same on the files store and on PostgreSQL.

`store_workspace` is the test workspace on each store: as it is (files), or pointed at a fresh
PostgreSQL database into which `newsletter store push` copied its lists, with the CSV files
then removed, so a command that still read them would fail.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_config
from newsletter.store import lists
from newsletter.subscribers import SendableStats, Skipped, Withdrawn, email_key

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def on_postgres() -> bool:
    return "NEWSLETTER_STORE_URL" in os.environ


def push_and_hide(root: Path) -> None:
    """Push the workspace's lists into the store, then take the CSV files away."""
    result = run("store", "push")
    assert result.exit_code == 0, result.output
    for csv in (root / "subscribers").glob("*.csv"):
        csv.unlink()


@pytest.fixture(params=["files", "postgres"])
def store_workspace(request) -> Path:
    if request.param == "files":
        return request.getfixturevalue("workspace")
    root = request.getfixturevalue("pg_workspace")
    push_and_hide(root)
    return root


def put_list(root: Path, name: str, text: str, suppressions: str | None = None) -> None:
    """A list (and suppressions) as this CSV text, on whichever store the workspace uses."""
    (root / "subscribers" / f"{name}.csv").write_text(text)
    if suppressions is not None:
        (root / "subscribers" / "suppressions.csv").write_text(suppressions)
    if on_postgres():
        push_and_hide(root)


def where(list_name: str) -> str:
    return f"{list_name} (PostgreSQL)" if on_postgres() else f"subscribers/{list_name}.csv"


# --- the same behaviour on both stores -------------------------------------------------------


def test_count_prints_rows_by_status(store_workspace):
    result = run("subscribers", "count")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "subscribed    2\nunsubscribed  1\nbounced       0\ncomplained    0\npending       0\n"
        "total         3\n"
    )


def test_list_shows_the_lists_and_pages_rows_with_their_csv_line(store_workspace):
    put_list(store_workspace, "other", "email,status\nx@example.org,bounced\n")
    result = run("subscribers", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [
        "LIST   TOTAL  SUBSCRIBED  UNSUBSCRIBED  BOUNCED  COMPLAINED  PENDING",
        "main   3      2           1             0        0           0",
        "other  1      0           0             1        0           0",
    ]
    result = run(
        "subscribers", "list", "main", "--status", "subscribed", "--page", "2", "--per-page", "1"
    )
    assert result.stdout == (
        "LINE  EMAIL              NAME          STATUS      SUBSCRIBED_AT\n"
        "3     grace@example.net  Grace Hopper  subscribed  2024-01-02T00:00:00+00:00\n"
        "Rows 2-2 of 2 in main with status subscribed.\n"
    )


def test_add_remove_and_resubscribe_follow_the_same_rules(store_workspace):
    assert run(
        "subscribers", "add", "lin@example.org", "--name", "Lin", "--field", "company=X"
    ).stdout == ("Added lin@example.org to main.\n")
    assert run("subscribers", "add", "LIN@example.org").stdout == (
        "LIN@example.org is already in main; nothing changed.\n"
    )
    assert run("subscribers", "add", "lin@example.org", "--field", "company=Y").stdout == (
        "Updated lin@example.org in main.\n"
    )
    refused = run("subscribers", "add", "alan@example.com")
    assert refused.exit_code == 4
    assert "alan@example.com is unsubscribed in list 'main' (line 4); add --resubscribe" in (
        refused.stderr
    )
    assert run("subscribers", "add", "alan@example.com", "--resubscribe").stdout == (
        "Updated alan@example.com in main.\n"
    )
    assert run("subscribers", "remove", "ada@example.org").stdout == (
        "Unsubscribed ada@example.org from main (the row is kept).\n"
    )
    assert run("subscribers", "remove", "ada@example.org").stdout == (
        "ada@example.org is already unsubscribed in main; nothing changed.\n"
    )
    missing = run("subscribers", "remove", "nobody@example.org")
    assert (missing.exit_code, missing.stderr) == (
        4,
        "Error: nobody@example.org is not in list 'main'\n",
    )
    exported = run("subscribers", "export").stdout.splitlines()
    assert exported[0] == "email,name,status,subscribed_at,updated_at,source,company"
    assert [line.split(",")[:3] + line.split(",")[-2:] for line in exported[1:]] == [
        ["ada@example.org", "Ada Lovelace", "unsubscribed", "cli", "Engines & <Co>"],
        ["grace@example.net", "Grace Hopper", "subscribed", "form", ""],
        ["alan@example.com", "", "subscribed", "cli", ""],
        ["lin@example.org", "Lin", "subscribed", "cli", "Y"],
    ]


def test_forget_erases_everywhere_and_the_hash_blocks_adding_and_importing(
    store_workspace, tmp_path
):
    put_list(
        store_workspace,
        "other",
        "email,status\nada@example.org,subscribed\nbo@example.org,subscribed\n",
    )
    result = run("subscribers", "forget", "Ada@Example.org", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Erased Ada@Example.org: 1 row from main, 1 row from other.\n")
    assert run("subscribers", "count").stdout.startswith("subscribed    1\n")
    again = run("subscribers", "add", "ada@example.org")
    assert (again.exit_code, again.stderr) == (
        4,
        "Error: ada@example.org was erased with `forget`; it cannot be added again\n",
    )
    export = tmp_path / "back.csv"
    export.write_text("email\nada@example.org\nnew@example.org\n")
    result = run("subscribers", "import", str(export))
    assert "1 added, 0 updated, 0 unchanged, 1 rejected." in result.stdout
    assert f"{export}:2: erased with `forget`; it cannot be imported again\n" in result.stderr
    assert run("subscribers", "forget", "ada@example.org", "--yes").stdout.startswith(
        "ada@example.org was in no list.\n"
    )


def test_import_reports_bad_rows_and_writes_the_same_rejects_file(store_workspace, tmp_path):
    export = tmp_path / "substack_email_list.csv"
    shutil.copyfile(FIXTURES / "exports" / export.name, export)
    result = run("subscribers", "import", str(export))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Imported {export} into main (substack format): "
        "3 added, 0 updated, 0 unchanged, 2 rejected.\n"
        "Ignored columns: expiry, first_payment_at.\n"
    )
    assert result.stderr == (
        f"{export}:5: duplicate of line 4\n"
        f"{export}:6: invalid email address 'not-a-mail': An email address must have an @-sign.\n"
        f"Rejected rows written to {tmp_path / 'substack_email_list.rejects.csv'}: "
        "fix them and import that file.\n"
    )
    again = run("subscribers", "import", str(export))
    assert "0 added, 0 updated, 3 unchanged, 2 rejected." in again.stdout
    assert run("subscribers", "count").stdout.endswith("total         6\n")


def test_import_refuses_a_new_address_that_is_suppressed(store_workspace, tmp_path):
    put_list(
        store_workspace,
        "other",
        "email\nx@example.org\n",
        suppressions="email,reason,at\nBlocked@example.org,bounced,\n",
    )
    export = tmp_path / "in.csv"
    export.write_text("email\nblocked@example.org\nfresh@example.org\n")
    result = run("subscribers", "import", str(export))
    assert "1 added, 0 updated, 0 unchanged, 1 rejected." in result.stdout
    held = "the store's suppressions" if on_postgres() else "subscribers/suppressions.csv"
    assert f"{export}:2: suppressed (bounced) in {held}\n" in result.stderr


def test_import_only_makes_rows_less_mailable_unless_update(store_workspace, tmp_path):
    export = tmp_path / "changes.csv"
    export.write_text(
        "email,name,status,city\n"
        "grace@example.net,Amazing Grace,unsubscribed,Arlington\n"
        "alan@example.com,Alan Turing,subscribed,Wilmslow\n"
        "kim@example.org,Kim,bounced,\n"
    )
    result = run("subscribers", "import", str(export), "--format", "csv")
    assert "1 added, 1 updated, 1 unchanged, 0 rejected." in result.stdout
    assert "1 bounced or blocked address added to" in result.stdout
    result = run("subscribers", "import", str(export), "--format", "csv", "--update")
    assert "0 added, 2 updated, 1 unchanged, 0 rejected." in result.stdout
    rows = {
        line.split(",")[0]: line.split(",")
        for line in run("subscribers", "export").stdout.splitlines()[1:]
    }
    assert rows["grace@example.net"][1:3] == ["Amazing Grace", "unsubscribed"]
    assert rows["alan@example.com"][1:3] == ["Alan Turing", "unsubscribed"]
    assert rows["kim@example.org"][2] == "bounced"
    assert rows["alan@example.com"][-1] == "Wilmslow"
    assert lists.suppression_reasons(load_config(Path("newsletter.toml"))) == {
        "kim@example.org": "bounced"
    }


def test_export_gives_back_the_list_as_written(store_workspace, tmp_path):
    original = (
        Path(__file__).parent / "fixtures" / "workspace" / "subscribers" / "main.csv"
    ).read_bytes()
    target = tmp_path / "all.csv"
    result = run("subscribers", "export", "main", "--to", str(target))
    assert result.stdout == f"Exported 3 rows of main to {target}.\n"
    assert target.read_bytes() == original
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    result = run("subscribers", "export", "--status", "unsubscribed")
    assert result.stdout == (
        "email,name,status,subscribed_at,updated_at,source,company\n"
        "alan@example.com,,unsubscribed,2024-01-03T00:00:00+00:00,2024-01-04T00:00:00+00:00,import,\n"
    )


def test_validate_names_each_bad_row_by_its_line(store_workspace):
    assert run("subscribers", "validate").stdout == "No problems in 1 list.\n"
    put_list(
        store_workspace,
        "bad",
        "email,status\nok@example.org,subscribed\nnot-an-address,subscribed\nx@example.org,maybe\n",
    )
    result = run("subscribers", "validate", "bad")
    assert result.exit_code == 1
    assert result.stdout == (
        f"{where('bad')}:3: invalid email address 'not-an-address': "
        "An email address must have an @-sign.\n"
        f"{where('bad')}:4: unknown status 'maybe' (expected one of: subscribed, unsubscribed, "
        "bounced, complained, pending)\n"
    )


def test_sendable_leaves_out_suppressed_erased_and_withdrawn_addresses(store_workspace):
    erased = email_key("eve@example.org")
    from newsletter.subscribers import suppression_hash

    put_list(
        store_workspace,
        "big",
        "email,name,status,team\n"
        "a@example.org,A,subscribed,red\n"
        "b@example.org,B,subscribed,\n"
        "eve@example.org,E,subscribed,\n"
        "gone@example.org,G,subscribed,\n"
        "p@example.org,P,pending,\n"
        "bad-address,X,subscribed,\n"
        "w@example.org,W,subscribed,\n",
        suppressions=f"email,reason,at\nb@example.org,bounced,\n{suppression_hash(erased)},erased,\n",
    )
    config = load_config(Path("newsletter.toml"))
    stats = SendableStats()
    withdrawn = Withdrawn(statuses={"gone@example.org": "unsubscribed"})
    got = list(lists.sendable(config, "big", stats, withdrawn, skip_bad_rows=True))
    mailed = [(s.email, s.line, dict(s.fields)) for s in got if not isinstance(s, Skipped)]
    assert mailed == [
        ("a@example.org", 2, {"team": "red"}),
        ("w@example.org", 8, {}),
    ]
    (skipped,) = [s for s in got if isinstance(s, Skipped)]
    assert (skipped.email, skipped.where) == ("bad-address", f"{where('big')}:7")
    assert stats.suppressed == 2
    assert stats.not_subscribed["pending"] == 1
    assert stats.not_subscribed["unsubscribed"] == 1


def test_downgrades_only_ever_make_a_row_less_mailable(store_workspace):
    config = load_config(Path("newsletter.toml"))
    assert lists.downgrade_status(config, "main", "ada@example.org", "bounced", source="webhook")
    assert not lists.downgrade_status(config, "main", "ada@example.org", "unsubscribed")
    changed = lists.downgrade_many(
        config,
        "main",
        lambda: {
            "ada@example.org": ("complained", ""),
            "grace@example.net": ("unsubscribed", "link"),
            "alan@example.com": ("unsubscribed", "link"),
            "nobody@example.org": ("bounced", ""),
        },
    )
    assert changed == 2
    rows = {s.email: (s.status, s.source) for s in lists.page(config, "main").subscribers}
    assert rows == {
        "ada@example.org": ("complained", "webhook"),
        "grace@example.net": ("unsubscribed", "link"),
        "alan@example.com": ("unsubscribed", "import"),
    }
    assert lists.set_status(config, "main", "alan@example.com", "pending")
    assert lists.count(config, "main")["pending"] == 1


# --- PostgreSQL: push, pull, send, preview ---------------------------------------------------


ODD_LIST = (
    "\ufeffEmail,tags,Name,status,notes,subscribed_at,updated_at,source\r\n"
    'zoë@example.org,"a,b",Zoë Ünicode,subscribed,"line one\nline two",'
    "2024-02-01T00:00:00+00:00,,form\r\n"
    'q@example.org,,"Quote ""Q"" Person",unsubscribed,"has, comma",,,\r\n'
    "c@example.org,x,,complained,,,,import\r\n"
)


def test_push_then_pull_gives_back_every_list_byte_for_byte(pg_workspace, pg_url):
    folder = pg_workspace / "subscribers"
    (folder / "odd.csv").write_bytes(ODD_LIST.encode())
    (folder / "suppressions.csv").write_text(
        "email,reason,at\nb@example.org,bounced,2024-01-01T00:00:00+00:00\n"
        "sha256:" + "0" * 64 + ",erased,2024-01-02T00:00:00+00:00\n"
    )
    before = {p.name: p.read_bytes() for p in folder.glob("*.csv")}
    pushed = run("store", "push")
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stdout == (
        "lists: main 3 rows (3 added, 0 updated); odd 3 rows (3 added, 0 updated)\n"
        "suppressions: 2 entries (2 added)\n"
        "ledger: no sends recorded, nothing to copy\n"
        "events: none kept\nopt-in requests: none kept\nopt-outs: none kept\n"
        "links: none kept\n"
    )
    shutil.rmtree(folder)
    pulled = run("store", "pull")
    assert pulled.exit_code == 0, pulled.output
    assert {p.name: p.read_bytes() for p in folder.glob("*.csv")} == before
    assert {oct(p.stat().st_mode & 0o777) for p in folder.glob("*.csv")} == {"0o600"}
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT tags, fields FROM subscribers WHERE list = 'odd' AND position = 2"
        ).fetchone() == (["a", "b"], {"notes": "line one\nline two"})


def test_push_twice_changes_nothing_and_says_so(pg_workspace, pg_url):
    (pg_workspace / "subscribers" / "suppressions.csv").write_text(
        "email,reason\nb@example.org,x\n"
    )
    assert run("store", "push").exit_code == 0
    with psycopg.connect(pg_url) as conn:
        before = conn.execute("SELECT xmin::text, * FROM subscribers ORDER BY key").fetchall()
    again = run("store", "push")
    assert again.stdout == (
        "lists: main 3 rows (0 added, 0 updated): nothing changed\n"
        "suppressions: 1 entries: nothing changed\n"
        "ledger: no sends recorded, nothing to copy\n"
        "events: none kept\nopt-in requests: none kept\nopt-outs: none kept\n"
        "links: none kept\n"
    )
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT xmin::text, * FROM subscribers ORDER BY key").fetchall() == (
            before
        )
    main = pg_workspace / "subscribers" / "main.csv"
    main.write_text(main.read_text().replace("Grace Hopper", "Grace B. Hopper"))
    assert run("store", "push").stdout.startswith("lists: main 3 rows (0 added, 1 updated)\n")


def test_push_refuses_a_list_with_an_address_twice_naming_both_lines(pg_workspace):
    main = pg_workspace / "subscribers" / "main.csv"
    main.write_text(main.read_text() + "ADA@example.org,Ada again,subscribed,,,,\n")
    result = run("store", "push")
    assert result.exit_code == 4
    assert result.stderr == (
        "Error: subscribers/main.csv:5: duplicate of line 2: ADA@example.org; the store keeps "
        "one row per address: remove one (see `newsletter subscribers validate`) and push again\n"
    )


def test_a_send_from_a_postgresql_list_mails_exactly_the_sendable_addresses(pg_workspace):
    (pg_workspace / "subscribers" / "suppressions.csv").write_text(
        "email,reason\ngrace@example.net,complained\n"
    )
    push_and_hide(pg_workspace)
    assert run("subscribers", "add", "new@example.org", "--name", "New Reader").exit_code == 0
    result = run("send", "issues/merge.md", "--yes")
    assert result.exit_code == 0, result.output
    assert "Recipients: 2 (left out: 1 unsubscribed, 1 suppressed)" in result.output
    folder = pg_workspace / "outbox" / "merge"
    sent = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]
    assert sorted(m["To"] for m in sent) == [
        "Ada Lovelace <ada@example.org>",
        "New Reader <new@example.org>",
    ]
    again = run("send", "issues/merge.md", "--yes")
    assert again.exit_code == 0, again.output
    assert len(list(folder.glob("*.eml"))) == 2


def test_preview_as_reads_the_subscriber_from_postgresql(pg_workspace):
    push_and_hide(pg_workspace)
    result = run("preview", "issues/merge.md", "--as", "ADA@example.org")
    assert result.exit_code == 0, result.output
    html = (pg_workspace / "build" / "merge" / "email.html").read_text(encoding="utf-8")
    assert "Hi Ada from Engines &amp; &lt;Co&gt;," in html
    missing = run("preview", "issues/merge.md", "--as", "nobody@example.org")
    assert missing.exit_code == 4
    assert missing.output.strip().endswith("nobody@example.org is not in the list 'main'")


def test_an_unsubscribe_never_waits_for_an_import_of_the_same_list(
    pg_workspace, pg_url, tmp_path, monkeypatch
):
    from newsletter.store import pg_import

    push_and_hide(pg_workspace)
    export = tmp_path / "in.csv"
    addresses = ["grace@example.net", *(f"r{i}@example.org" for i in range(100))]
    export.write_text("email\n" + "".join(f"{a}\n" for a in addresses))  # grace: unchanged
    importing = psycopg.connect(pg_url)  # an import under way: its transaction still open
    try:
        report = pg_import.import_file(importing, "main", export)
        assert (report.added, report.unchanged) == (100, 1)
        monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=2s")  # waiting would fail, not hang
        config = load_config(Path("newsletter.toml"))
        assert lists.downgrade_status(config, "main", "ada@example.org", "unsubscribed")
        assert lists.set_status(config, "main", "grace@example.net", "bounced")
        assert lists.count(config, "main")["subscribed"] == 0
    finally:
        importing.rollback()
        importing.close()


def test_tags_and_segments_behave_the_same_on_both_stores(store_workspace, tmp_path):
    assert run("subscribers", "tag", "ada@example.org", "python", "ops").exit_code == 0
    assert run("subscribers", "tag", "grace@example.net", "python").exit_code == 0
    assert run("subscribers", "untag", "ada@example.org", "ops").exit_code == 0
    missing = run("subscribers", "tag", "nobody@example.org", "python")
    assert (missing.exit_code, missing.stderr) == (
        4,
        "Error: nobody@example.org is not in list 'main'\n",
    )
    export = tmp_path / "more.csv"
    export.write_text("email,tags\nlin@example.com,rust\ngrace@example.net,\n")
    imported = run("subscribers", "import", str(export), "--tag", "spring")
    assert imported.exit_code == 0, imported.output
    count = run("subscribers", "count", "--segment", 'tag:python and not company = "x"')
    assert count.stdout.startswith("subscribed    2\n"), count.output
    spring = run("subscribers", "list", "main", "--segment", "tag:spring and tag:rust")
    assert "lin@example.com" in spring.stdout and "grace@" not in spring.stdout
    both = run("subscribers", "count", "--segment", "tag:spring and tag:python")
    assert both.stdout.startswith("subscribed    1\n"), both.output  # grace: --tag on a known row
    bad = run("subscribers", "count", "--segment", "country = 1")
    assert bad.exit_code == 4 and "unknown column 'country'" in bad.stderr
    rows = {s.email: s.tags for s in lists.page(_config(store_workspace), "main").subscribers}
    assert rows["ada@example.org"] == ("python",)
    assert rows["grace@example.net"] == ("python", "spring")
    assert rows["lin@example.com"] == ("rust", "spring")


def _config(root: Path):
    return load_config(root / "newsletter.toml")
