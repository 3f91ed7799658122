"""Message bytes kept in memory, least recently used first out, within a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class ContentCache:
    """Shared by every user of a backend; keys carry user, mailbox, UIDVALIDITY and UID."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        """Keep ``data`` unless it would take more than a quarter of the budget."""
        if len(data) * 4 > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old)
        self._items[key] = data
        self.used += len(data)
        while self.used > self.budget and self._items:
            _, dropped = self._items.popitem(last=False)
            self.used -= len(dropped)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()
        self.used = 0
