"""Property tests: the framer, parser, helpers, UTF-7 and sequence sets on generated input."""

from __future__ import annotations

import contextlib
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserv.imap.arguments import (
    astring,
    date_time,
    flags,
    list_pattern,
    mailbox,
    nstring,
    number,
    search_date,
)
from mailserv.imap.fetchatt import parse_fetch_items
from mailserv.imap.framer import CommandFramer, FrameError, FrameEvent
from mailserv.syntax import utf7
from mailserv.syntax.errors import ParseError
from mailserv.syntax.lexer import parse_command
from mailserv.syntax.sequences import (
    STAR,
    format_set,
    parse_sequence_set,
    uids_for_seqs,
    uids_in,
)
from mailserv.syntax.tokens import Atom, ParenList, String, Token

MAX_LINE, MAX_LITERAL, MAX_COMMAND, MAX_PLUS = 64, 40, 200, 30

FRAGMENTS = [
    b"a NOOP",
    b"t1 LOGIN",
    b" ",
    b"\r\n",
    b"\n",
    b"\r",
    b"{5}",
    b"{5+}",
    b"{0}",
    b"{35}",
    b"{45}",
    b"{31+}",
    b"{25+}",
    b"~{3}",
    b"{",
    b"}",
    b"+",
    b'"q"',
    b"(x)",
    b"x" * 70,
    b"12345",
    b"9" * 30,
    b"\x00\xff",
    b"DONE",
]

streams = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=20)), max_size=40).map(
    b"".join
)


def new_framer() -> CommandFramer:
    return CommandFramer(MAX_LINE, MAX_LITERAL, MAX_COMMAND, MAX_PLUS)


def drain(framer: CommandFramer) -> list[FrameEvent]:
    events = []
    while (event := framer.next_event()) is not None:
        events.append(event)
    return events


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_framer_chunking_invariant_and_bounded(data: bytes, cuts: list[int]) -> None:
    whole = new_framer()
    whole.feed(data)
    expected = drain(whole)
    framer = new_framer()
    got: list[FrameEvent] = []
    for piece in chunked(data, cuts):
        framer.feed(piece)
        got.extend(drain(framer))
        assert framer.pending <= MAX_LINE + 1
        assert framer.buffered <= MAX_COMMAND
    assert got == expected
    fatal = [e for e in got if isinstance(e, FrameError) and e.fatal]
    assert len(fatal) <= 1 and (not fatal or got[-1] is fatal[0])


@settings(max_examples=200)
@given(streams, st.booleans())
def test_framer_line_mode_never_raises(data: bytes, line_mode: bool) -> None:
    framer = new_framer()
    framer.set_line_mode(line_mode)
    framer.feed(data)
    drain(framer)
    assert framer.pending <= MAX_LINE + 1


@settings(max_examples=200)
@given(streams)
def test_framed_commands_parse_or_parse_error(data: bytes) -> None:
    framer = CommandFramer(10_000, 10_000, 100_000, 10_000)
    framer.feed(data)
    for event in drain(framer):
        if hasattr(event, "raw") and not isinstance(event, FrameError):
            with contextlib.suppress(ParseError):
                parse_command(event.raw)


COMMAND_BITS = [
    b"a",
    b" ",
    b"FETCH",
    b"UID",
    b"(",
    b")",
    b"[",
    b"]",
    b'"',
    b"\\",
    b"{3}\r\n",
    b"{2+}\n",
    b"~{1}\r\n",
    b"{",
    b"}",
    b"<0.1>",
    b"BODY[HEADER.FIELDS (A B)]",
    b"\r",
    b"\n",
    b"\x00",
    b"\xc3\xa4",
    b"\xff",
    b"*",
    b"%",
    b"+",
    b"NIL",
    b"1:*",
]


@settings(max_examples=1000)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.lists(st.sampled_from(COMMAND_BITS), max_size=30).map(b"".join),
        st.lists(st.sampled_from(COMMAND_BITS), max_size=30).map(lambda b: b"t UID " + b"".join(b)),
    )
)
def test_parse_command_only_raises_parse_error(raw: bytes) -> None:
    try:
        command = parse_command(raw)
    except ParseError as exc:
        assert exc.text
        return
    for token in command.args:
        _exercise_helpers(token)


def _exercise_helpers(token: Token) -> None:
    helpers = (astring, nstring, number, flags, mailbox, list_pattern, search_date, date_time)
    for helper in (*helpers, parse_fetch_items):
        with contextlib.suppress(ParseError):
            helper(token)  # type: ignore[operator]
    if isinstance(token, Atom):
        with contextlib.suppress(ParseError):
            parse_sequence_set(token.value)


# -- round trip: serialise a token tree, parse it back ----------------------------------------

atoms = st.one_of(
    st.text(
        alphabet=st.sampled_from("abcXYZ019.:,*%\\<>!#&'+-/;=?@^_`|}~]"), min_size=1, max_size=8
    ),
    st.sampled_from(["[Gmail]/Sent", "BODY[]", 'BODY.PEEK[HEADER.FIELDS (A "B)")]<0.1>', "ä[]ö"]),
)
strings = st.builds(
    String, st.binary(max_size=12).filter(lambda b: not (set(b) & {0, 10, 13})), st.just(False)
)
literals = st.builds(String, st.binary(max_size=12), st.just(True), st.booleans())
leaves = st.one_of(st.builds(Atom, atoms), strings, literals)
trees = st.recursive(
    leaves, lambda kids: st.builds(ParenList, st.lists(kids, max_size=4).map(tuple)), max_leaves=20
)


