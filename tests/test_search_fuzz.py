"""Property: any token sequence either fails to parse with ParseError/BadCharset, or evaluates."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from test_search_support import Ctx, meta, run

from mailserv.imap.search.parse import BadCharset, parse_search
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, ParenList, String, Token

FLAG_KEYS = [
    "ALL",
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "NEW",
    "OLD",
    "RECENT",
    "SEEN",
    "UNANSWERED",
    "UNDELETED",
    "UNDRAFT",
    "UNFLAGGED",
    "UNSEEN",
]
STRING_KEYS = "BCC BODY CC FROM SUBJECT TEXT TO".split()  # noqa: SIM905
DATE_KEYS = "BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE".split()  # noqa: SIM905
OTHER_KEYS = "HEADER KEYWORD UNKEYWORD LARGER SMALLER NOT OR UID MODSEQ CHARSET".split()  # noqa: SIM905
VALUES = [
    "1",
    "0",
    "*",
    "1:*",
    "*:3",
    "2,4:5",
    "4294967295",
    "4294967296",
    "99999999999999999999",
    "1-Feb-1994",
    "31-Dec-2023",
    "29-Feb-2023",
    "x",
    "$Junk",
    "\\Seen",
    "\\Recent",
    "UTF-8",
    "priv",
    "all",
    "-1",
    "1:",
    ":",
    "1,,2",
]

case = st.sampled_from([str.upper, str.lower, str.title])
text_values = st.one_of(
    st.sampled_from([b"", b"hello", b"HELLO", b"body", b"b", "\xe4".encode(), b"\xff"]),
    st.binary(max_size=6),
)
strings = st.one_of(text_values.map(String), text_values.map(lambda v: String(v, literal=True)))
string_or_atom = st.one_of(strings, st.sampled_from(["hello", "x", "NIL"]).map(Atom))
dates = st.one_of(
    st.sampled_from(["1-Feb-1994", "31-Dec-2023", "1-jan-2024", "29-Feb-2024"]).map(Atom),
    st.sampled_from([b"1-Feb-1994", b"32-Jan-2024"]).map(String),
)
numbers = st.one_of(st.integers(0, 2**32 + 5), st.integers(0, 2**64)).map(lambda n: Atom(str(n)))
seqsets = st.one_of(
    st.sampled_from(["1", "*", "1:*", "2:3", "*:2", "3,1", "9:12", "4294967295"]),
    st.text(alphabet="0123456789*:,", min_size=1, max_size=8),
).map(Atom)


def _one(name: str, *args: Token) -> list[Token]:
    return [Atom(name), *args]


base_keys: st.SearchStrategy[list[Token]] = st.one_of(
    st.builds(lambda k, c: [Atom(c(k))], st.sampled_from(FLAG_KEYS), case),
    st.builds(lambda k, v: _one(k, v), st.sampled_from(STRING_KEYS), string_or_atom),
    st.builds(lambda k, v: _one(k, v), st.sampled_from(DATE_KEYS), dates),
    st.builds(lambda k, v: _one(k, v), st.sampled_from(["LARGER", "SMALLER"]), numbers),
    st.builds(
        lambda k, f: _one(k, Atom(f)),
        st.sampled_from(["KEYWORD", "UNKEYWORD"]),
        st.sampled_from(["$Junk", "$junk", "\\Seen", "\\Recent", "x"]),
    ),
    st.builds(
        lambda n, v: _one("HEADER", n, v),
        st.sampled_from(["Subject", "x-a", "FROM", "Message-ID"]).map(Atom),
        strings,
    ),
    st.builds(lambda s: _one("UID", s), seqsets),
    seqsets.map(lambda s: [s]),
)


def _nested(inner: st.SearchStrategy[list[Token]]) -> st.SearchStrategy[list[Token]]:
    return st.one_of(
        inner.map(lambda key: [Atom("NOT"), *key]),
        st.tuples(inner, inner).map(lambda pair: [Atom("OR"), *pair[0], *pair[1]]),
        st.lists(inner, min_size=1, max_size=4).map(
            lambda keys: [ParenList(tuple(t for key in keys for t in key))]
        ),
    )


valid_keys = st.recursive(base_keys, _nested, max_leaves=12)
charsets = st.sampled_from([[], ["CHARSET", "UTF-8"], ["charset", "us-ascii"], ["CHARSET", "x"]])
random_atoms = st.one_of(
    st.sampled_from(FLAG_KEYS + STRING_KEYS + DATE_KEYS + OTHER_KEYS + VALUES),
    st.text(alphabet="0123456789*:,-aZ\\$", max_size=12),
).map(Atom)
random_tokens: st.SearchStrategy[Token] = st.recursive(
    st.one_of(random_atoms, strings),
    lambda inner: st.lists(inner, max_size=5).map(lambda items: ParenList(tuple(items))),
    max_leaves=30,
)


@st.composite
def programs(draw: st.DrawFn) -> list[Token]:
    """Mostly well-formed criteria, sometimes with a token dropped or a random one inserted."""
    args: list[Token] = [Atom(a) for a in draw(charsets)]
    for key in draw(st.lists(valid_keys, min_size=1, max_size=4)):
        args.extend(key)
    mutation = draw(st.sampled_from(["none", "none", "drop", "insert"]))
    if mutation == "drop":
        del args[draw(st.integers(0, len(args) - 1))]
    elif mutation == "insert":
        args.insert(draw(st.integers(0, len(args))), draw(random_tokens))
    return args


METAS = [
    meta(3, {"\\Seen"}, subject="hello", sent=datetime(1994, 2, 1, tzinfo=UTC)),
    meta(7, {"$junk"}, size=4294967295, modseq=2**63 - 1),
    meta(8, internaldate=datetime(2023, 12, 31, 23, 59, tzinfo=UTC)),
]
RAW = b"Subject: hello\r\nX-A: b\r\n\r\nbody text\r\n"


def check(args: list[Token]) -> None:
    try:
        program = parse_search(args, max_keys=50)
    except (ParseError, BadCharset):
        return
    ctx = Ctx([3, 7, 8], recent=frozenset({7}), messages=dict.fromkeys((3, 7, 8), RAW))
    result = run(program, METAS, ctx)
    assert result == sorted(set(result)) and set(result) <= {3, 7, 8}


@settings(max_examples=500, deadline=None)
@given(programs())
def test_structured_criteria_never_crash(args: list[Token]) -> None:
    check(args)


@settings(max_examples=300, deadline=None)
@given(st.lists(random_tokens, max_size=12))
def test_random_tokens_never_crash(args: list[Token]) -> None:
    check(args)
