"""Events and the one seam that takes them: ``IEventSink.publish``.

The engine publishes after a command changed the store (:mod:`mailserv.events.report`);
other code that changes it (mail delivery) publishes through the same sink, found as
``Services.events`` (``report.tell_added`` builds delivery's ``message-added`` events).  A
sink never blocks and never raises into its caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

from zope.interface import Interface, implementer

__all__ = [
    "EVENT_TYPES",
    "EXPUNGED",
    "FLAGS_CHANGED",
    "MAILBOX_CREATED",
    "MAILBOX_DELETED",
    "MAILBOX_RENAMED",
    "MESSAGE_ADDED",
    "Event",
    "IEventSink",
    "NoEvents",
]

MESSAGE_ADDED = "message-added"
FLAGS_CHANGED = "flags-changed"
EXPUNGED = "expunged"
MAILBOX_CREATED = "mailbox-created"
MAILBOX_DELETED = "mailbox-deleted"
MAILBOX_RENAMED = "mailbox-renamed"
EVENT_TYPES = frozenset(
    {MESSAGE_ADDED, FLAGS_CHANGED, EXPUNGED, MAILBOX_CREATED, MAILBOX_DELETED, MAILBOX_RENAMED}
)


@dataclass(frozen=True, slots=True)
class Event:
    """One change of ``user``'s ``mailbox`` (for a rename: the old name); ``data`` holds
    what the type adds (JSON-ready values).  Events of one (user, mailbox) are told in the
    order they were published."""

    type: str
    user: str
    mailbox: str
    time: float
    """When it happened, seconds since the epoch."""
    data: Mapping[str, object] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid4().hex)
    """Unique: a receiver that may see an event twice (at-least-once) keys on it."""

    def as_json(self) -> dict[str, object]:
        stamp = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")
        return {
            "id": self.id,
            "type": self.type,
            "time": stamp.replace("+00:00", "Z"),
            "user": self.user,
            "mailbox": self.mailbox,
            **self.data,
        }


class IEventSink(Interface):
    """Where changes to the store are told."""

    def wants(type: str) -> bool:
        """Whether an event of ``type`` would go anywhere (publishers skip the work else)."""

    def publish(event: Event) -> None:
        """Take ``event``; returns at once (no I/O on the caller's turn), never raises."""


@implementer(IEventSink)
class NoEvents:
    """The sink of a server with nobody listening."""

    def wants(self, type: str) -> bool:
        return False

    def publish(self, event: Event) -> None:
        pass
