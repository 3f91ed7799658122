"""SEARCH answers kept while a mailbox's set of messages stays the same.

A message never changes once stored: the answer of a key testing only what it keeps for
ever (its address and subject texts, its dates, size and UID: :func:`stable`) changes
only when messages come or go.  Clients repeat the same few searches (``FROM boss``,
``SINCE 1-Jun-2021``), which a backend answers again from :class:`KeptAnswers`, with a
:data:`Tag` telling the set of messages each was read from: the SQL store's mailbox row,
the maildir index's state.  Flags are not among those keys: a STORE changes no tag.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from mailserv.search import (
    All,
    And,
    Contains,
    DateCompare,
    Not,
    Or,
    SearchKey,
    SizeCompare,
    StringField,
    UidIn,
    walk,
)

KEPT_ANSWERS = 500_000
"""UIDs the kept answers of one :class:`KeptAnswers` hold, all together, at most."""
Tag = tuple[Any, ...]
"""What tells a mailbox's set of messages, e.g. (UIDVALIDITY, UIDNEXT, count): a message
added raises UIDNEXT, one removed lowers the count until the next is added, so the same
tag means the same messages."""
_STABLE = (Contains, DateCompare, SizeCompare, UidIn, All, Not, And, Or)
_STORED_TEXTS = (StringField.BODY, StringField.TEXT)
"""Answered from text indexes a message may enter later (a backfill): not kept."""


def stable(key: SearchKey) -> bool:
    """Whether ``key`` tests only what a message keeps for ever."""
    return all(
        isinstance(node, _STABLE)
        and not (isinstance(node, Contains) and node.field in _STORED_TEXTS)
        for node in walk(key)
    )


def among(found: Sequence[int], uids: Sequence[int]) -> list[int]:
    """Those of ``found`` (ascending, within the range of ``uids``) that are in ``uids``
    (ascending): a new list."""
    if uids[-1] - uids[0] + 1 == len(uids):  # every UID of the range: nothing to leave out
        return list(found)
    wanted = set(uids)
    return [uid for uid in found if uid in wanted]


class KeptAnswers:
    """The latest answers by a key the backend makes (a query and the range of UIDs it
    ran over), each with the :data:`Tag` it was read under: given again while the tag
    holds.  Least recently used first out past ``limit`` UIDs; threads may share it."""

    def __init__(self, limit: int = KEPT_ANSWERS) -> None:
        self._limit = limit
        self._kept: OrderedDict[Hashable, tuple[Tag, list[int]]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, tag: Tag) -> list[int] | None:
        """The answer kept under ``key`` if it was read under ``tag`` (do not change it)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or kept[0] != tag:
                return None
            self._kept.move_to_end(key)
            return kept[1]

    def put(self, key: Hashable, tag: Tag, found: list[int]) -> None:
        if len(found) > self._limit:
            return
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._total -= len(old[1])
            self._kept[key] = (tag, found)
            self._total += len(found)
            while self._total > self._limit:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._total -= len(dropped)
