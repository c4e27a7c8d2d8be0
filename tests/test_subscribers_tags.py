"""Tags: the optional `tags` column, `subscribers tag` / `untag`, and `import --tag`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from newsletter import subscribers as subs
from newsletter.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["subscribers", *args])


def tags_of(workspace: Path, list_name: str = "main") -> dict[str, tuple[str, ...]]:
    path = workspace / "subscribers" / f"{list_name}.csv"
    return {s.email: s.tags for s in subs.iter_subscribers(path)}


def test_tags_column_holds_several_comma_separated_tags_and_is_not_a_field(tmp_path):
    path = tmp_path / "main.csv"
    path.write_text('email,Tags,city\na@example.org,"python, rust ,python",Kyiv\nb@example.org,,\n')
    a, b = subs.iter_subscribers(path)
    assert (a.tags, a.fields) == (("python", "rust"), {"city": "Kyiv"})
    assert (b.tags, b.fields) == ((), {})


def test_tag_adds_the_tags_column_and_untag_takes_tags_away(workspace):
    result = run("tag", "ADA@example.org", "python", "early", "--list", "main")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ADA@example.org in main: tags python, early.\n"
    header = (workspace / "subscribers" / "main.csv").read_text().splitlines()[0]
    assert header == "email,name,status,subscribed_at,updated_at,source,company,tags"
    assert run("tag", "ada@example.org", "python").stdout == (
        "ada@example.org in main: nothing changed.\n"
    )
    result = run("untag", "ada@example.org", "early")
    assert result.stdout == "ada@example.org in main: tags python.\n"
    assert tags_of(workspace)["ada@example.org"] == ("python",)
    assert tags_of(workspace)["grace@example.net"] == ()
    row = subs.page(workspace / "subscribers", "main").subscribers[0]
    assert row.fields == {"company": "Engines & <Co>"}  # the other columns are kept


def test_tag_refuses_a_tag_with_a_space_and_an_address_not_in_the_list(workspace):
    result = run("tag", "ada@example.org", "two words")
    assert result.exit_code != 0
    assert "invalid tag 'two words'" in result.output
    result = run("tag", "nobody@example.org", "python")
    assert result.exit_code != 0
    assert "nobody@example.org is not in list 'main'" in result.output


def test_import_tag_tags_new_and_existing_rows(workspace, tmp_path):
    export = tmp_path / "people.csv"
    export.write_text("email,tags\nada@example.org,vip\nnew@example.org,vip\n")
    result = run("import", str(export), "--list", "main", "--tag", "conf-2026", "--tag", "x")
    assert result.exit_code == 0, result.output
    found = tags_of(workspace)
    # The file's own tags land on new rows; an existing row takes them only with --update.
    assert found["new@example.org"] == ("vip", "conf-2026", "x")
    assert found["ada@example.org"] == ("conf-2026", "x")
    assert found["grace@example.net"] == ()
    run("import", str(export), "--list", "main", "--update")
    assert tags_of(workspace)["ada@example.org"] == ("conf-2026", "x", "vip")


def test_add_refuses_tags_as_a_custom_field(workspace):
    result = run("add", "x@example.org", "--field", "tags=a")
    assert result.exit_code != 0
    assert "invalid field name 'tags'" in result.output
