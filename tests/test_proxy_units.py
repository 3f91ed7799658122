"""Pieces of the proxy backend that need no upstream: response parsing, command encoding,
SEARCH translation, mailbox names, options, the caches."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.testing import Clock, StringTransport

from mailserv.backends.proxy import wire
from mailserv.backends.proxy.cache import ContentCache, InfoStore
from mailserv.backends.proxy.client import UpstreamProtocol
from mailserv.backends.proxy.mirror import Mirror
from mailserv.backends.proxy.names import NameMap
from mailserv.backends.proxy.options import parse_options
from mailserv.backends.proxy.pool import ConnectionPool, discover_names
from mailserv.backends.proxy.search import answerable_here, translate
from mailserv.errors import BackendOptionError, InvalidMailboxName
from mailserv.imap.search.parse import parse_search
from mailserv.message.parse import parse_message
from mailserv.search import (
    And,
    Contains,
    DateCompare,
    DateField,
    DateOp,
    HasFlag,
    ModSeqAtLeast,
    SearchProgram,
    StringField,
    UidIn,
)
from mailserv.syntax.tokens import Atom, ParenList, String

# -- responses ------------------------------------------------------------------------------


def test_fetch_response_with_literal() -> None:
    parts = [b"* 12 FETCH (UID 7 FLAGS (\\Seen $Work) BODY[] {5}", b" MODSEQ (33))"]
    response = wire.parse(parts, [b"ab\r\nc"])
    assert (response.tag, response.kind, response.number) == ("*", "FETCH", 12)
    items = wire.pairs(response.data[0])  # type: ignore[arg-type]
    assert items["UID"] == 7
    assert wire.flag_set(items["FLAGS"]) == {"\\Seen", "$Work"}
    assert items["BODY[]"] == b"ab\r\nc"
    assert wire.modseq_of(items["MODSEQ"]) == 33


def test_keyword_nil_in_a_flag_list_is_a_keyword() -> None:
    response = wire.parse([b"* 1 FETCH (UID 3 FLAGS (\\SEEN NIL))"], [])
    items = wire.pairs(response.data[0])  # type: ignore[arg-type]
    assert wire.flag_set(items["FLAGS"]) == {"\\Seen", "NIL"}


def test_status_response_code_and_text() -> None:
    response = wire.parse([b"a1 OK [APPENDUID 38505 3955] APPEND completed"], [])
    assert (response.kind, response.code, response.code_data) == ("OK", "APPENDUID", [38505, 3955])
    assert response.text == "APPEND completed"
    bye = wire.parse([b"* BYE shutting down"], [])
    assert (bye.kind, bye.code, bye.text) == ("BYE", None, "shutting down")


def test_values_quoted_nil_nested_and_section_atoms() -> None:
    parts = [b'* LIST (\\HasNoChildren) "/" "A \\"b\\" \\\\c" NIL (BODY[HEADER.FIELDS (A B)]<0> 1)']
    response = wire.parse(parts, [])
    assert response.data == [
        ["\\HasNoChildren"],
        b"/",
        b'A "b" \\c',
        None,
        ["BODY[HEADER.FIELDS (A B)]<0>", 1],
    ]


@pytest.mark.parametrize(
    "line", [b"* 1 FETCH (UID 1", b"* 1 FETCH UID 1)", b"* 1 FETCH (BODY[] {3}"]
)
def test_malformed_responses_are_refused(line: bytes) -> None:
    with pytest.raises(wire.ResponseError):
        wire.parse([line], [])


PIECES = [
    *b'(|)| |  |UID|7|NIL|nil|\\Seen|$a}|\t|007|"|\\|[|]|{3}|x'.split(b"|"),
    b'"7-Jul-2026 01:02:03 +0000"',
]
"""What the lines of the tokenizer test are made of: the flat path's atoms, lists and strings
without escapes, and what only the general tokenizer reads (a lone quote or backslash makes
strings with escapes or none closed)."""


@settings(max_examples=500)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_a_line_of_atoms_and_lists_reads_as_the_general_tokenizer_reads_it(
    pieces: list[bytes],
) -> None:
    """The fast path for lines without escaped strings, sections or literals (every FETCH
    line of a big STORE or a listing) gives what :func:`wire.tokens` gives, values and
    refusals alike."""
    line = b"".join(pieces)
    try:
        expected: object = wire.tokens([line], [])
    except wire.ResponseError as exc:
        expected = type(exc)
    try:
        got: object = wire.parse([b"* 3 FETCH " + line], []).data
    except wire.ResponseError as exc:
        got = type(exc)
    assert got == expected


def test_internaldate_and_sets() -> None:
    when = wire.internaldate(b" 7-Feb-2022 10:11:12 +0130")
    assert when is not None and when.astimezone(UTC) == datetime(2022, 2, 7, 8, 41, 12, tzinfo=UTC)
    assert wire.internaldate(b"garbage") is None
    assert wire.uid_ranges("3:5,9,12:11") == [3, 4, 5, 9, 11, 12]
    assert wire.set_ranges("3:5,9") == [(3, 5), (9, 9)]
    assert wire.uid_set([9, 3, 4, 5, 11]) == b"3:5,9,11"


def test_argument_encoding() -> None:
    assert wire.string("INBOX/Sub") == b"INBOX/Sub"
    assert wire.string('a b"c') == b'"a b\\"c"'
    assert wire.string("") == b'""'
    assert wire.string("nil") == b'"nil"'
    assert wire.string("caf\u00e9") == wire.Literal("caf\u00e9".encode())
    assert wire.quoted("x") == b'"x"'
    assert wire.is_flag("\\Seen") and wire.is_flag("$Label") and not wire.is_flag("a b")


# -- SEARCH ---------------------------------------------------------------------------------


def program(*args: object) -> SearchProgram:
    return parse_search(list(args), 100)  # type: ignore[arg-type]


def rendered(query: object) -> bytes:
    out = b""
    glue = True
    for arg in query.args:  # type: ignore[attr-defined]
        piece = arg if isinstance(arg, bytes) else b"{%d}" % len(arg.data)
        if not glue and not piece.startswith(b")"):
            out += b" "
        out += piece
        glue = piece.endswith(b"(")
    return out


def test_search_translation() -> None:
    query = translate(
        program(Atom("UNSEEN"), Atom("FROM"), String(b"alice"), Atom("SINCE"), Atom("1-Feb-2022")),
        modseq=True,
    )
    assert query is not None and not query.utf8
    assert rendered(query) == b'UNSEEN FROM "alice" SINCE 1-Feb-2022'
    nested = SearchProgram(
        And(
            (
                HasFlag("$Work"),
                And((HasFlag("\\Deleted", False), UidIn(frozenset({1, 2, 3, 7})))),
                DateCompare(DateField.SENT, DateOp.BEFORE, date(2020, 3, 4)),
            )
        )
    )
    query = translate(nested, modseq=True)
    assert query is not None
    assert rendered(query) == b"KEYWORD $Work (UNDELETED UID 1:3,7) SENTBEFORE 4-Mar-2020"


def test_search_translation_of_text_needs_utf8() -> None:
    query = translate(SearchProgram(Contains(StringField.SUBJECT, "r\u00e9union")), modseq=True)
    assert query is not None and query.utf8
    assert query.args[0] == b"SUBJECT" and isinstance(query.args[1], wire.Literal)
    header = translate(SearchProgram(Contains(StringField.HEADER, "", "X-Spam")), modseq=True)
    assert header is not None and rendered(header) == b'HEADER "X-Spam" ""'


def test_search_declines_what_it_cannot_say() -> None:
    assert translate(object(), modseq=True) is None
    assert translate(SearchProgram(ModSeqAtLeast(5)), modseq=False) is None
    assert translate(SearchProgram(ModSeqAtLeast(5)), modseq=True) is not None
    assert translate(SearchProgram(HasFlag("\\Unknown")), modseq=True) is None
    empty = translate(SearchProgram(UidIn(frozenset())), modseq=True)
    assert empty is not None and rendered(empty) == b"NOT ALL"


@pytest.mark.parametrize(
    ("words", "here"),
    [
        ((Atom("UNSEEN"),), True),
        ((Atom("OR"), Atom("FLAGGED"), Atom("LARGER"), Atom("5000")), True),
        ((Atom("SINCE"), Atom("1-Jan-2020"), Atom("NOT"), Atom("DELETED")), True),
        ((Atom("UID"), Atom("1:*"), Atom("KEYWORD"), Atom("work")), True),
        ((Atom("SENTSINCE"), Atom("1-Jan-2020")), False),
        ((Atom("UNSEEN"), Atom("SUBJECT"), String(b"x")), False),
        ((Atom("OR"), Atom("SEEN"), Atom("BODY"), String(b"x")), False),
    ],
)
def test_metadata_searches_are_answered_from_the_mirror(
    words: tuple[Atom | String, ...], here: bool
) -> None:
    assert answerable_here(program(*words), parsed=False) is here
    assert not answerable_here(object(), parsed=False)


def test_header_searches_are_local_once_every_message_is_parsed() -> None:
    subject = program(Atom("SUBJECT"), String(b"x"), Atom("SENTSINCE"), Atom("1-Jan-2020"))
    assert answerable_here(subject, parsed=True)
    assert not answerable_here(subject, parsed=False)
    for words in [(Atom("BODY"), String(b"x")), (Atom("HEADER"), String(b"X-A"), String(b"y"))]:
        assert not answerable_here(program(*words), parsed=True)


def test_parsed_program_keeps_the_parenthesised_list() -> None:
    parsed = program(ParenList((Atom("SEEN"), Atom("FLAGGED"))), Atom("ANSWERED"))
    query = translate(parsed, modseq=True)
    assert query is not None and rendered(query) == b"(SEEN FLAGGED) ANSWERED"


# -- names and options ----------------------------------------------------------------------


def test_names_with_another_delimiter_and_a_prefix() -> None:
    names = NameMap(".", "INBOX.")
    assert names.upstream("Work/2024") == "INBOX.Work.2024"
    assert names.upstream("inbox") == "INBOX"
    assert names.local("INBOX.Work.2024") == "Work/2024"
    assert names.local("Shared.Other") is None
    with pytest.raises(InvalidMailboxName):
        names.upstream("v1.2")
    assert NameMap().decode(b"Caf&AOk-") == "Caf\u00e9"
    assert NameMap().encode("Caf\u00e9") == b"Caf&AOk-"


def test_names_that_cannot_cross() -> None:
    dots = NameMap(".")
    assert dots.encode("R\u00e4ume/K\u00fcche") == b"R&AOQ-ume.K&APw-che"
    assert dots.decode(b"R&AOQ-ume.K&APw-che") == "R\u00e4ume/K\u00fcche"
    # a "/" inside an upstream level, or an empty level: no name of ours reaches it
    assert dots.local("a/b.c") is None
    assert dots.local("a..b") is None and dots.local(".a") is None
    flat = NameMap(None)
    assert flat.upstream("Work") == "Work"
    with pytest.raises(InvalidMailboxName):
        flat.upstream("Work/2024")
    assert flat.local("Work.2024") == "Work.2024"
    assert flat.local("a/b") is None
    slash = NameMap("/")
    assert slash.upstream("v1.2/x") == "v1.2/x" and slash.local("v1.2/x") == "v1.2/x"


def _discovered(capabilities: bytes, answers: dict[bytes, bytes]) -> NameMap:
    """discover_names over a protocol fed the upstream's answers by command word."""
    clock = Clock()
    conn = UpstreamProtocol(clock, 10.0, "test")
    transport = StringTransport()
    conn.makeConnection(transport)
    conn.dataReceived(b"* OK [CAPABILITY " + capabilities + b"] ready\r\n")
    result: list[object] = []
    Deferred.fromCoroutine(discover_names(conn)).addBoth(result.append)
    for _ in range(3):
        sent = transport.value()
        transport.clear()
        if not sent:
            break
        tag, verb = sent.split(b" ")[:2]
        conn.dataReceived(answers.get(verb.strip(), b"") + tag + b" OK done\r\n")
    assert len(result) == 1 and isinstance(result[0], NameMap), result
    return result[0]


