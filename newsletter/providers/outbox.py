"""The outbox provider: each message becomes an .eml file under outbox/<issue-slug>/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import SubscriberError
from newsletter.files import make_folder
from newsletter.message import OutgoingMessage
from newsletter.providers.base import Provider, Result, Status


def folder_for(config: Config, issue_slug: str) -> Path:
    """Where the messages of an issue go."""
    return config.outbox_dir / issue_slug


def _safe(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)


def eml_name(message: OutgoingMessage) -> str:
    """A safe file name per message: the recipient (readable, and its token id) and the message.

    The Message-ID part keeps two messages to one address apart (three confirmation requests
    are three files); only the same message sent again lands on the same name.
    """
    ident = message.unsubscribe_mailto.rpartition(".")[0].rpartition(".")[2]
    local = _safe(message.key.split("@")[0])[:40]
    unique = _safe(message.message_id.strip("<>").partition("@")[0])[:40]
    return f"{local}-{ident}-{unique}.eml"


class OutboxProvider(Provider):
    name = "outbox"
    max_batch = 100
    default_workers = 1

    def send_one(self, message: OutgoingMessage) -> Result:
        try:
            data = message.as_bytes(utf8=True)  # an SMTPUTF8 message where it needs one
        except (SubscriberError, UnicodeError) as exc:  # what this one message cannot carry
            return Result(message.key, Status.REJECTED, str(exc))
        folder = folder_for(self.config, message.campaign.issue_slug)
        make_folder(folder, private=True)  # messages hold addresses: 0700, files 0600
        path = folder / eml_name(message)
        # A unique temporary name: two workers writing to the same recipient never collide.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)  # a reader never sees half a message
        return Result(message.key, Status.ACCEPTED, provider_id=str(path))
