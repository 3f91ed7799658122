"""Awaiting backend results that may be plain values, Deferreds or coroutines."""

from __future__ import annotations

import inspect
from typing import Any

from twisted.internet.defer import Deferred


async def resolve(value: Any) -> Any:
    """The backend contract lets a method return a value, a Deferred or an awaitable."""
    if isinstance(value, Deferred) or inspect.isawaitable(value):
        return await value
    return value
