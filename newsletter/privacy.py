"""GDPR erasure across the workspace: lists, the opt-out journal, the send ledger, the events."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter import subscribers as subs
from newsletter.config import Config


@dataclass(frozen=True)
class Erasure:
    rows_by_list: dict[str, int]  # list rows removed
    ledger_rows: int  # send records whose address was replaced by its hash
    events: int  # webhook and web events deleted


def forget_everywhere(config: Config, email: str) -> Erasure:
    """Erase an address from every list (keeping its hash as a suppression), the ledger and events."""
    from newsletter import optouts
    from newsletter.sending.ledger import LEDGER_NAME, Ledger
    from newsletter.store import lists, uses_postgres
    from newsletter.web.events import EVENTS_NAME, EventStore

    removed = lists.forget(config, email)
    key = subs.email_key(email)
    if uses_postgres(config):
        return _forget_in_store(config, email, key, removed)
    optouts.clear(config.state_dir, key)  # its hash in the suppression file keeps it unmailed
    ledger_rows = events = 0
    if (config.state_dir / LEDGER_NAME).exists():
        with Ledger.for_workspace(config.state_dir) as ledger:
            ledger_rows = ledger.forget(key, subs.suppression_hash(key))
    if (config.state_dir / EVENTS_NAME).exists():
        with EventStore.for_workspace(config.state_dir) as store:
            events = store.forget(sorted({email.strip(), key}))
    return Erasure(removed, ledger_rows, events)


def _forget_in_store(config: Config, email: str, key: str, removed: dict[str, int]) -> Erasure:
    """The PostgreSQL store's part: the shared ledger keeps only the hash, and what serve
    kept of the address (link ids, kept opt-outs, events) goes."""
    from newsletter.sending import shared
    from newsletter.store.lists import transaction
    from newsletter.web import pglists

    with shared.open_ledger(config) as ledger:
        ledger_rows = ledger.forget(key, subs.suppression_hash(key))
    with transaction(config, "cannot erase the address") as conn:
        events = pglists.forget(conn, key)
        if email.strip() != key:
            events += pglists.forget(conn, email.strip())
    return Erasure(removed, ledger_rows, events)
