"""Property: any token sequence either fails to parse with ParseError/BadCharset, or evaluates."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from mailserv.imap.parser import ParseError
from test_search_support import Ctx, meta, run

from mailserv.imap.search import BadCharset, parse_search
from mailserv.imap.tokens import Atom, ParenList, String, Token

KEYS = [
    "ALL",
    "ANSWERED",
    "BCC",
    "BEFORE",
    "BODY",
    "CC",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "FROM",
    "HEADER",
    "KEYWORD",
    "LARGER",
    "NEW",
    "NOT",
    "OLD",
    "ON",
    "OR",
    "RECENT",
    "SEEN",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SINCE",
    "SMALLER",
    "SUBJECT",
    "TEXT",
    "TO",
    "UID",
    "UNANSWERED",
    "UNDELETED",
    "UNDRAFT",
    "UNFLAGGED",
    "UNKEYWORD",
    "UNSEEN",
    "MODSEQ",
    "CHARSET",
]
VALUES = [
    "1", "0", "*", "1:*", "*:3", "2,4:5", "4294967295", "4294967296", "99999999999999999999",
    "1-Feb-1994", "31-Dec-2023", "29-Feb-2023", "x", "$Junk", "\\Seen", "\\Recent", "UTF-8",
    "priv", "all", "-1", "", "1:", ":", "1,,2",
]  # fmt: skip

atoms = st.one_of(
    st.sampled_from(KEYS + [k.lower() for k in KEYS] + VALUES),
    st.text(alphabet="0123456789*:,-aZ\\$", max_size=12),
).map(Atom)
strings = st.one_of(
    st.sampled_from(
        [b"", b"hello", b"/flags/\\Seen", b"1-Feb-1994", b"\xff", "\xe4".encode()]
    ),
    st.binary(max_size=8),
).map(String)
tokens: st.SearchStrategy[Token] = st.recursive(
    st.one_of(atoms, strings),
    lambda inner: st.lists(inner, max_size=5).map(
        lambda items: ParenList(tuple(items))
    ),
    max_leaves=30,
)

METAS = [
    meta(3, {"\\Seen"}, subject="hello", sent=datetime(1994, 2, 1, tzinfo=UTC)),
    meta(7, {"$junk"}, size=4294967295, modseq=2**63 - 1),
    meta(8, internaldate=datetime(2023, 12, 31, 23, 59, tzinfo=UTC)),
]
RAW = b"Subject: hello\r\nX-A: b\r\n\r\nbody text\r\n"


@settings(max_examples=400, deadline=None)
@given(st.lists(tokens, max_size=12))
def test_parse_then_evaluate_never_crashes(args: list[Token]) -> None:
    try:
        program = parse_search(args, max_keys=50)
    except (ParseError, BadCharset):
        return
    ctx = Ctx([3, 7, 8], recent=frozenset({7}), messages=dict.fromkeys((3, 7, 8), RAW))
    result = run(program, METAS, ctx)
    assert result == sorted(set(result)) and set(result) <= {3, 7, 8}
