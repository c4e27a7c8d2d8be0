"""The README stays true: every command has help text and an example in the README."""

from __future__ import annotations

from pathlib import Path

import typer.main

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
