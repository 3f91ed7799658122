"""CommandFramer: cutting the client stream into commands, literals and errors."""

from __future__ import annotations

import pytest

from mailserv.imap.framer import CommandFramer, ContinueLiteral, Frame, FrameError, FrameEvent, Line


def framer(
    max_line: int = 100, max_literal: int = 1000, max_command: int = 2000, max_plus: int = 500
) -> CommandFramer:
    return CommandFramer(max_line, max_literal, max_command, max_plus)


def drain(f: CommandFramer) -> list[FrameEvent]:
    events = []
    while (event := f.next_event()) is not None:
        events.append(event)
    return events


def events_of(data: bytes, f: CommandFramer | None = None) -> list[FrameEvent]:
    f = f or framer()
    f.feed(data)
    return drain(f)


def test_simple_lines() -> None:
    assert events_of(b"a NOOP\r\nb CAPABILITY\r\n") == [Frame(b"a NOOP"), Frame(b"b CAPABILITY")]


def test_bare_lf_accepted() -> None:
    assert events_of(b"a NOOP\nb LOGOUT\r\n") == [Frame(b"a NOOP"), Frame(b"b LOGOUT")]


def test_incomplete_line_waits() -> None:
    f = framer()
    f.feed(b"a NO")
    assert f.next_event() is None
    f.feed(b"OP\r")
    assert f.next_event() is None
    f.feed(b"\n")
    assert f.next_event() == Frame(b"a NOOP")
    assert f.next_event() is None


def test_blank_lines_between_commands_ignored() -> None:
    assert events_of(b"\r\n\r\n  \r\na NOOP\r\n") == [Frame(b"a NOOP")]


def test_sync_literal_continuation_then_frame() -> None:
    f = framer()
    f.feed(b"a LOGIN {4}\r\n")
    assert f.next_event() == ContinueLiteral()
    assert f.next_event() is None
    f.feed(b"fr\r\n")
    assert f.next_event() is None
    f.feed(b"d {3}\r\n")
    assert f.next_event() == ContinueLiteral()
    f.feed(b"pw!\r\n")
    assert f.next_event() == Frame(b"a LOGIN {4}\r\nfr\r\nd {3}\r\npw!")


def test_literal_data_may_hold_crlf_and_braces() -> None:
    data = b"x\r\n{3}\r\nb NOOP\r\n"
    events = events_of(b"a APPEND INBOX {%d}\r\n" % len(data) + data + b"\r\n")
    assert events == [ContinueLiteral(), Frame(b"a APPEND INBOX {%d}\r\n" % len(data) + data)]


def test_literal_header_after_bare_lf_normalised() -> None:
    assert events_of(b"a LOGIN {1}\nx y\n") == [ContinueLiteral(), Frame(b"a LOGIN {1}\r\nx y")]


def test_non_sync_literal_no_continuation() -> None:
    assert events_of(b"a LOGIN {2+}\r\nab {0+}\r\n\r\n") == [Frame(b"a LOGIN {2+}\r\nab {0+}\r\n")]


def test_literal8_header() -> None:
    assert events_of(b"a APPEND x ~{2}\r\n\x00\x01\r\n") == [
        ContinueLiteral(),
        Frame(b"a APPEND x ~{2}\r\n\x00\x01"),
    ]


def test_zero_sync_literal_still_continues() -> None:
    assert events_of(b'a LOGIN {0}\r\n "x"\r\n') == [
        ContinueLiteral(),
        Frame(b'a LOGIN {0}\r\n "x"'),
    ]


def test_sync_literal_too_large_is_toobig_not_fatal() -> None:
    events = events_of(b"a APPEND x {1001}\r\nb NOOP\r\n")
    assert events[0] == FrameError("a", "Literal too large (limit 1000 bytes)", "TOOBIG", False)
    assert events[1:] == [Frame(b"b NOOP")]


def test_sync_literal_with_absurd_digits_is_toobig() -> None:
    events = events_of(b"a APPEND x {" + b"9" * 5000 + b"}\r\nb NOOP\r\n", framer(max_line=6000))
    assert isinstance(events[0], FrameError) and events[0].code == "TOOBIG"
    assert events[1:] == [Frame(b"b NOOP")]


