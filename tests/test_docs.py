"""The README stays true: every command has help text and an example in the README."""

from __future__ import annotations

from pathlib import Path

import typer.main

from newsletter.checks.content import INIT_PLACEHOLDERS
from newsletter.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def all_commands():
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


def test_every_command_has_help_text():
    missing = [name for name, command in all_commands() if not (command.help or "").strip()]
    assert missing == []


def test_every_command_appears_in_the_readme_with_an_example():
    missing = [name for name, _ in all_commands() if f"newsletter {name}" not in README]
    assert missing == []


def test_readme_gives_the_two_commands():
    assert "pip install -e . && newsletter preview issues/" in README
    assert "pip install -e '.[test]' && python -m pytest" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pip install -q -e '.[test]'" in ci and "python -m pytest" in ci


def quick_tour() -> list[list[str]]:
    """The commands of the README's Quick tour, split as a shell would."""
    import re
    import shlex

    block = re.search(r"## Quick tour\n\n```sh\n(.*?)```", README, re.S)
    return [shlex.split(line, comments=True) for line in block[1].splitlines() if line.strip()]


def test_the_quick_tour_runs_as_written_on_any_day(tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    sample = Path(__file__).parent / "fixtures/samples/nato-weekly-roundup-week-of-january-21st.txt"
    for args in quick_tour():
        if args[0] == "cd":
            monkeypatch.chdir(args[1])
            continue
        if args[0] == "$EDITOR":  # the reader replaces the example text init and new wrote
            for name in args[1:]:
                path = Path(name)
                text = path.read_text(encoding="utf-8")
                for phrase in INIT_PLACEHOLDERS:
                    text = text.replace(phrase, "Real words by the editor")
                path.write_text(text, encoding="utf-8")
            continue
        assert args[0] == "newsletter", args
        if "--from-text" in args:  # the reader's own roundup; the sample stands in for it
            shutil.copy(sample, args[args.index("--from-text") + 1])
        if args[1] == "send" and "--test-to" not in args:
            args.append("--yes")  # the tour answers the question at a terminal
        result = runner.invoke(app, args[1:])
        assert result.exit_code == 0, (args, result.output)
        if args[1:3] == ["new", "Week of March 4th"]:
            # the path `new` prints is the one the next commands use
            assert result.output.split()[1] in " ".join(" ".join(a) for a in quick_tour())