def test_discovered_delimiter_and_prefix() -> None:
    courier = _discovered(
        b"IMAP4rev1 NAMESPACE", {b"NAMESPACE": b'* NAMESPACE (("INBOX." ".")) NIL NIL\r\n'}
    )
    assert courier == NameMap(".", "INBOX.")
    flat = _discovered(
        b"IMAP4rev1 NAMESPACE", {b"NAMESPACE": b'* NAMESPACE (("" NIL)) NIL NIL\r\n'}
    )
    assert flat == NameMap(None, "")
    with pytest.raises(InvalidMailboxName):
        flat.upstream("a/b")
    listed = _discovered(b"IMAP4rev1", {b"LIST": b'* LIST (\\Noselect) "." ""\r\n'})
    assert listed == NameMap(".", "")
    no_personal = _discovered(
        b"IMAP4rev1 NAMESPACE",
        {b"NAMESPACE": b"* NAMESPACE NIL NIL NIL\r\n", b"LIST": b'* LIST () NIL ""\r\n'},
    )
    assert no_personal == NameMap(None, "")


class _Lent:
    """Stands in for a logged-in upstream connection: the pool only lends it out."""

    alive = True
    capabilities: frozenset[str] = frozenset()
    on_untagged = on_lost = None

    async def command(self, *args: object, handler: object = None) -> None:
        """The names (``discover_names``): none known, the defaults."""

    async def logout(self) -> None:
        self.alive = False


