"""Per-recipient views: the issue as the sample reader or one subscriber of its list gets it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.checks import Sample
from newsletter.errors import NewsletterError
from newsletter.sample import SAMPLE_RECIPIENT, find_recipient, sample_message

if TYPE_CHECKING:
    from newsletter.studio.live import Studio


class Readers:
    """Who the page shows the issue as; subscribers looked up once per render."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._found: dict[str, tuple[dict[str, str], str]] = {}

    def clear(self) -> None:
        """Forget the subscribers looked up (after a render: the list may have changed)."""
        self._found.clear()

    def personalized(self, as_email: str | None) -> tuple[Sample, str]:
        """What one subscriber (or the sample reader) gets: (message, their address)."""
        studio = self.studio
        checked = studio.snapshot.checked
        if checked is None:
            raise NewsletterError(studio.snapshot.error or "nothing rendered yet")
        if not as_email:
            return checked.sample, SAMPLE_RECIPIENT["email"]
        list_name = studio.list_name(checked)
        key = as_email.strip().lower()
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = find_recipient(studio.config, list_name, as_email)
        fields, name = found
        message = sample_message(
            studio.config, checked.rendered, list_name, studio.secret, fields, name
        )
        return message, fields["email"]

    def view(self, as_email: str | None) -> tuple[Sample | None, str | None, str | None]:
        """(message, address, problem): an unknown subscriber falls back to the sample reader."""
        try:
            part, address = self.personalized(as_email or self.studio.default_as)
            return part, address, None
        except NewsletterError as exc:
            checked = self.studio.snapshot.checked
            if checked is None:
                return None, None, str(exc)
            return checked.sample, SAMPLE_RECIPIENT["email"], str(exc)

    def subscribers(self, query: str, limit: int = 50) -> list[dict[str, str]]:
        """Subscribed members of the issue's list whose address or name contains the query."""
        from newsletter.subscribers import iter_subscribers, list_path

        studio = self.studio
        wanted = query.strip().lower()
        found = []
        path = list_path(studio.config.subscribers_dir, studio.list_name(studio.snapshot.checked))
        for subscriber in iter_subscribers(path):
            if subscriber.status != "subscribed":
                continue
            if wanted in subscriber.email.lower() or wanted in subscriber.name.lower():
                found.append({"email": subscriber.email, "name": subscriber.name})
                if len(found) >= limit:
                    break
        return found
