"""Unsubscribe tokens: signed, opaque, and verifiable."""

from __future__ import annotations

import os
import stat

from hypothesis import given
from hypothesis import strategies as st

from newsletter.tokens import address_id, load_secret, make_token, verify_token

SECRET = b"k" * 32


def test_token_names_the_list_and_not_the_address():
    token = make_token(SECRET, "main", "ada@example.org")
    assert "ada" not in token and "example" not in token
    claims = verify_token(SECRET, token)
    assert claims and claims.list_name == "main"
    assert claims.address_id == address_id(SECRET, "main", "ada@example.org")


@given(st.text(min_size=1, max_size=60))
def test_any_change_to_a_token_is_rejected(garbage):
    token = make_token(SECRET, "main", "ada@example.org")
    assert verify_token(b"x" * 32, token) is None
    assert verify_token(SECRET, token[:-1]) is None
    assert verify_token(SECRET, token.replace("main.", "other.", 1)) is None
    if garbage != token:
        assert verify_token(SECRET, garbage) is None


def test_generated_secret_is_kept_private_and_reused(tmp_path):
    first = load_secret(tmp_path / "state", env={})
    assert load_secret(tmp_path / "state", env={}) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "state" / "secret").st_mode)
    assert mode == 0o600
    assert load_secret(tmp_path / "state", env={"NEWSLETTER_SECRET": "s" * 20}) == b"s" * 20
