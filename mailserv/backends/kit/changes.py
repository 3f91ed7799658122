"""What a STORE or an EXPUNGE is to change, worked out over the messages a backend holds.

Both take any objects with ``uid``, ``flags`` and ``modseq`` (``MessageMeta`` has them), so
a backend plans over its own records and then carries the plan out in its store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from mailserv.interfaces import DELETED, StoreMode


class Flagged(Protocol):
    @property
    def uid(self) -> int: ...

    @property
    def flags(self) -> frozenset[str]: ...

    @property
    def modseq(self) -> int: ...


M = TypeVar("M", bound=Flagged)


def plan_store(
    messages: Iterable[M], mode: StoreMode, flags: frozenset[str], unchangedsince: int | None
) -> tuple[list[tuple[M, frozenset[str]]], list[int]]:
    """(message, its new flags) for each message whose flags really change, and the UIDs that
    UNCHANGEDSINCE refuses (changed after it, RFC 7162 3.1.3).  A message whose flags would
    end up the same is in neither: it keeps its modseq and nobody is told."""
    plan: list[tuple[M, frozenset[str]]] = []
    failed: list[int] = []
    after: dict[frozenset[str], frozenset[str]] = {}  # a mailbox has few distinct sets
    for message in messages:
        if unchangedsince is not None and message.modseq > unchangedsince:
            failed.append(message.uid)
            continue
        new = after.get(message.flags)
        if new is None:
            new = after[message.flags] = mode.apply(message.flags, flags)
        if new != message.flags:
            plan.append((message, new))
    return plan, failed


def expungeable(messages: Iterable[M]) -> list[M]:
    """The messages EXPUNGE removes: those flagged ``\\Deleted``."""
    return [message for message in messages if DELETED in message.flags]
