"""What the memory backend promises beyond the shared contract (see test_backend_contract)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from mailserv.backends import memory
from mailserv.backends.memory import MemoryBackend, MemoryBackendFactory, MemoryMailbox
from mailserv.errors import BackendOptionError
from mailserv.interfaces import StoreMode
from mailserv.testing import Recorder, resolve

SEEN = frozenset({"\\Seen"})
DELETED = frozenset({"\\Deleted"})


def message(n: int) -> bytes:
    return b"Subject: Note %d\r\nMessage-ID: <%d@example.org>\r\n\r\nBody %d\r\n" % (n, n, n)


@pytest.fixture
def backend() -> MemoryBackend:
    """On the global reactor, which ``resolve`` turns: a big change gives way to it."""
    from twisted.internet import reactor

    return memory.factory.build({}, "/nonexistent", reactor)


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


def test_copies_share_bytes_and_parsed_info(inbox: MemoryMailbox) -> None:
    uid = resolve(inbox.append(message(1), frozenset(), None, None)).uid
    ((_, copy),) = resolve(inbox.copy([uid], "INBOX", None)).pairs
    assert resolve(inbox.content(copy)) is resolve(inbox.content(uid))
    original, duplicate = resolve(inbox.fetch([uid, copy]))
    assert duplicate.info is original.info


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
