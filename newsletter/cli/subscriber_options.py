"""What the `subscribers` commands share: their options, and the modules they load lazily."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Lazy:
    """A module imported on first use, so other commands start without it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self.name), attr)


subs = Lazy("newsletter.subscribers")
lists = Lazy("newsletter.store.lists")  # picks the files or the PostgreSQL store

MAX_SHOWN = 10  # rejected rows printed by `import`; the rejects file has them all


class Status(StrEnum):
    subscribed = "subscribed"
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    pending = "pending"


class Format(StrEnum):
    auto = "auto"
    mailchimp = "mailchimp"
    substack = "substack"
    buttondown = "buttondown"
    listmonk = "listmonk"
    csv = "csv"


ListArgument = Annotated[
    str | None, typer.Argument(help="List name (subscribers/NAME.csv); default: `list` in config.")
]
ListOption = Annotated[
    str | None,
    typer.Option(
        "--list", "-l", help="List name (subscribers/NAME.csv); default: `list` in config."
    ),
]
SegmentOption = Annotated[
    str | None,
    typer.Option(help="Only rows in this segment, e.g. 'tag:python and country = \"UA\"'."),
]
DeliverabilityOption = Annotated[
    bool,
    typer.Option("--check-deliverability", help="Also look up each domain's MX records in DNS."),
]


def pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        pairs[key.strip()] = rest
    return pairs


def folding(cfg):
    """Writes of a list in this block fold in the opt-outs kept for it (optouts.fold); on
    PostgreSQL serve changes the rows themselves, so there is nothing to fold."""
    from contextlib import nullcontext

    from newsletter import optouts
    from newsletter.store import uses_postgres

    return nullcontext() if uses_postgres(cfg) else optouts.folding(cfg)