def test_sync_literal_over_command_limit() -> None:
    f = framer(max_command=100)
    events = events_of(b"a X {50}\r\n" + b"x" * 50 + b" {60}\r\nb NOOP\r\n", f)
    assert events[0] == ContinueLiteral()
    assert events[1] == FrameError("a", "Command too large", "TOOBIG", False)
    assert events[2:] == [Frame(b"b NOOP")]


def test_non_sync_literal_too_large_is_fatal() -> None:
    f = framer()
    events = events_of(b"a APPEND x {501+}\r\n" + b"y" * 501 + b"\r\nb NOOP\r\n", f)
    assert events == [FrameError("a", "Non-synchronizing literal too large", "TOOBIG", True)]
    f.feed(b"c NOOP\r\n")
    assert f.next_event() is None
    assert f.pending == 0


def test_non_sync_literal_over_command_limit_is_discarded() -> None:
    f = framer(max_command=100)
    data = b"a X {60+}\r\n" + b"1" * 60 + b" {60+}\r\n" + b"2" * 60 + b" tail\r\nb NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("a", "Command too large", "TOOBIG", False),
        Frame(b"b NOOP"),
    ]


def test_many_small_lines_over_command_limit() -> None:
    f = framer(max_command=50)
    data = b"a X" + b" {0+}\r\n" * 20 + b"\r\nb NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("a", "Command too large", "TOOBIG", False),
        Frame(b"b NOOP"),
    ]


def test_overlong_line_skipped_with_tag() -> None:
    f = framer(max_line=20)
    events = events_of(b"t1 SEARCH " + b"x" * 50 + b"\r\nt2 NOOP\r\n", f)
    assert events == [FrameError("t1", "Command line too long", None, False), Frame(b"t2 NOOP")]


def test_overlong_line_reported_before_its_end_arrives() -> None:
    f = framer(max_line=20)
    f.feed(b"t1 SEARCH " + b"x" * 50)
    assert f.next_event() == FrameError("t1", "Command line too long", None, False)
    assert f.pending == 0
    f.feed(b"y" * 1000)
    assert f.next_event() is None
    assert f.pending == 0
    f.feed(b"\r\nt2 NOOP\r\n")
    assert drain(f) == [Frame(b"t2 NOOP")]


def test_overlong_line_ending_in_non_sync_literal_discards_its_data() -> None:
    f = framer(max_line=20)
    data = b"t1 X " + b"x" * 50 + b" {9+}\r\nt3 NOOP\r\n tail\r\nt2 NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("t1", "Command line too long", None, False),
        Frame(b"t2 NOOP"),
    ]


def test_overlong_line_ending_in_sync_literal_ends_command() -> None:
    f = framer(max_line=20)
    data = b"t1 X " + b"x" * 50 + b" {9}\r\nt2 NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("t1", "Command line too long", None, False),
        Frame(b"t2 NOOP"),
    ]


def test_overlong_continuation_line_keeps_first_tag() -> None:
    f = framer(max_line=20)
    data = b"t1 X {1+}\r\nz" + b"y" * 50 + b"\r\nt2 NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("t1", "Command line too long", None, False),
        Frame(b"t2 NOOP"),
    ]


def test_overlong_line_with_huge_digit_run_literal_is_fatal() -> None:
    f = framer(max_line=20)
    data = b"t1 X {" + b"1" * 500 + b"+}\r\nt2 NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("t1", "Command line too long", None, False),
        FrameError("t1", "Non-synchronizing literal too large", "TOOBIG", True),
    ]


def test_overlong_line_without_tag() -> None:
    f = framer(max_line=10)
    assert events_of(b"x" * 30 + b"\r\n", f)[0] == FrameError(
        None, "Command line too long", None, False
    )


def test_overlong_lines_within_a_failed_command_do_not_stall() -> None:
    f = framer(max_line=20, max_command=40)
    data = b"t1 X {30+}\r\n" + b"y" * 30 + b" " + b"z" * 30 + b"\r\nt2 NOOP\r\nt3 NOOP\r\n"
    assert events_of(data, f) == [
        FrameError("t1", "Command too large", "TOOBIG", False),
        Frame(b"t2 NOOP"),
        Frame(b"t3 NOOP"),
    ]


