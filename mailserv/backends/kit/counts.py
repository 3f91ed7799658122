"""The counters behind ``IMailbox.status()``, kept as messages come, change and go, so that
SELECT and STATUS cost the same whatever the size of the mailbox."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from mailserv.interfaces import SEEN, MailboxStatus


def new_mailbox_id() -> str:
    """A fresh RFC 8474 MAILBOXID: 128 random bits, ``F`` and 22 URL-safe base64
    characters, unique within any account without a counter kept."""
    return "F" + secrets.token_urlsafe(16)


class Tally:
    """Total size, the UIDs without \\Seen, and the UIDs still RECENT to no session."""

    __slots__ = ("size", "unclaimed", "unseen_uids")

    def __init__(self) -> None:
        self.size = 0
        self.unseen_uids: set[int] = set()
        """The UIDs without \\Seen: STATUS UNSEEN counts them, SEARCH UNSEEN answers from
        them (``flagsets.unseen_nodes``)."""
        self.unclaimed: set[int] = set()

    @property
    def unseen(self) -> int:
        return len(self.unseen_uids)

    def add(self, uid: int, flags: frozenset[str], size: int, recent: bool = True) -> None:
        self.size += size
        if SEEN not in flags:
            self.unseen_uids.add(uid)
        if recent:
            self.unclaimed.add(uid)

    def add_counted(self, size: int, unseen: Iterable[int], recent: Iterable[int]) -> None:
        """Many messages at once: their total size, the unseen UIDs, the recent UIDs."""
        self.size += size
        self.unseen_uids.update(unseen)
        self.unclaimed.update(recent)

    def remove(self, uid: int, size: int) -> None:
        self.size -= size
        self.unseen_uids.discard(uid)
        self.unclaimed.discard(uid)

    def reflag(self, old: frozenset[str], new: frozenset[str], uids: Iterable[int]) -> None:
        """``uids`` went from ``old`` flags to ``new``."""
        if SEEN in old and SEEN not in new:
            self.unseen_uids.update(uids)
        elif SEEN in new and SEEN not in old:
            self.unseen_uids.difference_update(uids)

    def claim(self) -> list[int]:
        """``claim_recent``: the unclaimed UIDs, ascending, now recent to the caller only."""
        claimed = sorted(self.unclaimed)
        self.unclaimed.clear()
        return claimed

    def clear(self) -> None:
        self.size = 0
        self.unseen_uids.clear()
        self.unclaimed.clear()

    def status(
        self,
        uidvalidity: int,
        uidnext: int,
        messages: int,
        highestmodseq: int,
        mailboxid: str | None = None,
    ) -> MailboxStatus:
        return MailboxStatus(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            messages=messages,
            unseen=self.unseen,
            recent=len(self.unclaimed),
            highestmodseq=highestmodseq,
            size=self.size,
            mailboxid=mailboxid,
        )