def _lent(pool: ConnectionPool, long: bool = False) -> list[Any]:
    """The connection the pool lends, once it does (an empty list while the caller waits)."""
    got: list[Any] = []
    Deferred.fromCoroutine(pool.acquire(long=long)).addBoth(got.append)
    return got


async def _opened(login_name: str, secret: bytes) -> _Lent:
    return _Lent()


async def _nothing_to_evict() -> bool:
    return False


def test_long_work_leaves_a_connection_for_the_short_commands() -> None:
    """Searches upstream (seconds at 100k messages) hold at most ``limit - 2`` connections:
    a STATUS or LIST gets one at once while more searches wait; a search that waits gets
    the next connection long work gives back, after the short commands waiting before it."""
    config = SimpleNamespace(connections=4, upstream=SimpleNamespace(timeout=15.0))
    backend = SimpleNamespace(reactor=Clock(), config=config, connector=SimpleNamespace())
    backend.connector.open_as = _opened
    pool = ConnectionPool(backend, "user", b"pw", _nothing_to_evict)  # type: ignore[arg-type]
    assert pool.long_limit == 2
    searches = [_lent(pool, long=True) for _ in range(3)]
    assert [len(s) for s in searches] == [1, 1, 0]
    status, listing = _lent(pool), _lent(pool)
    assert len(status) == 1 and len(listing) == 1  # the third and fourth connections
    waiting_short = _lent(pool)
    pool.release(status[0])
    assert len(waiting_short) == 1 and not searches[2]  # not long work's turn yet
    pool.release(searches[0][0])
    assert len(searches[2]) == 1 and searches[2][0] is searches[0][0]
    assert all(isinstance(s[0], _Lent) for s in searches)


