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
    """Total size, unseen messages, and the UIDs still RECENT to no session."""

    __slots__ = ("size", "unclaimed", "unseen")

    def __init__(self) -> None:
        self.size = self.unseen = 0
        self.unclaimed: set[int] = set()

    def add(self, uid: int, flags: frozenset[str], size: int, recent: bool = True) -> None:
        self.size += size
        self.unseen += SEEN not in flags
        if recent:
            self.unclaimed.add(uid)

    def add_counted(self, size: int, unseen: int, recent: Iterable[int]) -> None:
        """Many messages at once: their total size, how many are unseen, the recent UIDs."""
        self.size += size
        self.unseen += unseen
        self.unclaimed.update(recent)

    def remove(self, uid: int, flags: frozenset[str], size: int) -> None:
        self.size -= size
        self.unseen -= SEEN not in flags
        self.unclaimed.discard(uid)

    def reflag(self, old: frozenset[str], new: frozenset[str]) -> None:
        self.unseen += (SEEN in old) - (SEEN in new)

    def claim(self) -> list[int]:
        """``claim_recent``: the unclaimed UIDs, ascending, now recent to the caller only."""
        claimed = sorted(self.unclaimed)
        self.unclaimed.clear()
        return claimed

    def clear(self) -> None:
        self.size = self.unseen = 0
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
