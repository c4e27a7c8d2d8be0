"""Confirmation tokens (signed expiry) and the service's guards: CSRF tokens, rate limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newsletter.tokens import (
    make_expiring_token,
    make_request_token,
    make_token,
    verify_expiring_token,
    verify_request_token,
    verify_token,
)
from newsletter.web.guards import RateLimiter, csrf_ok, csrf_token, redact

SECRET = b"k" * 32
NOW = 1_700_000_000


def test_confirmation_token_is_valid_until_its_expiry():
    token = make_expiring_token(SECRET, "main", "ada@example.org", "c", NOW + 60)
    assert "ada" not in token
    claims = verify_expiring_token(SECRET, token, "c", now=NOW)
    assert claims and (claims.list_name, claims.expires_at) == ("main", NOW + 60)
    assert verify_expiring_token(SECRET, token, "c", now=NOW + 60) is not None
    assert verify_expiring_token(SECRET, token, "c", now=NOW + 61) is None


def test_confirmation_and_unsubscribe_tokens_are_not_interchangeable():
    confirm = make_expiring_token(SECRET, "main", "ada@example.org", "c", NOW + 60)
    unsubscribe = make_token(SECRET, "main", "ada@example.org")
    assert verify_token(SECRET, confirm) is None
    assert verify_expiring_token(SECRET, unsubscribe, "c", now=NOW) is None
    assert verify_expiring_token(SECRET, confirm, "u", now=NOW) is None


@given(st.integers(min_value=1, max_value=10**6))
def test_a_later_expiry_cannot_be_written_into_a_token(extra):
    token = make_expiring_token(SECRET, "main", "ada@example.org", "c", NOW)
    head, ident, stamp, sig = token.split(".")
    longer = f"{head}.{ident}.{int(stamp) + extra}.{sig}"
    assert verify_expiring_token(SECRET, longer, "c", now=NOW) is None


def test_a_confirmation_token_names_its_request_and_cannot_be_moved_to_another():
    token = make_request_token(SECRET, "main", "ada@example.org", "c", "request-one", NOW + 60)
    claims = verify_request_token(SECRET, token, "c", now=NOW)
    assert claims and (claims.request_id, claims.expires_at) == ("request-one", NOW + 60)
    moved = token.rpartition(".")[0] + ".request-two"
    assert verify_request_token(SECRET, moved, "c", now=NOW) is None
    assert verify_request_token(SECRET, token.rpartition(".")[0], "c", now=NOW) is None
    assert verify_request_token(SECRET, token, "c", now=NOW + 61) is None
    assert verify_expiring_token(SECRET, token, "c", now=NOW) is None


@given(st.text(max_size=80))
def test_garbage_is_never_a_confirmation_token(text):
    assert verify_expiring_token(SECRET, text, "c", now=NOW) is None


def test_csrf_token_is_bound_to_the_cookie_and_the_form_action():
    token = csrf_token(SECRET, "cookie-1", "/subscribe")
    assert csrf_ok(SECRET, "cookie-1", "/subscribe", token)
    assert not csrf_ok(SECRET, "cookie-2", "/subscribe", token)
    assert not csrf_ok(SECRET, "cookie-1", "/unsubscribe/x", token)
    assert not csrf_ok(SECRET, None, "/subscribe", token)
    assert not csrf_ok(SECRET, "cookie-1", "/subscribe", None)
    assert not csrf_ok(SECRET, "cookie-1", "/subscribe", "é" + token)


def test_rate_limiter_counts_a_sliding_window_per_key():
    now = [0.0]
    limiter = RateLimiter(2, 10, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")
    now[0] = 10.5
    assert limiter.allow("a")
    assert RateLimiter(0, 10).allow("anything")  # 0 turns the limit off


def test_access_log_paths_hide_tokens():
    assert redact("/unsubscribe/main.abc.def") == "/unsubscribe/…"
    assert redact("/confirm/main.abc.1.def") == "/confirm/…"
    assert redact("/issues/x.html") == "/issues/x.html"