def test_long_work_counts_the_connections_being_opened_for_it() -> None:
    """Searches that find no idle connection wait for new ones: those count against the
    limit too, or every search of a burst would open one."""
    opening: list[Deferred[_Lent]] = []

    async def slow_open(login_name: str, secret: bytes) -> _Lent:
        opening.append(Deferred())
        return await opening[-1]

    config = SimpleNamespace(connections=4, upstream=SimpleNamespace(timeout=15.0))
    backend = SimpleNamespace(reactor=Clock(), config=config, connector=SimpleNamespace())
    backend.connector.open_as = slow_open
    pool = ConnectionPool(backend, "user", b"pw", _nothing_to_evict)  # type: ignore[arg-type]
    searches = [_lent(pool, long=True) for _ in range(3)]
    assert len(opening) == 2 and not any(searches)
    status = _lent(pool)
    assert len(opening) == 3  # the short command opens the last one
    for waiting in opening:
        waiting.callback(_Lent())
    assert [len(s) for s in searches] == [1, 1, 0] and len(status) == 1


def test_options(tmp_path: Path) -> None:
    config = parse_options({"upstream": "tls:imap.example.org"}, str(tmp_path))
    assert (config.upstream.mode, config.upstream.port) == ("tls", 993)
    assert config.cache_dir == str(tmp_path / "proxy-cache")
    config = parse_options({"upstream": "starttls:[::1]:1143", "cache_dir": "none"})
    assert (config.upstream.host, config.upstream.port, config.cache_dir) == ("::1", 1143, None)
    assert parse_options({"upstream": "plain:127.0.0.1:143"}).upstream.mode == "plain"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, "upstream"),
        ({"upstream": "ssl:x:1"}, "upstream"),
        ({"upstream": "plain:imap.example.org:143"}, "loopback"),
        ({"upstream": "tls:x:99999"}, "port"),
        ({"upstream": "tls:x", "timeout": "soon"}, "timeout"),
        ({"upstream": "tls:x", "connections": "1"}, "connections"),
        ({"upstream": "tls:x", "ca": "/no/such/file"}, "ca"),
        ({"upstream": "tls:x", "master_user": "m"}, "master_password"),
        ({"upstream": "tls:x", "bogus": "1"}, "bogus"),
    ],
)
def test_bad_options_are_named(options: dict[str, str], named: str) -> None:
    with pytest.raises(BackendOptionError, match=named):
        parse_options(options)


# -- caches ---------------------------------------------------------------------------------


def test_content_cache_budget() -> None:
    cache = ContentCache(100)
    cache.put("a", b"x" * 20)
    cache.put("b", b"y" * 20)
    cache.put("too big", b"z" * 30)  # over a quarter of the budget: not kept
    assert "too big" not in cache
    for n in range(5):
        cache.put(n, b"w" * 20)
    assert cache.used <= 100 and "a" not in cache and cache.get(4) == b"w" * 20


