"""The send ledger: states, the in-flight rule, one send per issue, schema version."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from newsletter.errors import SendError
from newsletter.sending.ledger import (
    FAILED,
    IN_FLIGHT,
    RETRY,
    SCHEMA_VERSION,
    SENT,
    UNKNOWN,
    Ledger,
    Outcome,
)


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "state" / "ledger.sqlite3") as opened:
        yield opened


def test_ledger_is_a_wal_database_with_a_schema_version(ledger):
    db = sqlite3.connect(ledger.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_ledger_refuses_a_schema_from_a_newer_version(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SendError, match="newer than this program's"):
        Ledger(path)


def test_ledger_reports_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(SendError, match="cannot open the send ledger"):
        Ledger(path)


def test_recipient_is_sent_only_once_recorded_as_accepted(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    ledger.mark_in_flight("issue", "main", run, 1, [("a@x.org", "A@x.org"), ("b@x.org", "b@x.org")])
    assert ledger.counts("issue") == {"main": {IN_FLIGHT: 2}}
    ledger.record("issue", [Outcome("a@x.org", SENT, provider_id="id-1")])
    row = next(r for r in ledger.rows("issue") if r.key == "a@x.org")
    assert (row.state, row.attempts, row.provider_id, row.email) == (SENT, 1, "id-1", "A@x.org")
    assert row.sent_at is not None
    assert ledger.counts("issue") == {"main": {SENT: 1, IN_FLIGHT: 1}}


def test_in_flight_rows_become_unknown_when_the_next_send_claims_the_issue(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    ledger.mark_in_flight("issue", "main", run, 1, [("a@x.org", "a@x.org")])
    ledger.mark_in_flight("other", "main", run, 1, [("a@x.org", "a@x.org")])
    with ledger.claim("issue"):
        pass
    assert ledger.counts("issue") == {"main": {UNKNOWN: 1}}
    assert ledger.counts("other") == {"main": {IN_FLIGHT: 1}}


def test_blocked_holds_back_sent_rejected_and_unknown_but_not_retry_or_unsent(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    keys = ["sent", "rejected", "unknown", "retry", "merge", "inflight", "new"]
    ledger.mark_in_flight("issue", "main", run, 1, [(k, k) for k in keys[:4] + ["inflight"]])
    ledger.record(
        "issue",
        [
            Outcome("sent", SENT),
            Outcome("rejected", FAILED, error="550 no such user"),
            Outcome("unknown", UNKNOWN),
            Outcome("retry", RETRY, error="451 try later"),
        ],
    )
    ledger.record_unsent("issue", "main", run, [("merge", "merge", "merge field has no value")])
    assert ledger.blocked("issue", keys) == {
        "sent": SENT,
        "rejected": FAILED,
        "unknown": UNKNOWN,
        "inflight": IN_FLIGHT,
    }
    assert ledger.blocked("issue", keys, resend_unknown=True) == {"sent": SENT, "rejected": FAILED}
    assert ledger.blocked("another-issue", keys) == {}


def test_blocked_looks_up_more_keys_than_sqlite_takes_in_one_query(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    keys = [f"r{i}@x.org" for i in range(2500)]
    ledger.mark_in_flight("issue", "main", run, 1, [(k, k) for k in keys])
    ledger.record("issue", [Outcome(k, SENT) for k in keys[::2]])
    assert set(ledger.blocked("issue", keys, resend_unknown=True)) == set(keys[::2])


def test_batches_are_split_where_sqlite_takes_only_999_variables(ledger):
    ledger._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
    ledger._fit_statements()
    run = ledger.start_run("issue", "main", "outbox")
    keys = [f"r{i}@x.org" for i in range(1000)]  # one send batch: 2,000 values to mark
    ledger.mark_in_flight("issue", "main", run, 1, [(k, k) for k in keys])
    ledger.record("issue", [(k, SENT, "id", None) for k in keys[:600]])
    ledger.record("issue", [Outcome(k, FAILED, None, "no") for k in keys[600:]])
    assert ledger.counts("issue") == {"main": {SENT: 600, FAILED: 400}}
    assert set(ledger.blocked("issue", keys)) == set(keys)


def test_attempts_count_every_hand_over(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    for _ in range(3):
        ledger.mark_in_flight("issue", "main", run, 1, [("a", "a")])
        ledger.record("issue", [Outcome("a", RETRY, error="429")])
    (row,) = ledger.rows("issue")
    assert (row.state, row.attempts, row.error) == (RETRY, 3, "429")


def test_counts_are_per_list_and_rows_filter_by_state(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    ledger.mark_in_flight("issue", "main", run, 1, [("a", "a"), ("b", "b")])
    ledger.mark_in_flight("issue", "vip", run, 2, [("c", "c")])
    ledger.record(
        "issue", [Outcome("a", SENT), Outcome("b", FAILED, error="no"), Outcome("c", SENT)]
    )
    assert ledger.counts("issue") == {"main": {SENT: 1, FAILED: 1}, "vip": {SENT: 1}}
    assert [r.key for r in ledger.rows("issue", [FAILED])] == ["b"]
    assert [r.key for r in ledger.rows("issue", list_name="vip")] == ["c"]


def test_rows_stream_page_by_page(ledger):
    run = ledger.start_run("issue", "main", "outbox")
    keys = sorted(f"r{i:05d}" for i in range(2345))
    ledger.mark_in_flight("issue", "main", run, 1, [(k, k) for k in keys])
    assert [r.key for r in ledger.rows("issue")] == keys


def test_only_one_send_of_an_issue_at_a_time(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger(path) as first, Ledger(path) as second:
        with first.claim("issue"):
            assert second.is_sending("issue")
            busy = pytest.raises(SendError, match="another `newsletter send` of issue is running")
            with busy, second.claim("issue"):
                pass
            with second.claim("other-issue"):
                pass
        assert not second.is_sending("issue")
        with second.claim("issue"):
            pass


def test_ledger_is_safe_to_write_from_several_threads(ledger):
    run = ledger.start_run("issue", "main", "outbox")

    def write(worker: int) -> None:
        for batch in range(20):
            keys = [(f"{worker}-{batch}-{i}", "x") for i in range(10)]
            ledger.mark_in_flight("issue", "main", run, batch, keys)
            ledger.record("issue", [Outcome(k, SENT) for k, _ in keys])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.counts("issue") == {"main": {SENT: 800}}


def test_memory_ledger_needs_no_file_and_no_lock():
    with Ledger(None) as ledger, ledger.claim("issue"):
        run = ledger.start_run("issue", "test", "outbox")
        ledger.mark_in_flight("issue", "test", run, 1, [("a", "a")])
        assert ledger.counts("issue") == {"test": {IN_FLIGHT: 1}}
