"""SORT and UID SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267): the base
subject rules, every key, REVERSE, ties in mailbox order, the search part, ESEARCH answers,
bad input; raw sockets and imapclient on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from imapclient import IMAPClient
from imapserver import Connector

from bench.harness import RawClient
from mailserv.imap import sorting
from mailserv.interfaces import MessageMeta
from mailserv.message.info import MessageInfo
from mailserv.message.subject import base_subject


def mail(
    subject: str | None = None,
    date: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    cc: str | None = None,
    message_id: str | None = None,
    references: str | None = None,
    in_reply_to: str | None = None,
    body: str = "text",
) -> bytes:
    headers = [
        ("Subject", subject),
        ("Date", date),
        ("From", from_),
        ("To", to),
        ("Cc", cc),
        ("Message-ID", message_id),
        ("References", references),
        ("In-Reply-To", in_reply_to),
    ]
    lines = [f"{name}: {value}" for name, value in headers if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def sort(client: RawClient, command: str) -> list[int]:
    response = client.command(command)
    assert response.ok, response.line
    (line,) = response.data("SORT")
    return [int(n) for n in line.split()]


def selected(connect: Connector, messages: list[bytes]) -> RawClient:
    connect.append(messages)
    return connect.selected()


# -- base subject (RFC 5256 2.1) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello", "Hello", False),
        ("Re: Hello", "Hello", True),
        ("RE: re: Re:Hello", "Hello", True),
        ("Fwd: Hello", "Hello", True),
        ("Fw: Hello", "Hello", True),
        ("Re[2]: Hello", "Hello", True),
        ("Re [list]: Hello", "Hello", True),
        ("[list] Re: Hello", "Hello", True),
        ("[list] Hello", "Hello", False),
        ("[list] [other] Re: Hello", "Hello", True),
        ("[only a blob]", "[only a blob]", False),
        ("Re: [only a blob]", "[only a blob]", True),
        ("Hello (fwd)", "Hello", True),
        ("Hello (FWD) (fwd)  ", "Hello", True),
        ("[Fwd: Hello]", "Hello", True),
        ("[fwd: Re: Hello (fwd)]", "Hello", True),
        ("  Hello \t  world  ", "Hello world", False),
        ("Reply: Hello", "Reply: Hello", False),
        ("Re:", "", True),
        ("", "", False),
        ("Re: Fwd: [a] [b]", "[b]", True),
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


# -- over the wire ----------------------------------------------------------------------------


def test_capabilities(raw: RawClient) -> None:
    words = raw.command("CAPABILITY").data("CAPABILITY")[0].decode().upper().split()
    for word in ("SORT", "SORT=DISPLAY", "ESORT"):
        assert word in words


def test_sort_by_subject_uses_the_base_subject(connect: Connector) -> None:
    client = selected(
        connect,
        [
            mail("Re: beta"),  # 1
            mail("alpha"),  # 2
            mail("Fwd: [list] Gamma"),  # 3
            mail("[blob] ALPHA (fwd)"),  # 4
            mail("re: Re: Beta"),  # 5
            mail("[Fwd: alpha]"),  # 6
            mail(None),  # 7: no subject sorts first
        ],
    )
    assert sort(client, "SORT (SUBJECT) UTF-8 ALL") == [7, 2, 4, 6, 1, 5, 3]
    assert sort(client, "SORT (REVERSE SUBJECT) UTF-8 ALL") == [3, 1, 5, 2, 4, 6, 7]


def test_sort_by_date_normalises_zones_and_falls_back(connect: Connector) -> None:
    client = connect.imapclient()
    for message, arrival in [
        (mail("a", "Mon, 01 Jan 2024 12:00:00 +0000"), "2024-02-01 00:00:00"),
        (mail("b", "Mon, 01 Jan 2024 13:00:00 +0200"), "2024-02-01 00:00:00"),  # 11:00 UTC
        (mail("c", None), "2023-12-01 00:00:00"),  # no Date: the internal date
        (mail("d", "not a date"), "2024-06-01 00:00:00"),
        (mail("e", "Mon, 01 Jan 2024 12:00:00 +0000"), "2023-01-01 00:00:00"),  # tie with a
    ]:
        client.append("INBOX", message, (), datetime.fromisoformat(arrival + "+00:00"))
    raw = connect.selected()
    assert sort(raw, "SORT (DATE) UTF-8 ALL") == [3, 2, 1, 5, 4]
    assert sort(raw, "SORT (REVERSE DATE) UTF-8 ALL") == [4, 1, 5, 2, 3]
    assert sort(raw, "SORT (ARRIVAL) UTF-8 ALL") == [5, 3, 1, 2, 4]
    assert sort(raw, "SORT (REVERSE ARRIVAL SUBJECT) UTF-8 ALL") == [4, 1, 2, 3, 5]


def test_sort_by_addresses_size_and_display(connect: Connector) -> None:
    client = selected(
        connect,
        [
            mail("1", from_="Zed <amy@x.org>", to="b@x", cc="c@x", body="x" * 50),
            mail("2", from_="bob@x.org", to="A@x", body="x"),
            mail("3", from_='"=?utf-8?q?Al=C3=AF?=" <zz@x.org>', cc="a@x", body="x" * 20),
            mail("4", from_="undisclosed: ;", to="Bea <c@x>", body="x" * 20),
        ],
    )
    assert sort(client, "SORT (FROM) UTF-8 ALL") == [1, 2, 4, 3]
    assert sort(client, "SORT (TO) UTF-8 ALL") == [3, 2, 1, 4]
    assert sort(client, "SORT (CC) UTF-8 ALL") == [2, 4, 3, 1]
    assert sort(client, "SORT (SIZE) UTF-8 ALL") == [2, 4, 3, 1]
    assert sort(client, "SORT (REVERSE SIZE FROM) UTF-8 ALL") == [1, 3, 4, 2]
    # RFC 5957: the display name, else the address
    assert sort(client, "SORT (DISPLAYFROM) UTF-8 ALL") == [3, 2, 4, 1]
    assert sort(client, "SORT (DISPLAYTO) UTF-8 ALL") == [3, 2, 1, 4]


def test_search_criteria_and_uid_sort(connect: Connector) -> None:
    connect.append([mail("zz", from_="a@x"), mail("yy", from_="b@x"), mail("xx", from_="a@x")])
    raw = connect.selected()
    assert raw.command("STORE 2 +FLAGS (\\Deleted)").ok
    assert raw.command("EXPUNGE").ok
    assert sort(raw, "SORT (SUBJECT) UTF-8 FROM a@x") == [2, 1]
    assert sort(raw, "SORT (SUBJECT) US-ASCII OR FROM a@x 1:*") == [2, 1]
    assert sort(raw, "UID SORT (SUBJECT) UTF-8 ALL") == [3, 1]
    assert sort(raw, "SORT (SUBJECT) UTF-8 SUBJECT nothing-like-this") == []
    client: IMAPClient = connect.imapclient()
    client.select_folder("INBOX")
    assert client.sort(["SUBJECT"]) == [3, 1]
    assert client.sort(["REVERSE", "SUBJECT"], ["FROM", "a@x"]) == [1, 3]


def test_esort(connect: Connector) -> None:
    client = selected(connect, [mail(s) for s in ("c", "a", "b", "d", "e")])
    response = client.command("SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL")
    assert response.ok, response.line
    tag = response.tag.decode()
    (line,) = response.data("ESEARCH")
    assert line.decode() == f'(TAG "{tag}") MIN 2 MAX 5 COUNT 5 ALL 2:3,1,4:5'
    response = client.command("UID SORT RETURN () (REVERSE SUBJECT) UTF-8 ALL")
    (line,) = response.data("ESEARCH")
    assert line.decode().endswith(" UID ALL 5,4,1,3,2")
    response = client.command("SORT RETURN (COUNT MIN) (SUBJECT) UTF-8 SUBJECT none")
    (line,) = response.data("ESEARCH")
    assert line.decode().endswith(") COUNT 0")
    assert not response.data("SORT")


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    "command",
    [
        "SORT SUBJECT UTF-8 ALL",
        "SORT () UTF-8 ALL",
        "SORT (FOO) UTF-8 ALL",
        "SORT (REVERSE) UTF-8 ALL",
        "SORT (REVERSE REVERSE SUBJECT) UTF-8 ALL",
        "SORT (SUBJECT) UTF-8",
        "SORT (SUBJECT)",
        "SORT (SUBJECT) UTF-8 NOSUCHKEY",
        "SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL",
        "SORT RETURN ALL (SUBJECT) UTF-8 ALL",
        "SORT RETURN",
        "SORT ((SUBJECT)) UTF-8 ALL",
    ],
)
def test_bad_input(connect: Connector, command: str) -> None:
    client = selected(connect, [mail("a")])
    response = client.command(command)
    assert response.status == "BAD", response.line
    assert client.command("NOOP").ok


def test_unknown_charset_and_state(connect: Connector) -> None:
    client = selected(connect, [mail("a")])
    response = client.command("SORT (SUBJECT) KOI8-R ALL")
    assert response.status == "NO" and response.code and "BADCHARSET" in response.code
    other = connect.raw()
    assert other.command("SORT (SUBJECT) UTF-8 ALL").status == "BAD"


class _CountedInfo:
    """An info whose sent date costs a count (as a stored message's decoding costs time)."""

    def __init__(self, reads: list[int]) -> None:
        self._reads = reads

    @property
    def sent(self) -> datetime:
        self._reads[0] += 1
        return datetime(2024, 1, 1, tzinfo=UTC)


def test_sort_keys_are_read_a_few_at_a_time() -> None:
    """Between two yields to the reactor a few hundred keys at most are read: reading one
    can decode a whole stored message (20-25 microseconds)."""
    reads = [0]
    when = datetime(2024, 1, 1, tzinfo=UTC)
    metas = [
        MessageMeta(uid, frozenset(), when, 10, 1, cast(MessageInfo, _CountedInfo(reads)))
        for uid in range(1, 1001)
    ]
    work = sorting.keys_of(metas, ["DATE"])
    most = 0
    while True:
        before = reads[0]
        try:
            next(work)
        except StopIteration as done:
            keys = done.value
            break
        most = max(most, reads[0] - before)
    assert reads[0] == len(metas) and keys.uids == [meta.uid for meta in metas]
    assert 0 < most <= 256
