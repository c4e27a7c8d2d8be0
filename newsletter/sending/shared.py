"""A send on the PostgreSQL store: one of possibly several senders working on one plan.

The engine's workers, delivery, retries and providers are the files store's (engine.py,
delivery.py); what differs is where batches come from — claimed from the shared plan
(pgledger.py) instead of read from the list — and where outcomes go. A sender keeps claiming
until nothing is left; while other senders still hold rows it waits, so that if one of them
dies, its rows come back to the plan when its lease runs out and the living finish them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from newsletter.config import Config
from newsletter.errors import TemplateError
from newsletter.message import OutgoingMessage
from newsletter.providers import get_provider_class
from newsletter.sending import engine
from newsletter.sending.delivery import Delivery
from newsletter.sending.options import Settings
from newsletter.sending.pgledger import LeaseLost, PgJournal, PgLedger
from newsletter.sending.pgplan import make_or_join
from newsletter.sending.pgsenders import Sender, SharedRate
from newsletter.sending.prepared import Prepared
from newsletter.sending.summary import Summary


def open_ledger(config: Config, workers: int = 1) -> PgLedger:
    """The store's ledger, refused (StoreError) unless the database's schema is current."""
    from newsletter.store import migrations, pg

    url = pg.url_of(config)
    ledger = PgLedger(url, size=workers + 2, lease=config.store.lease_seconds)
    try:
        with pg.errors(url, "cannot read the store's schema"), ledger.pool.connection() as conn:
            migrations.check(conn)
    except BaseException:
        ledger.close()
        raise
    return ledger


def send(
    config: Config, prepared: Prepared, factory, settings: Settings, approve
) -> tuple[Summary, float]:
    """Join (or make) the issue's plan, show it, send until it is done; (summary, seconds)."""
    with open_ledger(config, settings.workers) as ledger:
        ledger.journaled = get_provider_class(prepared.provider).reports_handovers
        sender = Sender(ledger, prepared.slug, prepared.list_name)
        stop = threading.Event()
        outcome = "error"
        try:
            planned, dropped = make_or_join(ledger, sender, prepared, settings)
            sender.start(stop)  # from here on the lease is renewed, even while asking
            shown = approve(prepared, planned, settings, ledger) if approve else None
            with shown or contextlib.nullcontext() as reporter:
                started = time.monotonic()
                run = SharedRun(
                    prepared, ledger, factory, settings, reporter, stop, planned.to_send
                )
                run.sender = sender
                # The summary tells of the plan (who was left out, rows skipped as invalid).
                run.summary.plan, run.dropped = planned, dropped
                run.summary.skipped = list(planned.skipped)
                summary = run.execute()
            outcome = "interrupted" if summary.interrupted else summary.exit_code.name.lower()
        finally:
            sender.finish(outcome)
    return summary, time.monotonic() - started


class SharedRun(engine._Run):
    """The engine's run, with batches claimed from the plan and steps noted in the ledger."""

    sender: Sender

    def execute(self) -> Summary:
        prepared, ledger = self.prepared, self.ledger
        segment = prepared.segment.text if prepared.segment else None
        self.run_id = ledger.start_run(
            prepared.slug, prepared.list_name, prepared.provider, segment
        )
        delivery = Delivery(prepared, ledger, self.settings, self.tally, self.run_id)
        if self.settings.rate:  # the whole send's rate, not this sender's
            delivery.rate = SharedRate(
                ledger, prepared.slug, prepared.list_name, self.settings.rate
            )
        return self._deliver(delivery, self._claimed())

    def _journal(self) -> PgJournal:
        return PgJournal(self.ledger, self.prepared.slug)

    def _claimed(self) -> Iterator[list[OutgoingMessage]]:
        """Batches claimed from the plan until none is left and no other sender holds any."""
        ledger, prepared, settings = self.ledger, self.prepared, self.settings
        slug, list_name, campaign = prepared.slug, prepared.list_name, prepared.campaign
        taken, pause = 0, min(1.0, ledger.lease / 4)
        while not self.stop.is_set():
            count = settings.batch_size
            if settings.limit is not None:
                count = min(count, settings.limit - taken)
                if count <= 0:
                    return
            rows = ledger.claim(slug, list_name, self.run_id, count)
            if not rows:
                if self.sender.settle():
                    continue  # a dead sender's rows are back in the plan
                if ledger.others_busy(slug, list_name):
                    self.stop.wait(pause)
                    continue
                return
            taken += len(rows)
            batch, unsent = [], []
            for key, email, name, fields in rows:
                try:
                    batch.append(campaign.message(email, key, fields, name))
                except TemplateError as exc:
                    unsent.append((key, email, str(exc)))
            self._record_unsent(unsent)
            if batch:
                yield batch

    def _finish(self, fatal: BaseException | None) -> Summary:
        if fatal is None and self.sender.lost.is_set():
            fatal = LeaseLost(
                "this sender's lease ran out (it stalled): what it held went back to the "
                "other senders; run the send again to help them"
            )
        return super()._finish(fatal)
