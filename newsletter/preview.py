"""`newsletter preview`: render, check, and write build/<slug>/email.{html,txt,eml}."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from newsletter.checks import SAMPLE_RECIPIENT, CheckedIssue, check_issue
from newsletter.config import Config
from newsletter.errors import OutputError, SubscriberError
from newsletter.files import make_folder, show
from newsletter.message import Campaign
from newsletter.render import Renderer
from newsletter.tokens import load_secret


@dataclass
class PreviewResult:
    checked: CheckedIssue
    folder: Path
    html_path: Path
    text_path: Path
    eml_path: Path
    list_name: str = ""
    subscriber: tuple[str, str] | None = None  # (address, name) of the --as subscriber

    @property
    def html_bytes(self) -> int:
        return len(self.checked.sample.html.encode("utf-8"))


def find_recipient(config: Config, list_name: str, email: str) -> tuple[dict[str, str], str]:
    """(merge fields, name) of a subscriber of the list, by address (case-insensitive)."""
    from newsletter.subscribers import iter_subscribers, list_path

    wanted = email.strip().lower()
    path = list_path(config.subscribers_dir, list_name)
    for subscriber in iter_subscribers(path):
        if subscriber.key == wanted or subscriber.email.lower() == wanted:
            return subscriber.merge_fields(), subscriber.name
    raise SubscriberError(f"{email} is not in the list {list_name!r}", where=str(path))


def preview(
    config: Config,
    issue_path: Path,
    as_email: str | None = None,
    renderer: Renderer | None = None,
) -> PreviewResult:
    """Render and check an issue and write the files a sample recipient would get."""
    from newsletter.issue import load_issue

    issue = load_issue(issue_path)
    list_name = issue.list or config.list
    recipient, name = dict(SAMPLE_RECIPIENT), ""
    if as_email:
        recipient, name = find_recipient(config, list_name, as_email)
    secret = load_secret(config.state_dir)
    checked = check_issue(config, issue_path, renderer, recipient, list_name, secret)
    campaign = Campaign(config, checked.rendered, list_name, secret)
    email = recipient["email"]
    eml = campaign.message(email, email.lower(), recipient, name).as_bytes()

    folder = make_folder(config.build_dir / checked.issue.slug)
    paths = folder / "email.html", folder / "email.txt", folder / "email.eml"
    contents = (checked.sample.html.encode(), checked.sample.text.encode(), eml)
    for path, data in zip(paths, contents, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", where=show(path)) from None
    subscriber = (recipient["email"], name) if as_email else None
    return PreviewResult(checked, folder, *paths, list_name=list_name, subscriber=subscriber)