def serialise(token: Token) -> bytes:
    if isinstance(token, Atom):
        return token.value.encode()
    if isinstance(token, ParenList):
        return b"(" + b" ".join(serialise(t) for t in token.items) + b")"
    if token.literal:
        prefix = b"~" if token.literal8 else b""
        return prefix + b"{%d}\r\n" % len(token.value) + token.value
    return b'"' + token.value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@settings(max_examples=500)
@given(st.lists(trees, max_size=6))
def test_token_round_trip(tokens: list[Token]) -> None:
    raw = b"tag CMD" + b"".join(b" " + serialise(t) for t in tokens)
    assert parse_command(raw).args == tuple(tokens)


@settings(max_examples=200)
@given(st.lists(trees, max_size=6), st.integers(min_value=1, max_value=40))
def test_framer_then_parser_round_trip(tokens: list[Token], step: int) -> None:
    raw = b"tag CMD" + b"".join(b" " + serialise(t) for t in tokens)
    framer = CommandFramer(100_000, 100_000, 1_000_000, 100_000)
    stream = raw + b"\r\n"
    events: list[FrameEvent] = []
    for i in range(0, len(stream), step):
        framer.feed(stream[i : i + step])
        events.extend(drain(framer))
    frames = [e for e in events if not isinstance(e, FrameError) and hasattr(e, "raw")]
    assert len(frames) == 1
    assert parse_command(frames[0].raw).args == tuple(tokens)  # type: ignore[union-attr]


# -- modified UTF-7 ---------------------------------------------------------------------------


@given(st.text())
def test_utf7_round_trip(name: str) -> None:
    encoded = utf7.encode(name)
    assert encoded.isascii()
    assert utf7.decode(encoded) == name


@given(st.binary(max_size=40))
def test_utf7_decode_only_value_error(raw: bytes) -> None:
    with contextlib.suppress(ValueError):
        utf7.decode(raw)


@given(st.text(alphabet=st.sampled_from("&-AOQabc+,/=ZeVn2D3"), max_size=20))
def test_utf7_canonical_decodes_re_encode(text: str) -> None:
    raw = text.encode()
    try:
        name = utf7.decode(raw)
    except ValueError:
        return
    assert utf7.decode(utf7.encode(name)) == name


# -- sequence sets ----------------------------------------------------------------------------

bounds = st.one_of(st.integers(min_value=1, max_value=60), st.just(STAR))
set_ranges = st.lists(st.tuples(bounds, bounds), min_size=1, max_size=8)


def set_text(ranges: list[tuple[int, int]]) -> str:
    def one(n: int) -> str:
        return "*" if n == STAR else str(n)

    return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in ranges)


def oracle(ranges: list[tuple[int, int]], largest: int) -> set[int]:
    members: set[int] = set()
    for a, b in ranges:
        if STAR in (a, b):
            if largest == 0:
                continue
            a = largest if a == STAR else a
            b = largest if b == STAR else b
        members.update(range(min(a, b), max(a, b) + 1))
    return members


@given(set_ranges, st.sets(st.integers(min_value=1, max_value=70)))
def test_uids_in_matches_oracle(ranges: list[tuple[int, int]], uid_set: set[int]) -> None:
    uids = sorted(uid_set)
    largest = uids[-1] if uids else 0
    parsed = parse_sequence_set(set_text(ranges))
    resolved = parsed.resolve(largest)
    assert all(a <= b for a, b in resolved)
    assert all(x[1] + 1 < y[0] for x, y in itertools.pairwise(resolved))
    assert uids_in(resolved, uids) == sorted(u for u in uids if u in oracle(ranges, largest))


@given(set_ranges, st.sets(st.integers(min_value=1, max_value=1000), max_size=30))
def test_uids_for_seqs_matches_oracle(ranges: list[tuple[int, int]], uid_set: set[int]) -> None:
    uids = sorted(uid_set)
    wanted = oracle(ranges, len(uids))
    resolved = parse_sequence_set(set_text(ranges)).resolve(len(uids))
    if wanted and max(wanted) > len(uids):
        try:
            uids_for_seqs(resolved, uids)
        except ValueError:
            return
        raise AssertionError("expected InvalidSequenceNumber")
    assert uids_for_seqs(resolved, uids) == [uids[n - 1] for n in sorted(wanted)]


@given(st.sets(st.integers(min_value=1, max_value=4294967295), min_size=1, max_size=50))
def test_format_set_round_trip(numbers: set[int]) -> None:
    ordered = sorted(numbers)
    text = format_set(ordered)
    resolved = parse_sequence_set(text).resolve(ordered[-1])
    assert uids_in(resolved, ordered) == ordered
    assert sum(b - a + 1 for a, b in resolved) == len(ordered)
    assert len(resolved) == text.count(",") + 1


@given(st.lists(st.integers(min_value=1, max_value=100), max_size=30))
def test_format_set_keeps_order(numbers: list[int]) -> None:
    text = format_set(numbers)
    expanded: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition(":")
        expanded.extend(range(int(a), int(b or a) + 1))
    assert expanded == numbers


def test_full_uid_range_is_instant() -> None:
    uids = list(range(5, 2_000_000, 7))
    found = uids_in(parse_sequence_set("1:4294967295").resolve(uids[-1]), uids)
    assert len(found) == len(uids)
