"""SELECT and STATUS on the SQL backend read the mailbox once: the statement that opens it
(``hierarchy.open_with_look``) reads its status columns too, and the ``status()`` right
after answers from them (``SqlMailbox.offer``) unless an event was told meanwhile, the UID
list kept is not current, or messages wait to be claimed for \\Recent.  Mixed load at 20k:
a SELECT was two round trips queued behind the database threads.  Transactions inline,
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlsession import Send, count_transactions, inline_session
from test_sql_backend import resolve, started, url  # noqa: F401

from mailserv.backends.sql import mailbox as sql_mailbox
from mailserv.backends.sql import reads
from mailserv.interfaces import SEEN, StoreMode


def message(n: int) -> bytes:
    return b"From: a@example.org\r\nSubject: note %d\r\n\r\nbody %d\r\n" % (n, n)


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offer's age limit is not what these tests look at (but the last one): a loaded
    machine's pause between the opening read and ``status()`` must not decide them."""
    monkeypatch.setattr(sql_mailbox, "OFFER_SECONDS", 3600.0)


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return count_transactions(monkeypatch)


@pytest.fixture
def send(url: str, tmp_path: Path) -> Iterator[Send]:  # noqa: F811
    """One logged-in IMAP session over the backend, in process."""
    send, close = inline_session(url, tmp_path)
    yield send
    close()


def test_select_and_status_read_the_mailbox_once(send: Send, transactions: list[str]) -> None:
    for n in range(3):
        literal = message(n)
        assert b"OK [APPENDUID" in send(b"b APPEND INBOX {%d+}\r\n%s" % (len(literal), literal))
    assert b"c OK [READ-WRITE]" in send(b"c SELECT INBOX")  # claims \Recent, keeps the UIDs
    assert b"OK" in send(b"d STORE 2 +FLAGS (\\Seen)")
    assert b"e OK" in send(b"e UNSELECT")
    transactions.clear()
    reply = send(b"f SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in reply and b"[UNSEEN 1]" in reply and b"[UIDNEXT 4]" in reply
    assert b"f OK [READ-WRITE]" in reply
    assert transactions == ["open_with_look"]
    transactions.clear()
    reply = send(b"g STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
    assert b"(MESSAGES 3 UNSEEN 2 UIDNEXT 4)" in reply, reply
    assert transactions == ["open_with_look"]


def test_the_offer_answers_as_a_read_of_its_own(
    url: str,  # noqa: F811
    tmp_path: Path,
    transactions: list[str],
) -> None:
    """In each state the status (and the first unseen UID) the opening read gives is the one
    a read of its own gives."""
    backend = started(url, tmp_path)
    try:
        account = resolve(backend.account("alice"))
        box = resolve(account.open("INBOX"))
        uids = [resolve(box.append(message(n), frozenset(), None, None)).uid for n in range(6)]
        resolve(box.claim_recent())
        resolve(box.status())
        resolve(box.uids())  # the UID list is kept
        changes = [
            (uids[:2], StoreMode.ADD),  # unseen from the third
            (uids[3:4], StoreMode.ADD),  # two runs
            (uids, StoreMode.ADD),  # none unseen
            (uids[1:2], StoreMode.REMOVE),
        ]
        for chosen, mode in changes:
            resolve(box.store(chosen, mode, frozenset({SEEN}), None))
            transactions.clear()
            opened = resolve(account.open("INBOX"))
            status = resolve(opened.status())
            first = resolve(opened.first_unseen())
            assert transactions == ["open_with_look"]  # the offer answered both
            read = resolve(backend.db.run(reads.look, opened.id, None))
            assert status == read.status
            assert first == resolve(backend.db.run(reads.first_unseen, opened.id))
    finally:
        resolve(backend.stop())


def test_an_event_told_after_the_opening_read_makes_status_read_again(
    url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    backend = started(url, tmp_path)
    try:
        account = resolve(backend.account("alice"))
        box = resolve(account.open("INBOX"))
        resolve(box.append(message(1), frozenset(), None, None))
        resolve(box.claim_recent())
        resolve(box.status())
        resolve(box.uids())
        opened = resolve(account.open("INBOX"))
        assert opened._offered is not None
        resolve(opened.append(message(2), frozenset(), None, None))  # told: a message came
        resolve(opened.claim_recent())
        assert resolve(opened.status()).messages == 2
        opened = resolve(account.open("INBOX"))
        resolve(opened.store([1], StoreMode.ADD, frozenset({SEEN}), None))  # told: flags
        status = resolve(opened.status())
        assert (status.unseen, status.highestmodseq) == (1, resolve(box.status()).highestmodseq)
    finally:
        resolve(backend.stop())


def test_an_offer_older_than_its_limit_is_read_again(
    send: Send, transactions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``status()`` that comes later than ``OFFER_SECONDS`` after the opening read reads
    again (another frontend's change may be on its way to this process)."""
    literal = message(1)
    assert b"OK [APPENDUID" in send(b"b APPEND INBOX {%d+}\r\n%s" % (len(literal), literal))
    assert b"c OK" in send(b"c SELECT INBOX")
    monkeypatch.setattr(sql_mailbox, "OFFER_SECONDS", 0.0)
    transactions.clear()
    assert b"(MESSAGES 1)" in send(b"d STATUS INBOX (MESSAGES)")
    assert transactions == ["open_with_look", "look"]
