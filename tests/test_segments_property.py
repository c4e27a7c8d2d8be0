"""Property tests: parser + evaluator agree with a reference, and SQL agrees with Python.

Random trees are written out as text (with only the parentheses precedence needs), parsed
back and evaluated; a separate, simple reference evaluates the tree itself. The same texts
run as SQL over the `subscribers` table shape in a real PostgreSQL.
"""

from __future__ import annotations

import json
from fractions import Fraction

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.segments import compile_segment
from newsletter.subscribers.model import Subscriber

COLUMNS = ("name", "source", "subscribed_at", "country", "seats")
CUSTOM = ("country", "seats")
TAGS = ("python", "rust", "paused")
OPS = ("=", "!=", "<", "<=", ">", ">=", "~")
VALUES = (
    "",
    "UA",
    "ua",
    "U",
    "10",
    "9",
    "-1",
    "1.5",
    "1.50",
    "2026-01-01",
    "2026-01-01T09:00",
    "é",
)
BARE = tuple(v for v in VALUES if v)  # every non-empty one is a bare word too

value_text = st.one_of(st.sampled_from(VALUES), st.text(alphabet="aU9-1.é ", max_size=4))


def _rows() -> list[Subscriber]:
    """Subscribers covering equal, smaller, larger, missing, number-like and text values."""
    out = []
    for i in range(40):
        v = VALUES[i % len(VALUES)]
        w = VALUES[(i * 7 + 3) % len(VALUES)]
        fields = {"country": v, "seats": w}
        out.append(
            Subscriber(
                f"s{i}@example.org",
                name=VALUES[(i * 5) % len(VALUES)],
                source=w,
                subscribed_at=VALUES[(i * 3) % len(VALUES)],
                fields={k: x for k, x in fields.items() if x},
                tags=tuple(t for j, t in enumerate(TAGS) if (i >> j) & 1),
            )
        )
    return out


ROWS = _rows()


# Random trees, in the test's own small form: ("tag", name) | ("cmp", col, op, value, quoted)
# | ("not", x) | ("and", xs) | ("or", xs).
def trees():
    leaf = st.one_of(
        st.tuples(st.just("tag"), st.sampled_from(TAGS)),
        st.tuples(
            st.just("cmp"),
            st.sampled_from(COLUMNS),
            st.sampled_from(OPS),
            st.sampled_from(BARE),
            st.just(False),
        ),
        st.tuples(
            st.just("cmp"),
            st.sampled_from(COLUMNS),
            st.sampled_from(OPS),
            value_text,
            st.just(True),
        ),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(st.just("not"), inner),
            st.tuples(st.just("and"), st.lists(inner, min_size=2, max_size=3)),
            st.tuples(st.just("or"), st.lists(inner, min_size=2, max_size=3)),
        ),
        max_leaves=8,
    )


PREC = {"or": 1, "and": 2, "not": 3, "tag": 4, "cmp": 4}


def text_of(tree, need: int = 0) -> str:
    kind = tree[0]
    if kind == "tag":
        out = f"tag:{tree[1]}"
    elif kind == "cmp":
        _, col, op, value, quoted = tree
        shown = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if quoted else value
        out = f"{col} {op} {shown}"
    elif kind == "not":
        out = f"NOT {text_of(tree[1], 3)}"
    else:
        out = f" {kind} ".join(text_of(item, PREC[kind] + 1) for item in tree[1])
    return f"({out})" if PREC[kind] < need else out


def _number(text: str):
    try:
        if text.strip() != text or not text or text.lstrip("-")[:1] == ".":
            return None
        if any(c not in "-0123456789." for c in text) or "-" in text[1:]:
            return None
        if text.endswith(".") or text.count(".") > 1:
            return None
        return Fraction(text)
    except ValueError:
        return None


def reference(tree, sub: Subscriber) -> bool:
    kind = tree[0]
    if kind == "tag":
        return tree[1] in sub.tags
    if kind == "not":
        return not reference(tree[1], sub)
    if kind == "and":
        return all(reference(item, sub) for item in tree[1])
    if kind == "or":
        return any(reference(item, sub) for item in tree[1])
    _, col, op, value, quoted = tree
    cell = sub.fields.get(col, "") if col in CUSTOM else getattr(sub, col)
    if op == "~":
        return value in cell
    if not quoted and _number(value) is not None:
        a, b = _number(cell), _number(value)
        if a is None:
            return op == "!="
    else:
        a, b = cell, value
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


@settings(max_examples=300, deadline=None)
@given(trees())
def test_parser_and_evaluator_agree_with_the_reference(tree):
    segment = compile_segment(text_of(tree), ("country", "seats"))
    for sub in ROWS:
        assert segment.matches(sub) == reference(tree, sub), (text_of(tree), sub)


@pytest.fixture
def subscribers_table(pg_url):
    """The preamble's `subscribers` table shape, filled with ROWS (NULL for an empty name)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE subscribers (list text, key text, email text, name text, status text, "
            "subscribed_at text, updated_at text, source text, fields jsonb, "
            "tags text[] NOT NULL DEFAULT '{}', position bigint, PRIMARY KEY (list, key))"
        )
        for i, sub in enumerate(ROWS):
            # Some empty custom values are stored as "", some left out: both read as empty.
            fields = dict(sub.fields) | (
                {"country": ""} if i % 4 == 0 and "country" not in sub.fields else {}
            )
            conn.execute(
                "INSERT INTO subscribers VALUES ('main', %s, %s, %s, 'subscribed', %s, '', %s, "
                "%s, %s, %s)",
                (
                    sub.key,
                    sub.email,
                    sub.name or None,
                    sub.subscribed_at,
                    sub.source,
                    json.dumps(fields),
                    list(sub.tags),
                    i,
                ),
            )
        conn.execute(
            "INSERT INTO subscribers (list, key, email, fields) VALUES ('other', 'x', 'x', '{}')"
        )
        yield conn


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trees())
def test_sql_selects_what_the_evaluator_selects(subscribers_table, tree):
    segment = compile_segment(text_of(tree), ("country", "seats"))
    condition, params = segment.sql()
    found = subscribers_table.execute(
        f"SELECT key FROM subscribers WHERE list = 'main' AND {condition} ORDER BY position",
        params,
    ).fetchall()
    assert [key for (key,) in found] == [s.key for s in ROWS if segment.matches(s)], text_of(tree)


def test_on_postgresql_count_and_columns_come_from_one_query_each(subscribers_table):
    from newsletter.segments import SegmentError, pg

    assert pg.columns(subscribers_table, "main")[-2:] == ["country", "seats"]
    segment = pg.checked(subscribers_table, "main", compile_segment("tag:python and seats >= 9"))
    expected = sum(1 for s in ROWS if segment.matches(s))
    assert expected and pg.count(subscribers_table, "main", segment)["subscribed"] == expected
    assert pg.count(subscribers_table, "other")["subscribed"] == 1  # NULL status: subscribed
    with pytest.raises(SegmentError) as caught:
        pg.checked(subscribers_table, "main", compile_segment("contry = UA"))
    assert str(caught.value).startswith("--segment: col 1: unknown column 'contry'")
