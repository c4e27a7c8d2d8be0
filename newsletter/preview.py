"""`newsletter preview`: render, check, and write build/<slug>/email.{html,txt,eml,mjml}."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import OutputError
from newsletter.files import make_folder, show
from newsletter.render import Renderer
from newsletter.sample import (
    SAMPLE_RECIPIENT,
    CheckedIssue,
    check_issue,
    find_recipient,
    segment_recipient,
)
from newsletter.tokens import load_secret


@dataclass
class PreviewResult:
    checked: CheckedIssue
    folder: Path
    html_path: Path
    text_path: Path
    eml_path: Path
    mjml_path: Path
    list_name: str = ""
    subscriber: tuple[str, str] | None = None  # (address, name) of the --as subscriber

    @property
    def html_bytes(self) -> int:
        return len(self.checked.sample.html.encode("utf-8"))


def preview(
    config: Config,
    issue_path: Path,
    as_email: str | None = None,
    renderer: Renderer | None = None,
    check_links: bool = False,
    segment: str | None = None,
    spam_started=None,
) -> PreviewResult:
    """Render and check an issue (spam score too) and write what a sample recipient would get."""
    from newsletter.issue import load_issue

    issue = load_issue(issue_path)
    list_name = issue.list or config.list
    recipient, name = dict(SAMPLE_RECIPIENT), ""
    if segment:  # as a reader in it: --as when it is, else the first one
        recipient, name, as_email = segment_recipient(config, list_name, segment, as_email)
    elif as_email:
        recipient, name = find_recipient(config, list_name, as_email)
    checked = check_issue(
        config,
        issue,
        renderer=renderer,
        recipient=recipient,
        name=name,
        list_name=list_name,
        secret=load_secret(config.state_dir),
        score_spam=True,
        spam_started=spam_started,
        check_links=check_links,
    )
    sample = checked.sample
    folder = make_folder(config.build_dir / issue.slug)
    paths = (folder / name for name in ("email.html", "email.txt", "email.eml", "email.mjml"))
    paths = tuple(paths)
    contents = (sample.html.encode(), sample.text.encode(), sample.eml, _mjml(checked, recipient))
    for path, data in zip(paths, contents, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", where=show(path)) from None
    subscriber = (recipient["email"], name) if as_email else None
    return PreviewResult(checked, folder, *paths, list_name=list_name, subscriber=subscriber)


def _mjml(checked: CheckedIssue, recipient: dict[str, str]) -> bytes:
    """What the Jinja step produced, with the sample reader's merge fields filled in."""
    from newsletter.mergefields import TOKEN, fill

    rendered = checked.rendered
    values = rendered.values(recipient, checked.sample.unsubscribe_url)
    html_values, _, _ = rendered.part_values(values)
    return fill(TOKEN.split(rendered.mjml), html_values).encode()
