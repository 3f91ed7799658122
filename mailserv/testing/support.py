"""Helpers of the contract suite that other tests use too: ``resolve`` a backend call,
``Recorder`` (a listener keeping every event), ``message`` (a small numbered message)."""

from __future__ import annotations

import inspect
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from mailserv.interfaces import IMailbox, IMailboxListener


def resolve(value: Any, reactor: Any = None, timeout: float = 30.0, wait: bool = True) -> Any:
    """The result of a backend call that may be a plain value, Deferred or coroutine.

    A result not there at once is waited for by turning ``reactor`` (default: the global
    one) for at most ``timeout`` seconds; failures are raised.  ``wait=False`` asserts
    instead that the result is there without the reactor.
    """
    if inspect.iscoroutine(value):
        value = Deferred.fromCoroutine(value)
    if not isinstance(value, Deferred):
        return value
    outcome: list[Any] = []
    value.addBoth(outcome.append)
    if not outcome:
        assert wait, "the call did not complete without a reactor"
        if reactor is None:
            from twisted.internet import reactor
        deadline = time.monotonic() + timeout
        while not outcome:
            if time.monotonic() > deadline:
                raise TimeoutError("the backend did not answer")
            reactor.iterate(0.002)
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


@implementer(IMailboxListener)
class Recorder:
    """A listener that keeps every event as (kind, payload, origin)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[Any], object]] = []

    def messages_added(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("added", list(uids), origin))

    def messages_expunged(self, mailbox: IMailbox, uids: Any, origin: object) -> None:
        self.events.append(("expunged", list(uids), origin))

    def flags_changed(self, mailbox: IMailbox, changes: Any, origin: object) -> None:
        self.events.append(("flags", list(changes), origin))

    def mailbox_lost(self, mailbox: IMailbox, reason: str) -> None:
        self.events.append(("lost", [], reason))


def message(n: int = 1) -> bytes:
    """A small RFC 5322 message, numbered ``n``."""
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Note {n}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{n}@example.org>\r\n"
        f"\r\nBody of note {n}.\r\n"
    ).encode()
