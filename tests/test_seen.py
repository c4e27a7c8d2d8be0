"""Seen, the compact set of keys behind `sendable`: exactly a set, in a fraction of the memory."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.subscribers.seen import Seen

# Any text, lone surrogates and the byte Seen ends its keys with ("\xff" is ÿ, two bytes in
# UTF-8) included, and keys that are prefixes of each other or differ only in case.
_keys = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(["", "a", "A", "ab", "abc", "ÿ", "a\xff", "\0", "ada@example.org"]),
)


class SameHash(str):
    """A key whose hash is the same as every other's: only its bytes tell it apart."""

    def __hash__(self) -> int:
        return 1 << 40  # the 28 bits Seen keeps of it are 0 as well


def _check_like_a_set(added: list[str], looked_up: list[str]) -> None:
    seen, expected = Seen(), set()
    for key in added:
        assert seen.add(key) == (key not in expected)
        expected.add(key)
        assert len(seen) == len(expected)
    assert list(seen) == list(dict.fromkeys(added))  # each key once, in the order added
    for key in [*added, *looked_up]:
        assert (key in seen) == (key in expected)


@settings(max_examples=300, deadline=None)
@given(added=st.lists(_keys, max_size=300), looked_up=st.lists(_keys, max_size=20))
def test_seen_behaves_like_a_set_of_its_keys(added, looked_up):
    _check_like_a_set(added, looked_up)


@settings(max_examples=100, deadline=None)
@given(added=st.lists(_keys, max_size=60), looked_up=st.lists(_keys, max_size=20))
def test_seen_stays_exact_when_every_key_has_the_same_hash(added, looked_up):
    _check_like_a_set([SameHash(k) for k in added], [SameHash(k) for k in looked_up])


def test_seen_keeps_every_key_of_a_large_set_through_each_growth():
    keys = [f"reader{i:07d}@example.org" for i in range(50_000)]
    seen = Seen()
    assert all(seen.add(key) for key in keys)
    assert not any(seen.add(key.upper().lower()) for key in keys)  # equal keys, new str objects
    assert len(seen) == len(keys) and all(key in seen for key in keys)
    assert "reader0050000@example.org" not in seen


def test_seen_holds_an_address_in_under_half_the_memory_of_a_set():
    keys = [f"reader{i:07d}@example.org" for i in range(100_000)]
    tracemalloc.start()
    try:
        seen = Seen()
        for key in keys:
            seen.add(key)
        held, peak = tracemalloc.get_traced_memory()
        del seen
        tracemalloc.reset_peak()
        strings = {key.upper().lower() for key in keys}  # new str objects, as a list gives
        in_a_set = tracemalloc.get_traced_memory()[0]
        del strings
    finally:
        tracemalloc.stop()
    # 26 bytes of text and 12-24 of table a key; a set holds ~110 (the str, its slots).
    assert held < 56 * len(keys)
    assert peak < 80 * len(keys)  # doubling the table briefly holds the old one too
    assert held < in_a_set / 2
