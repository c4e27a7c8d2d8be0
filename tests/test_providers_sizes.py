"""What the providers measure and tag without redoing the work per recipient."""

from __future__ import annotations

import json

from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st
from loopback import SECRET, make_campaign, message_for

from newsletter.config import load_config
from newsletter.providers.common import json_text, shaped_size
from newsletter.sending.readahead import _flat, _rebuilt
from newsletter.tokens import address_id, verify_token

text = st.text(st.characters(), max_size=12)  # any code point: escapes, non-ASCII, astral


@st.composite
def personalizations(draw) -> dict:
    to = {"email": draw(text)}
    if draw(st.booleans()):
        to["name"] = draw(text)
    value = {"to": [to], "subject": draw(text), "headers": {"List-Unsubscribe": draw(text)}}
    if draw(st.booleans()):
        value["substitutions"] = {"-nlh0-": draw(text), "-nlt0-": draw(text)}
    return value


def strings_of(value: dict) -> list[str]:
    out = [*value["to"][0].values(), value["subject"], *value["headers"].values()]
    return out + list(value.get("substitutions", {}).values())


def shape_of(value: dict) -> tuple:
    return tuple(value), tuple(value["to"][0]), tuple(value.get("substitutions", ()))


@given(st.lists(personalizations(), min_size=1, max_size=8))
def test_shaped_size_is_the_length_of_the_json_of_every_value_of_a_shape(values):
    fixed_parts: dict[tuple, int] = {}
    for value in values:
        measured = shaped_size(
            fixed_parts, shape_of(value), strings_of(value), lambda v=value: len(json.dumps(v))
        )
        assert measured == len(json.dumps(value))


def test_shaped_size_measures_in_full_a_value_holding_other_than_strings():
    value = {"to": [{"email": "a@example.org"}], "subject": 12345}
    fixed_parts: dict[tuple, int] = {}
    size = shaped_size(
        fixed_parts, ("s",), ["a@example.org", 12345], lambda: len(json.dumps(value))
    )
    assert size == len(json.dumps(value)) and not fixed_parts  # nothing learnt from it


def test_a_message_carries_the_recipient_id_of_its_unsubscribe_token_across_the_read_ahead():
    config = load_config(FIXTURES / "workspace" / "newsletter.toml")
    campaign = make_campaign(config)
    message = message_for(campaign, "Ada@Example.org", "Ada Lovelace")
    expected = address_id(SECRET, "main", "ada@example.org")
    claims = verify_token(SECRET, message.unsubscribe_url.rsplit("/", 1)[1])
    assert message.recipient() == expected == claims.address_id
    key, email, flat = _flat((message.key, message.to_email, message), lambda m: None)
    assert _rebuilt(campaign, key, email, flat) == message  # the id crosses the pipe too


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_text_is_json_dumps_to_the_byte(value):
    assert json_text(value) == json.dumps(value)
