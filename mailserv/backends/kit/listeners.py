"""The listeners of one mailbox, and the events fanned out to them.

Events are plain calls made after the change they describe; one failing listener is logged
and the others still hear (the contract of ``IMailboxListener``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.logger import Logger

from mailserv.interfaces import FlagChange, IMailbox, IMailboxListener

_log = Logger()


class ListenerSet:
    """Listeners in the order they were added; adding one twice keeps one."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[IMailboxListener] = []

    def add(self, listener: IMailboxListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: IMailboxListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def __len__(self) -> int:
        return len(self._listeners)

    def __contains__(self, listener: object) -> bool:
        return listener in self._listeners

    def added(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        if uids:
            self._tell("messages_added", lambda to: to.messages_added(mailbox, uids, origin))

    def expunged(self, mailbox: IMailbox, uids: Sequence[int], origin: object) -> None:
        if uids:
            self._tell("messages_expunged", lambda to: to.messages_expunged(mailbox, uids, origin))

    def flags_changed(
        self, mailbox: IMailbox, changes: Sequence[FlagChange], origin: object
    ) -> None:
        if changes:
            self._tell("flags_changed", lambda to: to.flags_changed(mailbox, changes, origin))

    def lost(self, mailbox: IMailbox, reason: str) -> None:
        self._tell("mailbox_lost", lambda to: to.mailbox_lost(mailbox, reason))

    def _tell(self, event: str, call: Callable[[IMailboxListener], None]) -> None:
        for listener in tuple(self._listeners):  # a listener may remove itself
            try:
                call(listener)
            except Exception:  # noqa: BLE001 - logged, and the others still hear
                _log.failure(
                    "Mailbox listener {listener!r} failed on {event}",
                    listener=listener,
                    event=event,
                )


class Listened:
    """``IMailbox.add_listener``/``remove_listener`` over ``self.listeners``: inherit it."""

    listeners: ListenerSet

    def add_listener(self, listener: IMailboxListener) -> None:
        self.listeners.add(listener)

    def remove_listener(self, listener: IMailboxListener) -> None:
        self.listeners.remove(listener)
