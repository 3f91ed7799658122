"""Pipelining, huge sequence sets, malformed input and random command lines: every command
gets an answer, in order, and the connection stays usable (RFC 3501 5.5, 7.1; RFC 7888)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapserver import Connector, User

from bench import messages
from bench.harness import RawClient, Response, ServerProcess, fetches, search_numbers

_TAGGED = re.compile(rb"^([^\s*+]\S*) (OK|NO|BAD)\b", re.I)


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def tags_in_order(client: RawClient, last: str) -> list[bytes]:
    """Read to the tagged response ``last``; every line read (literals inlined)."""
    lines = []
    while True:
        line = client.read_response()
        lines.append(line)
        if line.startswith(last.encode() + b" "):
            return lines


def tagged_lines(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    out = []
    for line in lines:
        match = _TAGGED.match(line)
        if match:
            out.append((match.group(1), match.group(2).upper()))
    return out


# -- pipelining ----------------------------------------------------------------------------


def test_pipelined_commands_answered_in_order(connect: Connector) -> None:
    connect.append([messages.plain(), messages.alternative()])
    client = connect.raw()
    client.send(
        b'p1 NOOP\r\np2 CAPABILITY\r\np3 LIST "" *\r\np4 SELECT INBOX\r\n'
        b"p5 FETCH 1:* (FLAGS)\r\np6 SEARCH ALL\r\np7 STATUS INBOX (MESSAGES)\r\np8 NOOP\r\n"
    )
    lines = tags_in_order(client, "p8")
    expected = [(b"p%d" % i, b"OK") for i in range(1, 9)]
    assert sorted(tagged_lines(lines)) == expected
    # RFC 3501 5.5 would let a server finish independent commands out of order; mailserv
    # promises command order (ARCHITECTURE.md), which clients find easier.
    assert tagged_lines(lines) == expected
    assert any(line.startswith(b"* CAPABILITY") for line in lines)
    assert any(line.startswith(b"* SEARCH 1 2") for line in lines)


def test_pipelined_append_with_literal_plus(connect: Connector) -> None:
    client = connect.raw()
    message = messages.with_attachment()
    client.send(
        b"q1 SELECT INBOX\r\n"
        + b"q2 APPEND INBOX (\\Flagged) {%d+}\r\n%s\r\n" % (len(message), message)
        + b"q3 NOOP\r\n"
        + b"q4 FETCH 1 (FLAGS BODY.PEEK[])\r\n"
        + b"q5 APPEND INBOX {21+}\r\nSubject: x\r\n\r\nhello\r\n\r\n"
        + b"q6 UID SEARCH ALL\r\n"
    )
    lines = tags_in_order(client, "q6")
    assert [t for t, _ in tagged_lines(lines)] == [b"q1", b"q2", b"q3", b"q4", b"q5", b"q6"]
    assert all(status == b"OK" for _, status in tagged_lines(lines)), lines
    assert not any(line.startswith(b"+") for line in lines), "no continuation for LITERAL+"
    fetch_lines = [line for line in lines if re.match(rb"\* 1 FETCH", line)]
    body = fetches(Response(b"", "OK", b"", b"", fetch_lines))[1]["BODY[]"]
    assert body == message


def test_many_pipelined_appends(connect: Connector) -> None:
    client = connect.raw()
    batch = [messages.plain(subject=f"bulk {i}") for i in range(50)]
    responses = client.append_many("INBOX", batch)
    assert all(r.ok for r in responses)
    uids = [int((r.code or "0 0 0").split()[2]) for r in responses]
    assert uids == sorted(uids) and len(set(uids)) == 50
    ok(client, "SELECT INBOX")
    assert search_numbers(ok(client, "SEARCH ALL")) == list(range(1, 51))


def test_pipelined_error_does_not_disturb_neighbours(connect: Connector) -> None:
    client = connect.selected()
    client.send(b"r1 NOOP\r\nr2 FETCH (\r\nr3 BOGUS\r\nr4 NOOP\r\n")
    lines = tags_in_order(client, "r4")
    assert tagged_lines(lines) == [(b"r1", b"OK"), (b"r2", b"BAD"), (b"r3", b"BAD"), (b"r4", b"OK")]


# -- huge sequence sets ----------------------------------------------------------------------


@pytest.fixture
def small_mailbox(connect: Connector) -> tuple[RawClient, list[int]]:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(5)])
    client = connect.raw()
    ok(client, "CREATE Other")
    ok(client, "SELECT INBOX")
    return client, uids


def timed(client: RawClient, command: str) -> tuple[Response, float]:
    started = time.monotonic()
    response = client.command(command)
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        "UID FETCH 1:4294967295 (FLAGS)",
        "UID FETCH 4294967295:1 (UID)",
        "UID STORE 1:4294967295 +FLAGS.SILENT (\\Flagged)",
        "UID SEARCH UID 1:4294967295",
        "UID COPY 1:4294967295 Other",
        "SEARCH UID 1:4294967295 NOT UID 4294967295",
    ],
)
def test_full_uid_range_is_fast(small_mailbox: tuple[RawClient, list[int]], command: str) -> None:
    client, uids = small_mailbox
    response, elapsed = timed(client, command)
    assert response.ok, response.line
    assert elapsed < 2.0, f"{command} took {elapsed:.2f}s"
    if command.startswith("UID FETCH"):
        assert sorted(v["UID"] for v in fetches(response).values()) == uids  # type: ignore[type-var]
    if command.startswith("UID SEARCH"):
        assert sorted(search_numbers(response)) == uids


@pytest.mark.parametrize(
    "command",
    ["FETCH 1:4294967295 (FLAGS)", "STORE 1:4294967295 +FLAGS (\\Seen)", "SEARCH 1:4294967295"],
)
def test_full_sequence_range_answers_fast(
    small_mailbox: tuple[RawClient, list[int]], command: str
) -> None:
    # Beyond the message count: BAD per RFC 3501 9 (seq-number), or the existing ones.
    client, _ = small_mailbox
    response, elapsed = timed(client, command)
    assert elapsed < 2.0, f"{command} took {elapsed:.2f}s"
    assert response.status in ("OK", "BAD", "NO"), response.line
    if response.ok and command.startswith("FETCH"):
        assert sorted(fetches(response)) == [1, 2, 3, 4, 5]
    assert ok(client, "NOOP").ok


def test_uid_beyond_last_is_empty(small_mailbox: tuple[RawClient, list[int]]) -> None:
    client, uids = small_mailbox
    response = ok(client, "UID FETCH 4294967295 (FLAGS)")
    assert not fetches(response)
    response = ok(client, f"UID EXPUNGE {uids[-1] + 1}:4294967295")
    assert not response.numbers("EXPUNGE")


def test_star_in_empty_mailbox(connect: Connector) -> None:
    client = connect.selected()
    assert client.command("FETCH * FLAGS").status in ("BAD", "NO")
    assert client.command("FETCH 1:* FLAGS").status in ("BAD", "NO")
    response = ok(client, "UID FETCH 1:* FLAGS")
    assert not fetches(response)
    assert ok(client, "UID SEARCH ALL").data("SEARCH") == [b""]


# -- malformed input -----------------------------------------------------------------------

TAGGED_NASTY: list[bytes] = [
    b"a1 FETCH 1 (FLAGS",
    b"a1 FETCH 1 FLAGS)",
    b"a1 FETCH 1 ((FLAGS)",
    b"a1 FETCH 1 BODY[HEADER.FIELDS (SUBJECT]",
    b"a1 FETCH 1 BODY[TEXT",
    b"a1 FETCH 1 BODY[]<1>",
    b"a1 FETCH 1 BODY[]<5.x>",
    b"a1 SEARCH (SEEN (UNSEEN)",
    b"a1 SEARCH SEEN)",
    b"a1 STORE 1 +FLAGS (\\Seen",
    b"a1 STATUS INBOX (MESSAGES",
    b'a1 SELECT "unterminated',
    b'a1 SELECT "bad\\q"',
    b"a1 SELECT {x}",
    b"a1 SELECT {-1}",
    b"a1 SELECT {99999999999999999999}",
    b"a1 SELECT {1a}",
    b"a1 NOOP\x00",
    b"a1 SELECT IN\x00BOX",
    b"a1 CREATE \xff\xfe",
    b'a1 CREATE "\xc3\x28"',
    b"a1 SELECT \xe2\x82\xac",
    b"a1 FETCH 0 FLAGS",
    b"a1 FETCH 1:0 FLAGS",
    b"a1 FETCH a:b FLAGS",
    b"a1 FETCH 1,,2 FLAGS",
    b"a1 FETCH -1 FLAGS",
    b"a1 FETCH 1: FLAGS",
    b"a1 FETCH :1 FLAGS",
    b"a1 FETCH 1:2:3 FLAGS",
    b"a1 FETCH 99999999999999999999 FLAGS",
    b"a1 UID FETCH 4294967296 FLAGS",
    b"a1 UID FETCH 1:99999999999999999999999999 FLAGS",
    b"a1 STORE 99999999999999999999 +FLAGS (\\Seen)",
    b"a1 SEARCH LARGER 99999999999999999999",
    b"a1 SEARCH UID 0",
    b"a1 FROBNICATE",
    b"a1 UID NOOP",
    b"a1 UID FROB",
    b"a1 UID",
    b"a1",
    b"a1 ",
    b"a1  NOOP",
    b"a1 " + b"X" * 3000,
    b"a1 LOGIN user pass",
    b"a1 CAPABILITY extra",
    b"a1 NOOP extra",
    b"a1 CHECK extra",
    b"a1 EXPUNGE 1",
    b"a1 COPY 1",
    b"a1 COPY",
    b'a1 RENAME ""',
    b"a1 LIST",
    b'a1 LIST ""',
    b'a1 ID ("odd")',
    b"a1 ENABLE",
    b"a1 STATUS INBOX (NOSUCHITEM)",
    b'a1 APPEND INBOX (\\Seen) "not a date" {3+}\r\nabc',
    b"a1 APPEND INBOX (\\Seen",
    b"a1 APPEND",
    b"a1 SEARCH CHARSET",
    b"a1 SEARCH SINCE 1-Foo-2020",
    b"a1 STORE 1 FLAGS",
    b"a1 STORE 1 BOGUS (\\Seen)",
]

UNTAGGED_NASTY: list[bytes] = [
    b"+ NOOP",
    b"* NOOP",
    b"a*b NOOP",
    b"a%b NOOP",
    b'a"b NOOP',
    b"(a NOOP",
    b"a{b NOOP",
    b"\x00\x01\x02",
    b" NOOP",
    b"\xff\xfe NOOP",
]


def check_rejected(client: RawClient, data: bytes, tag: bytes | None) -> None:
    """Send ``data`` and a NOOP; the junk must get BAD/NO (tagged, or untagged ``* BAD``),
    the NOOP its OK, and no response may leak a traceback."""
    client.send(data + b"\r\nzz9 NOOP\r\n")
    lines = tags_in_order(client, "zz9")
    assert not any(b"Traceback" in line for line in lines), lines
    assert lines[-1].startswith(b"zz9 OK"), lines
    before = lines[:-1]
    rejections = [
        line
        for line in before
        if re.match(rb"^\* (BAD|NO)\b", line, re.I)
        or (tag is not None and re.match(re.escape(tag) + rb" (BAD|NO)\b", line, re.I))
        or (tag is None and re.match(rb"^\S+ (BAD|NO)\b", line, re.I))
    ]
    assert rejections, (data, before)
    assert not any(
        re.match(rb"^\S+ OK\b", line) and not line.startswith(b"* ") for line in before
    ), before


@pytest.fixture(scope="module")
def victim_mailbox(server: ServerProcess, module_user: User) -> str:
    """A mailbox of the module's shared user for the junk-sending tests (each has its own
    connection; junk that happens to be valid only touches this mailbox)."""
    connector = Connector(server, module_user)
    client = connector.raw()
    assert client.command("CREATE Victim").ok
    connector.append([messages.plain(), messages.nested()], mailbox="Victim")
    connector.close()
    return "Victim"


@pytest.fixture
def victim(shared_connect: Connector, victim_mailbox: str) -> RawClient:
    return shared_connect.selected(victim_mailbox)


@pytest.mark.parametrize("data", TAGGED_NASTY, ids=[repr(d)[2:40] for d in TAGGED_NASTY])
def test_malformed_tagged_command(victim: RawClient, data: bytes) -> None:
    check_rejected(victim, data, b"a1")


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize("data", UNTAGGED_NASTY, ids=[repr(d)[2:40] for d in UNTAGGED_NASTY])
def test_malformed_tag(victim: RawClient, data: bytes) -> None:
    check_rejected(victim, data, None)


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "data", [b"a1 NOOP\x00", b"a1 LOGIN a\x00b c", b"+ NOOP", b"a1 FETCH 1 FLAGS"]
)
def test_malformed_before_login(connect: Connector, data: bytes) -> None:
    client = connect.raw(login=False)
    check_rejected(client, data, None if data.startswith(b"+") else b"a1")
    client.login(connect.user.name, connect.user.password)


@pytest.mark.parametrize(
    "data",
    [
        b"d1 SEARCH " + b"(" * 3000 + b"SEEN" + b")" * 3000,
        b"d1 SEARCH " + b"NOT " * 3000 + b"SEEN",
        b"d1 SEARCH " + b"OR SEEN " * 2000 + b"SEEN",
        b"d1 SEARCH " + b"SEEN " * 5000,
        b"d1 FETCH 1 " + b"(" * 3000,
        b"d1 STORE 1 +FLAGS (" + b" ".join(b"kw%d" % i for i in range(3000)) + b")",
        b"d1 FETCH 1:2," + b",".join(b"%d" % (i % 2 + 1) for i in range(5000)) + b" UID",
    ],
    ids=["parens", "not", "or", "many-keys", "open-parens", "many-flags", "long-set"],
)
def test_deep_or_large_commands_are_bounded(victim: RawClient, data: bytes) -> None:
    # Valid or not, each gets a tagged answer without a crash; the session goes on.
    victim.send(data + b"\r\nzz9 NOOP\r\n")
    lines = tags_in_order(victim, "zz9")
    assert not any(b"Traceback" in line for line in lines)
    assert lines[-1].startswith(b"zz9 OK")
    answered = tagged_lines(lines[:-1])
    assert [t for t, _ in answered] == [b"d1"] or any(line.startswith(b"* BAD") for line in lines)


def test_server_alive_after_malformed(server: ServerProcess, victim: RawClient) -> None:
    for data in TAGGED_NASTY[:10]:
        victim.send(data + b"\r\n")
    assert ok(victim, "NOOP").ok
    assert server.alive


# -- random command lines ------------------------------------------------------------------

WORDS = [
    "NOOP", "CAPABILITY", "CHECK", "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH",
    "UID SEARCH", "COPY", "UID COPY", "MOVE", "UID MOVE", "LIST", "LSUB", "STATUS", "CREATE",
    "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "EXAMINE", "SELECT", "ID", "ENABLE", "NAMESPACE",
    "EXPUNGE", "UID EXPUNGE", "CLOSE", "UNSELECT", "DELETE", "APPEND", "XYZZY", "UID", "",
]  # fmt: skip
ARGS = [
    "1", "*", "1:*", "2:3", "0", "4294967295", "4294967296", "1,2", "INBOX", '"INBOX"', '""',
    "(", ")", "()", "[", "]", "<0.5>", "FLAGS", "BODY[]", "BODY.PEEK[HEADER.FIELDS (FROM)]",
    "BODY[1.MIME]", "\\Seen", "\\Deleted", "$Kw", "+FLAGS", "-FLAGS.SILENT", "FLAGS", "UID",
    "ALL", "OR", "NOT", "SEEN", "SUBJECT", "FROM", "SINCE", "1-Jan-2020", "CHARSET", "UTF-8",
    "NIL", "%", "*", '"x\\"y"', "MESSAGES", "UIDNEXT", "(FLAGS)", "(UID FLAGS)", "ENVELOPE",
    "BODYSTRUCTURE", "Folder", "a/b", '"&AOk-t&AOk-"', "&", "~", "\\", '"', "-1", "1:",
]  # fmt: skip
RANDOM_BYTES = st.binary(min_size=1, max_size=12).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"{", b"") or b"x"
)
ARG = st.one_of(st.sampled_from(ARGS).map(str.encode), RANDOM_BYTES)
LINE = st.tuples(st.sampled_from(WORDS), st.lists(ARG, max_size=6)).map(
    lambda t: b" ".join([t[0].encode(), *t[1]]).strip()
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)
@given(line=LINE)
def test_random_command_lines(connect: Connector, server: ServerProcess, line: bytes) -> None:
    # One connection (and fresh user) for all examples: state built by earlier lines stays.
    victim = connect.kept(fill=[messages.plain(), messages.nested(), messages.alternative()])
    victim.send(b"h1 " + line + b"\r\nzz9 NOOP\r\n")
    try:
        lines = tags_in_order(victim, "zz9")
    except (EOFError, ConnectionError) as exc:
        raise AssertionError(
            f"connection lost after {line!r}; server alive={server.alive}"
        ) from exc
    assert not any(b"Traceback" in seen for seen in lines), lines
    assert lines[-1].startswith(b"zz9 OK"), (line, lines)
    answered = [t for t, _ in tagged_lines(lines[:-1])]
    assert answered == [b"h1"] or any(seen.startswith(b"* BAD") for seen in lines), (line, lines)