def test_info_store_round_trip_and_uidvalidity_change(tmp_path: Path) -> None:
    disk = InfoStore(str(tmp_path))
    info = parse_message(b"Subject: hello\r\nFrom: a@example.org\r\n\r\nbody\r\n")
    disk.save("alice", "INBOX", 7, [(1, info), (2, info)])
    assert disk.load("alice", "INBOX", 7, {2, 3}) == {2: info}
    assert disk.load("bob", "INBOX", 7, {1}) == {}
    assert disk.load("alice", "INBOX", 8, {1}) == {}  # and the old file is gone
    assert disk.load("alice", "INBOX", 7, {1}) == {}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.stat().st_mode & 0o077 == 0 for p in files)


def _unseen(mirror: Mirror) -> set[int]:
    """The mirror's UIDs without \\Seen, from the UIDs it keeps by flag."""
    return set(mirror.meta).difference(mirror.having.get("\\Seen", ()))


def test_mirror_keeps_the_unseen_uids() -> None:
    mirror = Mirror(7, condstore=False, infos={})
    when = datetime(2024, 1, 1, tzinfo=UTC)
    for uid, flags in [(1, {"\\Seen"}), (2, set()), (3, {"Work"}), (4, set())]:
        assert mirror.add(uid, frozenset(flags), when, 100, None, None)
    assert _unseen(mirror) == {2, 3, 4} and mirror.status().unseen == 3
    mirror.set_flags(2, frozenset({"\\Seen"}), None, None)
    mirror.set_flags(1, frozenset(), None, None)
    assert _unseen(mirror) == {1, 3, 4}
    mirror.remove([3, 9], None)
    assert _unseen(mirror) == {1, 4} and mirror.status().unseen == 2


def _flooded(
    lines: int, piece: int = 0
) -> tuple[Clock, StringTransport, UpstreamProtocol, list[wire.Response]]:
    """A protocol sent ``lines`` untagged FETCH responses in one reactor turn (a STORE 1:*
    of a big mailbox), then a tagged OK, in one call or, with ``piece``, in calls of that
    many bytes; what it has dispatched so far is in the list."""
    clock = Clock()
    conn = UpstreamProtocol(clock, 10.0, "test")
    transport = StringTransport()
    conn.makeConnection(transport)
    conn.dataReceived(b"* OK ready\r\n")
    seen: list[wire.Response] = []
    conn.on_untagged = seen.append
    flood = b"".join(
        b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n" % (n, n) for n in range(1, lines + 1)
    )
    flood += b"p9 OK done\r\n"
    clock.advance(0)  # a new reactor turn: its budget is the flood's
    step = piece or len(flood)
    for start in range(0, len(flood), step):
        conn.dataReceived(flood[start : start + step])
    return clock, transport, conn, seen


def test_a_huge_answer_is_handled_in_slices_with_the_transport_paused() -> None:
    """One read of 20,000 responses would hold the reactor for a long time: the protocol
    handles a slice, pauses the transport, and goes on in later reactor turns."""
    clock, transport, conn, seen = _flooded(20000)
    assert 0 < len(seen) < 20000
    assert transport.producerState == "paused"
    conn.dataReceived(b"* 1 EXISTS\r\n")  # arriving meanwhile: queued behind the rest
    assert _turns(clock) > 1 and transport.producerState == "producing"
    assert [r.number for r in seen] == [*range(1, 20001), 1]
    assert seen[-1].kind == "EXISTS"


def _turns(clock: Clock) -> int:
    """Run the calls due, one reactor turn each (Clock.advance would run them all in one),
    until none is; how many ran."""
    turns = 0
    while clock.calls and clock.calls[0].getTime() <= clock.seconds() and turns < 10000:
        call = clock.calls.pop(0)
        call.func(*call.args, **call.kw)
        turns += 1
    return turns


def test_the_small_reads_of_one_turn_share_its_budget() -> None:
    """Under TLS one read from the socket reaches the protocol as a call per TLS record:
    the calls of one reactor turn share the turn's budget.  20,000 responses arriving as
    1 KiB pieces in one turn are not all handled in it (each piece, shorter than a
    check of the clock, had a slice of its own: the turn held the reactor for them all)."""
    clock, transport, _, seen = _flooded(20000, piece=1024)
    assert 0 < len(seen) < 20000 and transport.producerState == "paused"
    assert _turns(clock) > 1 and transport.producerState == "producing"
    assert [r.number for r in seen] == list(range(1, 20001))


def test_a_connection_lost_mid_slices_dispatches_what_arrived_first() -> None:
    _, _, conn, seen = _flooded(20000)
    assert len(seen) < 20000
    lost: list[str] = []
    conn.on_lost = lost.append
    conn.connectionLost()
    assert len(seen) == 20000 and lost
