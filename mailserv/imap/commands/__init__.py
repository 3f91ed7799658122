"""RFC 3501's command handlers, one module per family (extensions add theirs from
:mod:`mailserv.imap.extensions`; the registry merges them into the dispatcher's table).

A handler is ``async def handler(session, command) -> Reply | None``; it writes untagged
responses with ``session.write`` and fails by raising ``No``/``Bad`` (or a ParseError, a
backend error: the dispatcher maps those).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailserv.imap.replies import Reply
from mailserv.imap.session import Session, State
from mailserv.syntax.tokens import Command

ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

Handler = Callable[[Session, Command], Awaitable[Reply | None]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    states: frozenset[State]
    uid: bool = False
    """Allowed after the UID prefix."""
    expunge_ok: bool = True
    """EXPUNGE responses may follow it (RFC 3501 7.4.1: not FETCH, STORE, SEARCH)."""
    exclusive: bool = False
    """Read nothing after it until it ends (IDLE, AUTHENTICATE, STARTTLS, LOGOUT)."""
