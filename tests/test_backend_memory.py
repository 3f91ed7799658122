"""What the memory backend promises beyond the shared contract (see test_backend_contract)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs

from mailserv.backends import memory
from mailserv.backends.kit import textindex
from mailserv.backends.memory import MemoryBackend, MemoryBackendFactory, MemoryMailbox
from mailserv.errors import BackendOptionError
from mailserv.interfaces import StoreMode
from mailserv.testing import Recorder, resolve

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


def message(n: int) -> bytes:
    return b"Subject: Note %d\r\nMessage-ID: <%d@example.org>\r\n\r\nBody %d\r\n" % (n, n, n)


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    """On the global reactor, which ``resolve`` turns: a big change gives way to it.
    Stopped after the test, so its mailboxes' texts are not indexed in later tests' turns."""
    from twisted.internet import reactor

    built = memory.factory.build({}, "/nonexistent", reactor)
    yield built
    resolve(built.stop())


@pytest.fixture
def inbox(backend: MemoryBackend) -> MemoryMailbox:
    return resolve(resolve(backend.account("alice")).open("INBOX"))


@pytest.fixture
def big(inbox: MemoryMailbox) -> MemoryMailbox:
    """16384 messages, made by doubling with COPY so no time goes into parsing."""
    resolve(inbox.append(message(1), frozenset(), None, None))
    for _ in range(14):
        resolve(inbox.copy(resolve(inbox.uids()), "INBOX", None))
    resolve(inbox.claim_recent())
    return inbox


def test_factory_constant() -> None:
    assert isinstance(memory.factory, MemoryBackendFactory)
    assert memory.factory.name == "memory"
    assert dict(memory.factory.options) == {}
    with pytest.raises(BackendOptionError, match="'path'"):
        memory.factory.build({"path": "/tmp"}, "/tmp", Clock())


def test_stopped_or_deleted_mailboxes_leave_the_reactor_alone() -> None:
    """New messages are indexed in the background on the backend's reactor; once their
    mailbox is deleted, or the backend stopped, nothing of it waits there any more."""
    clock = Clock()
    backend = memory.factory.build({}, "/nonexistent", clock)
    account = resolve(backend.account("alice"))
    resolve(account.create("Old"))
    old = resolve(account.open("Old"))
    for n in range(1, 400):
        resolve(old.append(message(n), frozenset(), None, None))
    clock.advance(1)
    assert clock.getDelayedCalls()  # being indexed, a slice at a time
    resolve(account.delete("Old"))
    clock.advance(textindex.LONGEST_PAUSE)  # the pause running ends, and the loop with it
    clock.advance(textindex.LONGEST_PAUSE)
    assert not clock.getDelayedCalls()
    inbox = resolve(account.open("INBOX"))
    resolve(inbox.append(message(400), frozenset(), None, None))
    assert clock.getDelayedCalls()
    resolve(backend.stop())
    assert not clock.getDelayedCalls()


def test_backend_basics(backend: MemoryBackend) -> None:
    resolve(backend.start())
    resolve(backend.stop())
    assert backend.credentials_checker() is None  # type: ignore[func-returns-value]
    assert resolve(backend.account("alice")) is resolve(backend.account("alice"))


def test_every_session_shares_one_mailbox_object(backend: MemoryBackend) -> None:
    first = resolve(resolve(backend.account("alice")).open("INBOX"))
    assert resolve(resolve(backend.account("alice")).open("INBOX")) is first


def test_uidvalidity_comes_from_the_clock(inbox: MemoryMailbox) -> None:
    assert abs(resolve(inbox.status()).uidvalidity - time.time()) < 60


class SlowClock(Clock):
    """A clock on which every reading is a second after the last: any piece of work
    looks long, so whatever pauses between pieces waits for a turn of it."""

    def seconds(self) -> float:
        self.advance(1.0)
        return super().seconds()


def test_one_append_takes_no_turn_however_long_its_parse() -> None:
    """A single APPEND is stored in the turn it runs in (only a batch pauses between its
    messages): on a slow machine, a pause after the only parse waited for a turn."""
    clock = SlowClock()
    account = resolve(memory.factory.build({}, "/nonexistent", clock).account("alice"))
    box = resolve(account.open("INBOX"), wait=False)
    assert resolve(box.append(message(1), frozenset(), None, None), wait=False).uid == 1
    assert list(resolve(box.uids(), wait=False)) == [1]


def test_copies_share_bytes_and_parsed_info(inbox: MemoryMailbox) -> None:
    uid = resolve(inbox.append(message(1), frozenset(), None, None)).uid
    ((_, copy),) = resolve(inbox.copy([uid], "INBOX", None)).pairs
    assert resolve(inbox.content(copy)) is resolve(inbox.content(uid))
    original, duplicate = resolve(inbox.fetch([uid, copy]))
    assert duplicate.info is original.info


def test_a_store_leaves_what_fetch_gave_earlier_as_it_was(inbox: MemoryMailbox) -> None:
    """The mailbox's records are its own: the ``MessageMeta`` given out is never changed."""
    uid = resolve(inbox.append(message(1), frozenset(), None, None)).uid
    (before,) = resolve(inbox.fetch([uid]))
    resolve(inbox.store([uid], StoreMode.ADD, SEEN, None))
    (after,) = resolve(inbox.fetch([uid]))
    assert (before.flags, after.flags) == (frozenset(), SEEN)
    assert after.modseq > before.modseq
    assert (after.savedate, after.info, after.size) == (before.savedate, before.info, before.size)


