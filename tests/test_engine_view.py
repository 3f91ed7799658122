"""The selected-mailbox view is an IMailboxListener; it holds back EXPUNGE as RFC 3501 says."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailserv.backends.memory import factory as memory
from mailserv.imap.view import SelectedView
from mailserv.interfaces import FlagChange, IMailboxListener, StoreMode
from mailserv.slicing import TimeSlices
from mailserv.testing import resolve


class Session:
    """The things a view uses of its session."""

    def __init__(self) -> None:
        self.idling = False
        self.enabled: set[str] = set()  # no ENABLE: EXPUNGE, and FETCH without MODSEQ
        self.out: list[bytes] = []
        self.services = SimpleNamespace(clock=Clock())  # slices of 4 ms: never used up here

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


def three_messages() -> tuple[Any, SelectedView, Session]:
    account = resolve(memory.build({}, ".", Clock()).account("alice"))
    box = resolve(account.open("INBOX"))
    for n in range(3):
        resolve(box.append(b"Subject: %d\r\n\r\nbody\r\n" % n, frozenset(), None, None))
    session = Session()
    view = SelectedView(session, box, False, resolve(box.uids()), [])  # type: ignore[arg-type]
    return box, view, session


def test_a_flag_update_older_than_what_was_sent_is_dropped() -> None:
    """Events may come late (a backend answering from threads): queued or arriving after the
    newer flags were sent, an older update is never written."""
    box, view, session = three_messages()
    other = object()
    older = FlagChange(1, frozenset({"\\Seen"}), 10)
    view.flags_changed(box, [older], other)  # queued
    view.flags_with_recent(1, frozenset({"\\Seen", "\\Flagged"}), 11)  # a STORE's answer
    run(view.flush(expunges=True))
    assert session.out == []
    view.flags_changed(box, [FlagChange(2, frozenset({"\\Seen"}), 12)], other)
    run(view.own_changes([FlagChange(2, frozenset({"\\Answered"}), 13)], TimeSlices(Clock())))
    view.flags_changed(box, [older], other)  # arriving after
    run(view.flush(expunges=True))
    assert session.out == []
    view.flags_changed(box, [FlagChange(1, frozenset(), 14)], other)  # newer: sent
    run(view.flush(expunges=True))
    assert session.out == [b"* 1 FETCH (UID 1 FLAGS ())\r\n"]


def test_a_message_expunged_before_it_was_announced_is_never_announced() -> None:
    box, view, session = three_messages()
    other = object()
    view.messages_added(box, [4], other)
    assert view.remove([4]) == []  # our EXPUNGE took it before any EXISTS
    run(view.flush(expunges=True))
    view.messages_expunged(box, [6], other)  # the expunge event before the append's
    run(view.flush(expunges=True))
    view.messages_added(box, [5, 6], other)
    view.messages_added(box, [4], other)
    run(view.flush(expunges=True))
    assert session.out == [b"* 4 EXISTS\r\n* 3 RECENT\r\n"]
    assert view.uids == [1, 2, 3, 5]
    view.messages_added(box, [7], other)
    view.messages_expunged(box, [7], other)  # both pending: neither is sent
    run(view.flush(expunges=False))
    assert view.uids == [1, 2, 3, 5]
    assert session.out == [b"* 4 EXISTS\r\n* 3 RECENT\r\n"]


def test_nothing_is_written_for_a_closed_view_or_after_idle() -> None:
    box, view, session = three_messages()
    session.idling = True
    view.messages_expunged(box, [2], object())  # while IDLE: at once
    assert session.out == [b"* 2 EXPUNGE\r\n"]
    session.idling = False
    view.close()
    view.messages_added(box, [9], object())
    run(view.flush(expunges=True))
    assert session.out == [b"* 2 EXPUNGE\r\n"]
