"""The selected-mailbox view is an IMailboxListener; it holds back EXPUNGE as RFC 3501 says."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailserv.backends.memory import factory as memory
from mailserv.imap.view import SelectedView
from mailserv.interfaces import IMailboxListener, StoreMode
from mailserv.testing import resolve


class Session:
    """The three things a view uses of its session."""

    def __init__(self) -> None:
        self.idling = False
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def disconnect(self, text: str) -> None:
        self.out.append(b"* BYE " + text.encode() + b"\r\n")


def run(coroutine: Any) -> None:
    Deferred.fromCoroutine(coroutine)


def test_view_provides_listener_and_defers_expunges() -> None:
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(3):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    session, other = Session(), object()
    view = SelectedView(session, box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert verifyObject(IMailboxListener, view)

    resolve(box.store([2], StoreMode.ADD, frozenset({"\\Deleted"}), other))
    resolve(box.expunge(None, other))
    resolve(box.append(b"Subject: new\r\n\r\nbody\r\n", frozenset(), None, other))
    run(view.flush(expunges=False))  # after FETCH/STORE/SEARCH: no EXPUNGE yet
    sent = b"".join(session.out)
    assert b"EXPUNGE" not in sent
    assert b"* 4 EXISTS" in sent
    assert b"* 2 FETCH (UID 2 FLAGS (\\Deleted))" in sent

    session.out.clear()
    run(view.flush(expunges=True))
    assert b"".join(session.out) == b"* 2 EXPUNGE\r\n"
    assert view.uids == [1, 3, 4]
    view.close()


def test_sequence_numbers_of_uids_with_and_without_gaps() -> None:
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(6):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    dense = SelectedView(Session(), box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert dense.seqs_of([0, 2, 3, 6, 7]) == [2, 3, 6]
    resolve(box.store([2, 5], StoreMode.ADD, frozenset({"\\Deleted"}), None))
    resolve(box.expunge(None, None))
    gapped = SelectedView(Session(), box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    assert gapped.uids == [1, 3, 4, 6]
    assert gapped.seqs_of([1, 2, 4, 5, 6, 9]) == [1, 3, 4]
    assert gapped.seqs_of([]) == []


def test_a_lost_mailbox_ends_the_session() -> None:
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    session = Session()
    view = SelectedView(session, box, False, [], [])  # type: ignore[arg-type]
    view.mailbox_lost(box, "gone upstream")
    assert session.out == [b"* BYE Mailbox lost: gone upstream\r\n"]