def test_line_exactly_at_limit_accepted() -> None:
    f = framer(max_line=10)
    assert events_of(b"a NOOP 123\r\n", f) == [Frame(b"a NOOP 123")]
    assert events_of(b"a NOOP 1234\r\n", f)[0] == FrameError(
        "a", "Command line too long", None, False
    )


def test_line_mode_returns_raw_lines() -> None:
    f = framer()
    f.set_line_mode(True)
    assert events_of(b"DONE\r\n{5}\r\n\r\n", f) == [Line(b"DONE"), Line(b"{5}"), Line(b"")]
    f.set_line_mode(False)
    assert events_of(b"a NOOP\r\n", f) == [Frame(b"a NOOP")]


def test_mode_switch_between_events() -> None:
    f = framer()
    f.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n")
    assert f.next_event() == Frame(b"a IDLE")
    f.set_line_mode(True)
    assert f.next_event() == Line(b"DONE")
    f.set_line_mode(False)
    assert f.next_event() == Frame(b"b NOOP")


def test_line_mode_overlong() -> None:
    f = framer(max_line=10)
    f.set_line_mode(True)
    assert events_of(b"x" * 30 + b"\r\nDONE\r\n", f) == [
        FrameError(None, "Line too long", None, False),
        Line(b"DONE"),
    ]


def test_discard_buffer() -> None:
    f = framer()
    f.feed(b"a STARTTLS\r\nb LOGIN x y\r\n")
    assert f.next_event() == Frame(b"a STARTTLS")
    f.discard_buffer()
    assert f.next_event() is None
    f.feed(b"c NOOP\r\n")
    assert f.next_event() == Frame(b"c NOOP")


def test_discard_buffer_mid_literal() -> None:
    f = framer()
    f.feed(b"a LOGIN {10}\r\nabc")
    assert f.next_event() == ContinueLiteral()
    assert f.next_event() is None
    assert f.in_command
    f.discard_buffer()
    assert not f.in_command
    f.feed(b"c NOOP\r\n")
    assert f.next_event() == Frame(b"c NOOP")


def test_buffered_bounded_by_command_limit() -> None:
    f = framer(max_command=2000)
    f.feed(b"a X {900}\r\n" + b"x" * 900 + b" {900}\r\n")
    drain(f)
    assert f.buffered <= 2000
    f.feed(b"y" * 900)
    drain(f)
    assert f.buffered <= 2000
    f.feed(b"\r\n")
    assert isinstance(f.next_event(), Frame)
    assert f.buffered == 0


def test_byte_at_a_time_matches_whole() -> None:
    stream = (
        b"a LOGIN {3}\r\nabc {2+}\r\nde\r\n"
        + b"b X "
        + b"q" * 200
        + b"\r\nc APPEND x {2000}\r\nd NOOP\n"
    )
    whole = events_of(stream)
    f = framer()
    pieces: list[FrameEvent] = []
    for i in range(len(stream)):
        f.feed(stream[i : i + 1])
        pieces.extend(drain(f))
    assert pieces == whole
    assert [type(e) for e in whole] == [ContinueLiteral, Frame, FrameError, FrameError, Frame]


@pytest.mark.timeout(10)
def test_tiny_chunks_do_not_rescan_quadratically() -> None:
    f = framer(max_line=200_000)
    line = b"a NOOP " + b"x" * 150_000 + b"\r\n"
    for i in range(0, len(line), 7):
        f.feed(line[i : i + 7])
        f.next_event()
    assert f.next_event() is None  # the last chunk completed it: already returned


def test_large_literal_in_chunks() -> None:
    f = framer(max_literal=10_000_000, max_command=20_000_000)
    body = bytes(range(256)) * 4000
    data = b"a APPEND x {%d}\r\n" % len(body) + body + b"\r\n"
    out = []
    for i in range(0, len(data), 4096):
        f.feed(data[i : i + 4096])
        out.extend(drain(f))
    assert out == [ContinueLiteral(), Frame(b"a APPEND x {%d}\r\n" % len(body) + body)]
