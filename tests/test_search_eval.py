"""evaluate: semantics of every key over hand-built MessageMeta, and content loading."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from test_search_support import Ctx, meta, run, single_part, toks

from mailserv.imap.search.parse import parse_search
from mailserv.interfaces import RECENT, MessageMeta
from mailserv.search import (
    And,
    Contains,
    HasFlag,
    InSet,
    Not,
    SearchProgram,
    StringField,
    UidIn,
    walk,
)
from mailserv.search.binding import bind
from mailserv.search.evaluate import SearchContext, evaluate, needs_content


def search(metas: list[MessageMeta], *items: object, ctx: Ctx | None = None) -> list[int]:
    ctx = ctx or Ctx([m.uid for m in metas])
    return run(parse_search(toks(*items)), metas, ctx)


SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = (
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
)


@pytest.fixture
def box() -> list[MessageMeta]:
    return [
        meta(2, {SEEN}, subject="Hello world", from_='"Alice" <alice@example.org>'),
        meta(4, {SEEN, ANSWERED}, to="bob@example.org", cc="carol@example.org"),
        meta(5, {FLAGGED, "$Junk"}, bcc="dave@example.org", subject="Re: hello"),
        meta(9, {DELETED}, size=5000),
        meta(12, {DRAFT, "$label1"}, size=10, subject="\u00c4rger mit Stra\u00dfe"),
    ]


def test_flags(box: list[MessageMeta]) -> None:
    assert search(box, "ALL") == [2, 4, 5, 9, 12]
    assert search(box, "SEEN") == [2, 4]
    assert search(box, "UNSEEN") == [5, 9, 12]
    assert search(box, "ANSWERED") == [4]
    assert search(box, "UNANSWERED") == [2, 5, 9, 12]
    assert search(box, "FLAGGED") == [5]
    assert search(box, "UNFLAGGED") == [2, 4, 9, 12]
    assert search(box, "DELETED") == [9]
    assert search(box, "UNDELETED") == [2, 4, 5, 12]
    assert search(box, "DRAFT") == [12]
    assert search(box, "UNDRAFT") == [2, 4, 5, 9]


def test_keywords_case_insensitive(box: list[MessageMeta]) -> None:
    assert search(box, "KEYWORD", "$junk") == [5]
    assert search(box, "KEYWORD", "$JUNK") == [5]
    assert search(box, "UNKEYWORD", "$Junk") == [2, 4, 9, 12]
    assert search(box, "KEYWORD", "$Label1") == [12]
    assert search(box, "KEYWORD", "nothing") == []
    odd = [meta(1, {"\\seen"}), meta(2, {"\\SEEN"}), meta(3)]
    assert search(odd, "SEEN") == [1, 2]
    assert search(odd, "UNSEEN") == [3]


def test_recent_new_old(box: list[MessageMeta]) -> None:
    ctx = Ctx([2, 4, 5, 9, 12], recent=frozenset({4, 5}))
    assert search(box, "RECENT", ctx=ctx) == [4, 5]
    assert search(box, "NEW", ctx=ctx) == [5]
    assert search(box, "OLD", ctx=ctx) == [2, 9, 12]
    assert search(box, "NOT", "NEW", ctx=ctx) == [2, 4, 9, 12]
    assert search(box, "KEYWORD", "\\recent", ctx=ctx) == [4, 5]
    assert search(box, "RECENT") == []


def test_header_fields(box: list[MessageMeta]) -> None:
    assert search(box, "SUBJECT", b"HELLO") == [2, 5]
    assert search(box, "SUBJECT", b"re: hel") == [5]
    assert search(box, "FROM", b"alice") == [2]
    assert search(box, "FROM", b'"alice" <') == [2]
    assert search(box, "TO", b"BOB@") == [4]
    assert search(box, "CC", b"carol") == [4]
    assert search(box, "BCC", b"dave") == [5]
    assert search(box, "SUBJECT", b"") == [2, 4, 5, 9, 12]
    assert search(box, "TO", b"alice") == []
    # HEADER on a precomputed field uses MessageInfo, without loading content.
    ctx = Ctx([2, 4, 5, 9, 12])
    assert search(box, "HEADER", "subject", b"hello", ctx=ctx) == [2, 5]
    assert search(box, "HEADER", "FROM", b"ALICE", ctx=ctx) == [2]
    assert ctx.loads == []


def test_non_ascii_subjects(box: list[MessageMeta]) -> None:
    assert search(box, "CHARSET", "UTF-8", "SUBJECT", "\u00e4rger".encode()) == [12]
    assert search(box, "CHARSET", "UTF-8", "SUBJECT", "\u00c4RGER".encode()) == [12]
    # casefold: the sharp s matches "SS"
    assert search(box, "CHARSET", "UTF-8", "SUBJECT", b"STRASSE") == [12]
    assert search(box, "SUBJECT", "stra\u00dfe".encode()) == [12]
    assert search(box, "SUBJECT", "\u00e4rgernis".encode()) == []


def test_sizes(box: list[MessageMeta]) -> None:
    assert search(box, "LARGER", "100") == [9]
    assert search(box, "LARGER", "99") == [2, 4, 5, 9]
    assert search(box, "SMALLER", "100") == [12]
    assert search(box, "SMALLER", "101") == [2, 4, 5, 12]
    assert search(box, "LARGER", "4294967295") == []


def test_sequence_sets(box: list[MessageMeta]) -> None:
    assert search(box, "1") == [2]
    assert search(box, "*") == [12]
    assert search(box, "2:3") == [4, 5]
    assert search(box, "4:*") == [9, 12]
    assert search(box, "*:4") == [9, 12]
    assert search(box, "1,3,5") == [2, 5, 12]
    assert search(box, "1:*") == [2, 4, 5, 9, 12]
    assert search(box, "6:100") == []  # beyond the mailbox: nothing, not an error
    assert search(box, "3:4294967295") == [5, 9, 12]
    assert search([], "1:*") == []
    assert search([], "UID", "1:*") == []


def test_uid_sets(box: list[MessageMeta]) -> None:
    assert search(box, "UID", "4") == [4]
    assert search(box, "UID", "3") == []
    assert search(box, "UID", "*") == [12]
    assert search(box, "UID", "5:*") == [5, 9, 12]
    assert search(box, "UID", "100:*") == [12]  # "*" is the largest UID: 12:100
    assert search(box, "UID", "1:3,9") == [2, 9]
    assert search(box, "UID", "1:4294967295") == [2, 4, 5, 9, 12]


def test_only_given_metas_are_candidates(box: list[MessageMeta]) -> None:
    ctx = Ctx([2, 4, 5, 9, 12])
    assert run(parse_search(toks("1:*")), box[1:3], ctx) == [4, 5]
    assert run(parse_search(toks("2")), box[3:], ctx) == []


def test_or_not_nesting(box: list[MessageMeta]) -> None:
    assert search(box, "OR", "SEEN", "FLAGGED") == [2, 4, 5]
    assert search(box, "NOT", "OR", "SEEN", "FLAGGED") == [9, 12]
    assert search(box, "OR", ["SEEN", "ANSWERED"], "DRAFT") == [4, 12]
    assert search(box, "NOT", ["SEEN", "UNANSWERED"]) == [4, 5, 9, 12]
    assert search(box, "NOT", "NOT", "SEEN") == [2, 4]
    assert search(box, "OR", "OR", "1", "2", "*") == [2, 4, 12]
    assert search(box, "SEEN", "SUBJECT", b"hello") == [2]
    assert search(box, ["SEEN", ["SUBJECT", b"hello"]], "UID", "1:3") == [2]
    assert search(box, "NOT", "ALL") == []
    assert search(box, "OR", "ALL", "SEEN") == [2, 4, 5, 9, 12]
    assert search(box, "SEEN", "ALL", "ALL") == [2, 4]
    assert search(box, "DELETED", "SEEN", "FLAGGED") == []


def at(y: int, mo: int, d: int, h: int = 12, mi: int = 0, tz: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=timezone(timedelta(hours=tz)))


def test_internal_date_boundaries() -> None:
    metas = [
        meta(1, internaldate=at(2024, 2, 29, 0, 0)),
        meta(2, internaldate=at(2024, 2, 29, 23, 59)),
        meta(3, internaldate=at(2024, 3, 1, 0, 0)),
        # 1 March 00:30 in +0200 is 29 Feb 22:30 UTC: its own date (1 March) counts.
        meta(4, internaldate=at(2024, 3, 1, 0, 30, tz=2)),
        # 29 Feb 23:30 in -0500 is 1 March UTC: still 29 February here.
        meta(5, internaldate=at(2024, 2, 29, 23, 30, tz=-5)),
        meta(6, internaldate=at(2024, 2, 28, 23, 59)),
    ]
    assert search(metas, "ON", "29-Feb-2024") == [1, 2, 5]
    assert search(metas, "BEFORE", "29-Feb-2024") == [6]
    assert search(metas, "BEFORE", "1-Mar-2024") == [1, 2, 5, 6]
    assert search(metas, "SINCE", "1-Mar-2024") == [3, 4]
    assert search(metas, "SINCE", "29-Feb-2024") == [1, 2, 3, 4, 5]
    assert search(metas, "SINCE", "1-Mar-2024", "BEFORE", "2-Mar-2024") == [3, 4]
    assert search(metas, "NOT", "ON", "29-feb-2024") == [3, 4, 6]


def test_sent_dates() -> None:
    metas = [
        meta(1, sent=at(2023, 12, 31, 23, 0, tz=-8)),
        meta(2, sent=at(2024, 1, 1, 1, 0, tz=3)),
        meta(3, sent=None),  # no parsable Date: never matches SENT*
        meta(4, sent=datetime(2024, 1, 2, 8, 0)),  # naive is taken as is
        meta(5, internaldate=at(2024, 1, 1), sent=at(2020, 1, 1)),
    ]
    assert search(metas, "SENTON", "1-Jan-2024") == [2]
    assert search(metas, "SENTBEFORE", "1-Jan-2024") == [1, 5]
    assert search(metas, "SENTSINCE", "1-Jan-2024") == [2, 4]
    assert search(metas, "NOT", "SENTSINCE", "1-Jan-2024") == [1, 3, 5]
    assert search(metas, "ON", "1-Jan-2024") == [5]


MESSAGES = {
    1: b"Subject: one\r\nX-Spam: YES\r\nMessage-ID: <a@x>\r\n\r\nThe Quick brown fox\r\n",
    2: b"Subject: two\r\nX-Spam: no\r\n\r\nlazy dog\r\n",
    3: b"Subject: three\r\n\r\nnothing to see, quick\r\n",
    4: (
        b"Subject: four\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"R3LDvMOfZSBhdXMgS8O2bG4=\r\n"
    ),
}


def content_box() -> tuple[list[MessageMeta], Ctx]:
    metas = [
        meta(
            uid,
            {SEEN} if uid % 2 else set(),
            subject=raw.split(b"\r\n")[0][9:].decode(),
            root=single_part(
                raw, **({"encoding": "base64", "charset": "utf-8"} if uid == 4 else {})
            ),
        )
        for uid, raw in MESSAGES.items()
    ]
    return metas, Ctx(list(MESSAGES), messages=dict(MESSAGES))


def test_body_text_header() -> None:
    metas, ctx = content_box()
    assert run(parse_search(toks("BODY", b"QUICK")), metas, ctx) == [1, 3]
    assert run(parse_search(toks("BODY", b"subject")), metas, ctx) == []
    assert run(parse_search(toks("TEXT", b"subject: TWO")), metas, ctx) == [2]
    assert run(parse_search(toks("TEXT", b"lazy")), metas, ctx) == [2]
    assert run(parse_search(toks("HEADER", "x-spam", b"yes")), metas, ctx) == [1]
    assert run(parse_search(toks("HEADER", "X-SPAM", b"")), metas, ctx) == [1, 2]
    assert run(parse_search(toks("NOT", "HEADER", "X-SPAM", b"")), metas, ctx) == [3, 4]
    assert run(parse_search(toks("HEADER", "Message-ID", b"<A@X>")), metas, ctx) == [1]


def test_body_is_decoded() -> None:
    metas, ctx = content_box()
    program = parse_search(toks("CHARSET", "UTF-8", "BODY", "GR\u00dcSSE aus".encode()))
    assert run(program, metas, ctx) == [4]


def test_content_loaded_once_and_only_when_needed() -> None:
    metas, ctx = content_box()
    program = parse_search(toks("BODY", b"quick", "TEXT", b"fox", "HEADER", "x-spam", b"y"))
    assert run(program, metas, ctx) == [1]
    assert sorted(ctx.loads) == [1, 2, 3, 4]
    ctx.loads.clear()
    # cheap terms run first: only unseen (even) messages get loaded
    assert run(parse_search(toks("BODY", b"dog", "UNSEEN")), metas, ctx) == [2]
    assert ctx.loads == [2, 4]
    ctx.loads.clear()
    assert run(parse_search(toks("OR", "BODY", b"dog", "SEEN")), metas, ctx) == [
        1,
        2,
        3,
    ]
    assert ctx.loads == [2, 4]
    ctx.loads.clear()
    assert run(parse_search(toks("SEEN", "SUBJECT", b"t", "BODY", b"")), metas, ctx) == [3]
    assert ctx.loads == []


def test_expunged_while_searching() -> None:
    metas, ctx = content_box()
    del ctx.messages[2]
    assert run(parse_search(toks("NOT", "BODY", b"quick")), metas, ctx) == [4]


def test_needs_content() -> None:
    def needs(*items: object) -> bool:
        return needs_content(parse_search(toks(*items)).key)

    assert not needs("SUBJECT", b"x", "FROM", b"y", "SEEN", "1:*", "UID", "3")
    assert not needs("HEADER", "To", b"x")
    assert not needs("BODY", b"")
    assert needs("HEADER", "To", b"")
    assert needs("HEADER", "X-Other", b"x")
    assert needs("OR", "SEEN", "NOT", "BODY", b"x")
    assert needs("TEXT", b"x")


def test_hand_built_tree_and_real_await() -> None:
    """A backend-built tree works too, and a truly suspending content() is awaited."""
    from twisted.internet import defer, task

    clock = task.Clock()

    metas, base = content_box()

    def later(uid: int) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        clock.callLater(1, d.callback, base.messages[uid])
        return d

    ctx = SearchContext(base.uids, frozenset(), later)
    key = And((Contains(StringField.BODY, "quick"), HasFlag("\\seen")))
    results: list[list[int]] = []
    defer.Deferred.fromCoroutine(evaluate(SearchProgram(key), metas, ctx)).addCallback(
        results.append
    )
    for _ in range(2):  # only the two \Seen messages are loaded
        assert results == []
        clock.advance(1)
    assert results == [[1, 3]]


def test_bind_for_backends(box: list[MessageMeta]) -> None:
    """bind() removes session-relative keys; the bound tree answers the same."""
    uids = [2, 4, 5, 9, 12]
    recent = frozenset({4, 5})
    program = parse_search(toks("OR", "2:3", "NEW", "NOT", ["OLD", "*"], "UID", "1:*"))
    bound = bind(program.key, uids, recent)
    assert not any(isinstance(node, InSet) and not node.uid for node in walk(bound))
    assert not any(isinstance(node, HasFlag) and node.flag == RECENT for node in walk(bound))
    assert UidIn(frozenset({4, 5})) in walk(bound)
    ctx = Ctx(uids, recent=recent)
    expected = run(program, box, ctx)
    assert expected == [4, 5]
    # the bound tree needs no \\Recent from the session (UID "*" still needs the UIDs)
    assert run(SearchProgram(bound), box, Ctx(uids)) == expected
    assert bind(HasFlag("\\Seen"), uids, recent) == HasFlag("\\Seen")
    assert bind(parse_search(toks("OLD")).key, uids, recent) == Not(UidIn(recent))
    assert bind(parse_search(toks("9")).key, uids, recent) == UidIn(frozenset())
