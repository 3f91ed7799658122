"""The selected-mailbox view is an IMailboxListener; it holds back EXPUNGE as RFC 3501 says."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from mailserv.backends.memory import factory as memory
from mailserv.imap.view import SelectedView
from mailserv.interfaces import IMailboxListener


class Session:
    """The two things a view uses of its session."""

    def __init__(self) -> None:
        self.idling = False
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)


def run(coroutine: Any) -> None:
    Deferred.fromCoroutine(coroutine)


def test_view_provides_listener_and_defers_expunges() -> None:
    account = memory.build({}, ".").account("alice")
    box = account.open("INBOX")
    for n in range(3):
        box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None)
    session, other = Session(), object()
    view = SelectedView(session, box, False, box.uids(), [])  # type: ignore[arg-type]
    assert verifyObject(IMailboxListener, view)

    box.store([2], "add", frozenset({"\\Deleted"}), other)
    box.expunge(None, other)
    box.append(b"Subject: new\r\n\r\nbody\r\n", frozenset(), None, other)
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
