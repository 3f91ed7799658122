"""RFC 3501's command handlers, one module per family (extensions add theirs from
:mod:`mailserv.imap.extensions`; the registry merges them into the dispatcher's table).

A handler is ``async def handler(session, command) -> Reply | None``; it writes untagged
responses with ``session.write`` and fails by raising ``No``/``Bad`` (or a ParseError, a
backend error: the dispatcher maps those).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
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
class Batching:
    """How a command runs together with the same commands queued right after it (a
    client's pipelined burst), each still answered on its own, in order: one backend call
    instead of one each (APPEND: one sync of the store for the burst).

    ``key(session, command)``: commands with equal keys (None: not this one) may run
    together.  ``run(session, commands)``: runs them, and returns each one's Reply in
    order; or None, having changed nothing, when they must run one by one (a command of
    them that fails on its own, or all of them together)."""

    key: Callable[[Session, Command], Hashable | None]
    run: Callable[[Session, Sequence[Command]], Awaitable[Sequence[Reply] | None]]


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
    batching: Batching | None = None
    """Runs together with the same commands queued after it (see :class:`Batching`)."""
