"""Throughput of one, two and three `newsletter send` processes sharing one send on PostgreSQL.

Each sender is a real `python -m newsletter send ISSUE --yes` process against the loopback
SendGrid server (one server process per sender, so that the Python test server is not what
is measured) and one PostgreSQL database. Two figures per row: recipients per second over
the whole run (wall clock from the first process started to the last one ended: start-up,
rendering and planning included) and over the sending itself (first to last `sent_at` in
the ledger). Each row sends a new issue (a copy of merge.md) to the same list, in a fresh
database unless --url names one.

Run: python benchmarks/store_senders.py [--recipients 50000] [--senders 1,2,3] [--url URL]
Without --url it starts a private PostgreSQL server (tests/pg_server.py: Debian's
`postgresql` package). `benchmarks/bench_store.py` calls `run()`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from bench_send import Server, environment, write_workspace  # noqa: E402


def _send_all(root: Path, issue: str, url: str, addresses: list[str], batch: int) -> float:
    """Run one sender per address at once, until all are done; wall-clock seconds."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    base.update(
        PYTHONPATH=str(REPO),
        NEWSLETTER_STORE_URL=url,
        NEWSLETTER_SECRET="bench-secret-0123456789abcdef-0123456789",
        NEWSLETTER_SEND_BATCH_SIZE=str(batch),
    )
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", issue, "--yes"],
            cwd=root,
            env={**base, **environment("sendgrid", address)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for address in addresses
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a sender failed ({process.returncode}): {err.strip()[-500:]}")
    return time.monotonic() - started


def _ledger_figures(url: str, slug: str) -> tuple[int, float, int]:
    """(recipients sent, seconds from the first to the last acceptance, senders that sent)."""
    import psycopg

    with psycopg.connect(url) as conn:
        sent, first, last, senders = conn.execute(
            "SELECT count(*), min(sent_at), max(sent_at), count(DISTINCT sender) "
            "FROM send_recipients WHERE issue = %s AND state = 'sent'",
            (slug,),
        ).fetchone()
    return sent, (last - first).total_seconds(), senders


def run(
    recipients: int = 50_000,
    senders: tuple[int, ...] = (1, 2, 3),
    url: str | None = None,
    batch: int = 1000,
) -> list[dict]:
    """Print (and return) the throughput of each number of senders on one shared send."""
    import psycopg

    from newsletter.store import migrations

    server = None
    if url is None:
        from pg_server import PgServer

        server = PgServer().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = write_workspace(Path(tmp), recipients)
            for count in senders:
                # An issue of its own per row: a database given by --url is never reset.
                slug = f"bench-senders-{count}-{int(time.time())}"
                issue = root / "issues" / f"{slug}.md"
                issue.write_text((root / "issues" / "merge.md").read_text(encoding="utf-8"))
                database = server.fresh_database() if server else url
                with psycopg.connect(database) as conn:
                    migrations.migrate(conn)
                loopbacks = [Server("sendgrid") for _ in range(count)]
                try:
                    addresses = [s.address for s in loopbacks]
                    wall = _send_all(root, str(issue), database, addresses, batch)
                finally:
                    for loopback in loopbacks:
                        loopback.close()
                sent, sending, took_part = _ledger_figures(database, slug)
                row = {
                    "senders": count,
                    "sent": sent,
                    "wall_seconds": wall,
                    "sending_seconds": sending,
                    "senders_that_sent": took_part,
                }
                rows.append(row)
                print(
                    f"PostgreSQL, {count} sender(s), {sent:,} recipients via loopback SendGrid: "
                    f"{sent / wall:,.0f} /s overall ({wall:.1f} s), "
                    f"{sent / max(sending, 1e-9):,.0f} /s while sending ({sending:.1f} s); "
                    f"{took_part} sent",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--senders", default="1,2,3")
    parser.add_argument("--batch", type=int, default=1000, help="recipients per request")
    parser.add_argument("--url", help="a PostgreSQL database to use (migrated, never reset)")
    args = parser.parse_args()
    counts = tuple(int(n) for n in args.senders.split(","))
    run(args.recipients, counts, args.url, args.batch)


if __name__ == "__main__":
    main()
