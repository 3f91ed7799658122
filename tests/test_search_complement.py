"""NOT of a key the backend only narrows down (HEADER of a field its index keeps no column
of): the backend declines the NOT, since the complement of a superset is no answer, and the
engine answers it as the mailbox less the key's matches, evaluating the key on its
candidates alone rather than reading every message (5 s at 100,000 before).  SQL backend,
transactions inline; the answers of every backend: tests/test_protocol_search.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlsession import Send, inline_session
from test_sql_backend import url  # noqa: F401

from mailserv.backends.sql.db import InlineDatabase

COUNT = 60
TAGGED = {7, 21, 44}


def message(n: int) -> bytes:
    tag = b"X-Tag: blue sky\r\n" if n in TAGGED else b""
    other = b"X-Other: blue\r\n" if n % 10 == 0 else b""
    return b"From: a@example.org\r\nSubject: note %d\r\n%s%s\r\nblue body %d\r\n" % (
        n,
        tag,
        other,
        n,
    )


@pytest.fixture
def send(url: str, tmp_path: Path) -> Iterator[Send]:  # noqa: F811
    send, close = inline_session(url, tmp_path)
    for n in range(1, COUNT + 1):
        literal = message(n)
        assert b"OK [APPENDUID" in send(b"b APPEND INBOX {%d+}\r\n%s" % (len(literal), literal))
    assert b"c OK" in send(b"c SELECT INBOX")
    yield send
    close()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The UIDs of every message the transactions from now on read whole (``fetch``)."""
    read: list[int] = []
    real = InlineDatabase.call

    def counted(self: InlineDatabase, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if fn.__name__ in ("fetch", "fetch_with_sizes"):
            read.extend(args[1])
        return real(self, fn, *args, **kw)

    monkeypatch.setattr(InlineDatabase, "call", counted)
    return read


def numbers(reply: bytes) -> list[int]:
    line = next(line for line in reply.split(b"\r\n") if line.startswith(b"* SEARCH"))
    return [int(n) for n in line.split()[2:]]


def test_not_header_reads_only_the_candidates(send: Send, fetched: list[int]) -> None:
    reply = send(b"d UID SEARCH NOT HEADER X-Tag blue")
    assert b"d OK" in reply
    assert numbers(reply) == [n for n in range(1, COUNT + 1) if n not in TAGGED]
    assert sorted(set(fetched)) == sorted(TAGGED)  # the candidates: field and text both there
    fetched.clear()
    reply = send(b"e SEARCH NOT (HEADER X-Tag sky)")
    assert numbers(reply) == [n for n in range(1, COUNT + 1) if n not in TAGGED]
    assert sorted(set(fetched)) == sorted(TAGGED)


def test_not_of_a_candidate_that_fails_keeps_it(send: Send, fetched: list[int]) -> None:
    # X-Other holds "blue" where it is there, but X-Tag holds no "green": every candidate
    # of the key (X-Tag's messages) is evaluated, none matches, so all are answered.
    reply = send(b"d UID SEARCH NOT HEADER X-Tag green")
    assert numbers(reply) == list(range(1, COUNT + 1))
    assert set(fetched) <= TAGGED
    fetched.clear()
    reply = send(b"e UID SEARCH NOT HEADER X-Other blue")
    assert numbers(reply) == [n for n in range(1, COUNT + 1) if n % 10]
    assert sorted(set(fetched)) == list(range(10, COUNT + 1, 10))


def test_a_not_beside_other_keys_is_evaluated_as_before(send: Send) -> None:
    reply = send(b'd UID SEARCH NOT HEADER X-Tag blue SUBJECT "note 2"')
    assert numbers(reply) == [2, 20, *range(22, 30)]  # 21 is tagged
    reply = send(b"e UID SEARCH OR NOT HEADER X-Tag blue SUBJECT zebra")
    assert numbers(reply) == [n for n in range(1, COUNT + 1) if n not in TAGGED]
