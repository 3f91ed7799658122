"""Server-side search is an optional, declared ability (``ISearchableMailbox``): the engine
asks a mailbox to search only when it provides that interface, never because it happens to
have a ``search`` method."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zope.interface import implementer

from mailserv.backends import maildir, memory, sql
from mailserv.backends.proxy.mailbox import ProxyMailbox
from mailserv.interfaces import IMailbox, ISearchableMailbox
from mailserv.search import UNSEEN, All, SearchProgram, backend_search
from mailserv.testing import message, resolve


class _Asked:
    """A mailbox whose ``search`` answers UID 7 and records that it was asked."""

    def __init__(self) -> None:
        self.asked: list[SearchProgram] = []

    async def search(self, query: SearchProgram, uids: Sequence[int]) -> list[int]:
        self.asked.append(query)
        return [7]


@implementer(IMailbox)
class _Undeclared(_Asked):
    """Has the method, does not declare the ability."""


@implementer(ISearchableMailbox)
class _Declared(_Asked):
    pass


def test_a_mailbox_that_does_not_declare_search_is_not_asked() -> None:
    box = _Undeclared()
    assert resolve(backend_search(box, UNSEEN, [1, 7])) is None
    assert box.asked == []


def test_a_mailbox_that_declares_search_is_asked() -> None:
    box = _Declared()
    assert resolve(backend_search(box, UNSEEN, [1, 7])) == [7]
    assert box.asked == [UNSEEN]


def test_search_is_no_longer_part_of_every_mailbox() -> None:
    assert "search" not in IMailbox.names()
    assert "search" in ISearchableMailbox.names()
    assert ISearchableMailbox.extends(IMailbox)


def test_which_built_in_backends_search_themselves(tmp_path: Path) -> None:
    """Memory answers flags and internal dates from kept sets (the engine the rest);
    maildir answers from its index, SQL in SQL; the proxy passes what it can to the
    upstream server."""
    assert ISearchableMailbox.implementedBy(ProxyMailbox)
    assert ISearchableMailbox.implementedBy(memory.MemoryMailbox)
    assert ISearchableMailbox.implementedBy(maildir.MaildirMailbox)
    assert ISearchableMailbox.implementedBy(sql.SqlMailbox)
    factory = sql.SqlBackendFactory(database=sql.inline_database)
    backend = factory.build({"sqlite-sync": "normal"}, str(tmp_path), None)  # type: ignore[arg-type]
    resolve(backend.start())
    try:
        inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
        uid = resolve(inbox.append(message(1), frozenset(), None, None)).uid
        assert resolve(backend_search(inbox, SearchProgram(All()), [uid])) == [uid]
    finally:
        resolve(backend.stop())
