"""`newsletter preview`, `new` and `init` through the CLI runner: exit codes and exact messages."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_preview_writes_html_text_and_eml_and_exits_zero(workspace):
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 0, result.output
    folder = workspace / "build" / "sample"
    assert "Subject:   NATO Weekly Roundup – Week of January 21st" in result.output
    assert "Checks:    all passed" in result.output
    assert f"Wrote      {Path('build/sample/email.eml')}" in result.output
    html = (folder / "email.html").read_text(encoding="utf-8")
    text = (folder / "email.txt").read_text(encoding="utf-8")
    message = email.message_from_bytes(
        (folder / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert message["Subject"] == "NATO Weekly Roundup – Week of January 21st"
    assert message["To"] == "reader@example.com"
    assert message.get_body("html").get_content().replace("\r\n", "\n") == html
    assert message.get_body("plain").get_content().replace("\r\n", "\n") == text


def test_preview_as_a_subscriber_uses_their_fields(workspace):
    result = run("preview", "issues/merge.md", "--as", "ADA@example.org")
    assert result.exit_code == 0, result.output
    assert "Subject:   News for Ada" in result.output
    html = (workspace / "build" / "merge" / "email.html").read_text(encoding="utf-8")
    assert "Hi Ada from Engines &amp; &lt;Co&gt;," in html


def test_preview_as_an_unknown_address_is_a_one_line_error(workspace):
    result = run("preview", "issues/merge.md", "--as", "nobody@example.org")
    assert result.exit_code == 4
    assert result.output.strip().endswith("nobody@example.org is not in the list 'main'")


def test_preview_text_prints_the_plain_text_part(workspace):
    result = run("preview", "issues/sample.md", "--text")
    assert result.exit_code == 0
    assert "“Russia demands US, NATO response next week on Ukraine”" in result.output


@pytest.mark.parametrize(
    ("issue", "message"),
    [
        ("bad/bad-yaml.md", "issues/bad/bad-yaml.md:4: invalid front matter: expected ',' or ']', but got ':'"),
        ("bad/no-front-matter.md", "issues/bad/no-front-matter.md:1: must start with a '---' line opening the YAML front matter"),
        ("bad/unknown-key.md", "issues/bad/unknown-key.md:3: unknown front matter key 'subjet' (known: archive, author, date, dir, lang, list, preheader, segment, subject, template, title)"),
        ("bad/unknown-template.md", "issues/bad/unknown-template.md:3: template 'nonexistent' not found: no nonexistent.mjml.j2 in templates/ or the built-in templates"),
        ("bad/undefined-variable.md", "issues/bad/undefined-variable.md:8: undefined variable: 'dict object' has no attribute 'nonexistent_field'"),
        ("bad/invalid-mjml.md", "template broken-mjml.mjml.j2: invalid MJML: unexpected end of stream in root template (rendered MJML line 6: Opening and ending tag mismatch: mj-text line 5 and mj-body, line 6, column 13)"),
        ("bad/merge-in-statement.md", "issues/bad/merge-in-statement.md:5: subscriber fields can only be used inside {{ … }}, not in {% … %}"),
        ("bad/unclosed-tag.md", "issues/bad/unclosed-tag.md:5: {{ is never closed with }}"),
        ("missing.md", "issues/missing.md: issue file not found"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_with_file_and_exit_code_4(workspace, issue, message):
    result = run("preview", f"issues/{issue}")
    assert result.exit_code == 4
    assert result.output == f"Error: {message.replace('issues/', str(Path('issues')) + '/', 1)}\n"
    assert "Traceback" not in result.output


def test_config_error_has_its_own_exit_code(workspace):
    (workspace / "newsletter.toml").write_text('name = "X"\nfrom_email = "a@b.c"\nport = 1\n')
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 3
    assert "unknown key port" in result.output


def test_no_config_anywhere_says_how_to_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("preview", "x.md")
    assert result.exit_code == 3
    assert "no newsletter.toml in" in result.output
    assert "newsletter init DIR" in result.output


def test_errors_fail_preview_and_warnings_only_with_strict(workspace):
    errors = run("preview", "issues/problems/leftover.md")
    assert errors.exit_code == 1
    assert "error unresolved-merge-field" in errors.output
    warnings = run("preview", "issues/problems/links.md")
    assert warnings.exit_code == 0
    assert "Checks:    0 errors, 8 warnings" in warnings.output
    strict = run("preview", "issues/problems/links.md", "--strict")
    assert strict.exit_code == 1


def test_config_option_works_from_another_folder(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(
        "preview",
        str(workspace / "issues" / "sample.md"),
        "--config",
        str(workspace / "newsletter.toml"),
    )
    assert result.exit_code == 0, result.output
    assert (workspace / "build" / "sample" / "email.html").exists()


def test_new_from_text_reproduces_the_sample_issue_exactly(workspace):
    sample = (
        REPO / "tests" / "fixtures" / "samples" / "nato-weekly-roundup-week-of-january-21st.txt"
    )
    result = run("new", "--from-text", str(sample), "--date", "2022-01-21")
    assert result.exit_code == 0, result.output
    name = "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"
    created = (workspace / "issues" / name).read_text(encoding="utf-8")
    assert created == (REPO / "issues" / name).read_text(encoding="utf-8")
    again = run("new", "--from-text", str(sample), "--date", "2022-01-21")
    assert again.exit_code == 4
    assert "already exists; pick another title or pass --force" in again.output


def test_shared_sample_matches_the_fixture_copy():
    shared = REPO.parent / "shared" / "samples" / "nato-weekly-roundup-week-of-january-21st.txt"
    if not shared.exists():
        pytest.skip("../shared/ is not beside this checkout")
    fixture = REPO / "tests" / "fixtures" / "samples" / shared.name
    assert shared.read_bytes() == fixture.read_bytes()


def test_new_with_a_title_creates_a_dated_skeleton_that_previews_cleanly(workspace):
    result = run("new", "Week of March 4th", "--date", "2024-03-04")
    assert result.exit_code == 0
    path = workspace / "issues" / "2024-03-04-week-of-march-4th.md"
    assert path.exists()
    preview = run("preview", str(path))
    assert preview.exit_code == 0, preview.output
    assert "Subject:   Week of March 4th" in preview.output


def test_new_from_text_without_stories_is_an_error(workspace, tmp_path):
    text = tmp_path / "plain.txt"
    text.write_text("Just a title\n\nAnd a line.\n", encoding="utf-8")
    result = run("new", "--from-text", str(text))
    assert result.exit_code == 4
    assert "no stories found" in result.output


def test_init_creates_a_workspace_that_previews(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "letter")
    assert result.exit_code == 0, result.output
    root = tmp_path / "letter"
    for part in ("newsletter.toml", "subscribers/main.csv", ".gitignore"):
        assert (root / part).exists(), part
    issue = next((root / "issues").glob("*.md"))
    monkeypatch.chdir(root)
    preview = run("preview", str(issue.relative_to(root)))
    assert preview.exit_code == 0, preview.output
    again = run("init", str(root))
    assert again.exit_code == 3
    assert "already exists" in again.output


def test_repository_root_is_a_working_workspace(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for folder in ("issues", "subscribers", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    monkeypatch.chdir(root)
    result = run(
        "preview", "issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md", "--strict"
    )
    assert result.exit_code == 0, result.output


def test_new_prints_the_path_it_created(workspace):
    result = run("new", "Week of March 4th", "--date", "2026-03-04")
    assert result.exit_code == 0, result.output
    assert result.output == f"created {Path('issues/2026-03-04-week-of-march-4th.md')}\n"


def test_new_from_text_dates_the_issue_from_the_year_in_its_title(workspace, tmp_path):
    roundup = tmp_path / "roundup.txt"
    sample = REPO / "tests/fixtures/samples/nato-weekly-roundup-week-of-january-21st.txt"
    text = sample.read_text(encoding="utf-8-sig")
    roundup.write_text(text.replace("January 21st", "January 21st, 2022", 1), encoding="utf-8")
    result = run("new", "--from-text", str(roundup))
    assert result.exit_code == 0, result.output
    name = "2022-01-21-nato-weekly-roundup-week-of-january-21st-2022.md"
    assert result.output == (
        f"created {Path('issues') / name} (dated 2022-01-21 from the title; --date to change)\n"
    )
    assert "\ndate: 2022-01-21\n" in (workspace / "issues" / name).read_text(encoding="utf-8")


def test_new_from_text_without_a_year_takes_the_nearest_such_day(workspace):
    sample = REPO / "tests/fixtures/samples/nato-weekly-roundup-week-of-january-21st.txt"
    today = dt.date.today()
    nearest = min(
        (dt.date(year, 1, 21) for year in (today.year - 1, today.year, today.year + 1)),
        key=lambda day: abs(day - today),
    )
    result = run("new", "--from-text", str(sample))
    assert result.exit_code == 0, result.output
    assert (
        workspace / "issues" / f"{nearest}-nato-weekly-roundup-week-of-january-21st.md"
    ).exists()


def test_new_date_option_wins_over_the_title(workspace):
    result = run("new", "Week of March 4th, 2024", "--date", "2026-05-01")
    assert result.exit_code == 0, result.output
    assert (workspace / "issues" / "2026-05-01-week-of-march-4th-2024.md").exists()


def test_init_copies_no_template_so_the_built_ins_keep_their_updates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("init", "letter")
    assert result.exit_code == 0, result.output
    root = tmp_path / "letter"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    issue = next(f for f in files if f.startswith("issues"))
    assert files == sorted([".gitignore", "newsletter.toml", "subscribers/main.csv", issue])
    assert "Templates: the built-in ones" in result.output


def test_preview_as_says_which_subscriber_it_rendered_as(workspace):
    result = run("preview", "issues/merge.md", "--as", "ADA@example.org")
    assert result.exit_code == 0, result.output
    assert "As:        Ada Lovelace <ada@example.org> (list main)\n" in result.output
    plain = run("preview", "issues/merge.md")
    assert "As:" not in plain.output


def test_preview_writes_the_mjml_the_jinja_step_produced_beside_the_html(workspace):
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 0, result.output
    assert f"Wrote      {Path('build/sample/email.mjml')}" in result.output
    mjml = (workspace / "build" / "sample" / "email.mjml").read_text(encoding="utf-8")
    assert mjml.lstrip().startswith("<mjml")
    assert "NATO Weekly Roundup" in mjml
    assert "zzm" not in mjml  # merge fields are filled in, as in email.html