def test_rename_keeps_the_mailbox_object(backend: MemoryBackend) -> None:
    account = resolve(backend.account("alice"))
    resolve(account.create("a/b"))
    inner = resolve(account.open("a/b"))
    resolve(account.rename("a", "z"))
    assert resolve(account.open("z/b")) is inner and inner.name == "z/b"


def test_delete_tells_sessions_that_still_have_it_open(backend: MemoryBackend) -> None:
    account = resolve(backend.account("alice"))
    resolve(account.create("Gone"))
    box = resolve(account.open("Gone"))
    uid = resolve(box.append(message(1), frozenset(), None, None)).uid
    listener = Recorder()
    box.add_listener(listener)
    resolve(account.delete("Gone"))
    assert listener.events == [("expunged", [uid], None)]


def test_repeated_uids_are_taken_once(inbox: MemoryMailbox) -> None:
    uid = resolve(inbox.append(message(1), DELETED, None, None)).uid
    assert len(resolve(inbox.copy([uid, uid], "INBOX", None)).pairs) == 1
    assert len(resolve(inbox.move([uid, uid], "INBOX", None)).pairs) == 1
    assert resolve(inbox.expunge([uid + 1, uid + 1], None)) == [uid + 1]


def test_a_failing_listener_is_logged_and_others_still_hear(inbox: MemoryMailbox) -> None:
    class Broken(Recorder):
        def messages_added(self, mailbox: Any, uids: Any, origin: object) -> None:
            raise RuntimeError("boom")

    healthy = Recorder()
    inbox.add_listener(Broken())
    inbox.add_listener(healthy)
    with capturedLogs() as events:
        resolve(inbox.append(message(1), frozenset(), None, None))
    assert [kind for kind, _, _ in healthy.events] == ["added"]
    assert any(e.get("log_failure") for e in events)


def test_adding_a_listener_twice_delivers_once(inbox: MemoryMailbox) -> None:
    listener = Recorder()
    inbox.add_listener(listener)
    inbox.add_listener(listener)
    resolve(inbox.append(message(1), frozenset(), None, None))
    assert len(listener.events) == 1
    inbox.remove_listener(listener)
    inbox.remove_listener(listener)


def test_bulk_operations_on_many_messages(big: MemoryMailbox) -> None:
    """Counters stay right through whole-mailbox operations (bench/ measures their speed)."""
    uids = resolve(big.uids())
    assert len(uids) == 16384
    assert len(resolve(big.fetch(uids))) == 16384
    resolve(big.store(uids, StoreMode.ADD, SEEN, None))
    assert resolve(big.status()).unseen == 0
    resolve(big.store(uids[::2], StoreMode.ADD, DELETED, None))
    resolve(big.expunge(None, None))
    assert resolve(big.status()).messages == 8192


def test_big_changes_give_way_to_the_reactor(big: MemoryMailbox) -> None:
    """A STORE, COPY or EXPUNGE of 16k messages lets other work run before it completes
    (before: each ran to its end in one go, holding up every other session)."""
    from twisted.internet import reactor

    uids = resolve(big.uids())
    changes = [
        lambda: big.store(uids, StoreMode.ADD, DELETED, None),
        lambda: big.copy(uids, "INBOX", None),
        lambda: big.expunge(None, None),
    ]
    for change in changes:
        others: list[int] = []
        reactor.callLater(0, others.append, 1)
        done = Deferred.fromCoroutine(change())
        assert not done.called  # it gave way...
        resolve(done)
        assert others == [1]  # ...and the other work ran meanwhile
    assert resolve(big.status()).messages == 0  # the copies kept \Deleted: all went


def test_overlapping_stores_take_turns_in_the_lane(big: MemoryMailbox) -> None:
    """Two sessions' STOREs over every message, the second sent while the first is under
    way: one runs after the other, so every message ends with the second one's flags and
    modseq, HIGHESTMODSEQ is that modseq, and the events come in that order."""
    listener = Recorder()
    big.add_listener(listener)
    uids = resolve(big.uids())
    before = resolve(big.status()).highestmodseq
    first = Deferred.fromCoroutine(big.store(uids, StoreMode.ADD, SEEN, "first"))
    second = Deferred.fromCoroutine(big.store(uids, StoreMode.REMOVE, SEEN, "second"))
    assert not first.called and not second.called
    one, two = resolve(first), resolve(second)
    assert {c.modseq for c in one.changed} == {before + 1}
    assert {c.modseq for c in two.changed} == {before + 2}
    assert len(one.changed) == len(two.changed) == len(uids)
    metas = resolve(big.fetch(uids))
    assert {(m.flags, m.modseq) for m in metas} == {(frozenset(), before + 2)}
    status = resolve(big.status())
    assert (status.unseen, status.highestmodseq) == (len(uids), before + 2)
    assert [origin for _, _, origin in listener.events] == ["first", "second"]


def test_highestmodseq_moves_once_a_sliced_store_is_whole(big: MemoryMailbox) -> None:
    """A reader between two slices of a STORE is not told a HIGHESTMODSEQ whose messages
    are not all there yet (a client would skip the rest when it syncs from it)."""
    from twisted.internet import reactor

    uids = resolve(big.uids())
    before = resolve(big.status()).highestmodseq
    # One turn first: the fixture's COPYs left their next turn scheduled (the reactor stood
    # still since), which would resume the STORE before the reader below, however late it
    # paused; a running reactor turns between the two.
    resolve(deferLater(reactor, 0, lambda: None))
    seen: list[int] = []
    reactor.callLater(0, lambda: seen.append(resolve(big.status(), wait=False).highestmodseq))
    resolve(big.store(uids, StoreMode.ADD, SEEN, None))
    assert seen == [before] and resolve(big.status()).highestmodseq == before + 1
