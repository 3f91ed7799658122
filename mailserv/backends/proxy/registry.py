"""One user's registry: the mailboxes open in this process, by name, and what is kept
about names locally (special-use attributes, subscriptions the upstream refused, names
deleted through us).  Every session of the user shares it, so the sessions see each
other's changes at once through the shared :class:`ProxyMailbox` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailserv.backends.proxy.mailbox import ProxyMailbox


class MailboxRegistry:
    def __init__(self) -> None:
        self.mailboxes: dict[str, ProxyMailbox] = {}
        self.special_use: dict[str, str] = {}
        self.subscribed: set[str] = set()
        self.hollow: set[str] = set()
        """Names deleted through us that the upstream may go on listing as if they still
        existed (Dovecot's Maildir++ keeps a deleted parent of a child in its list index,
        without \\Noselect): a LIST checks them."""

    async def evict(self) -> bool:
        """Free the connection of a selected mailbox nobody listens to; True if one was."""
        for mailbox in list(self.mailboxes.values()):
            if mailbox.evictable():
                await mailbox.release_channel()
                return True
        return False

    async def shutdown(self) -> None:
        """Log every mailbox's channel out and forget them."""
        for mailbox in list(self.mailboxes.values()):
            await mailbox.shutdown()
        self.mailboxes.clear()
