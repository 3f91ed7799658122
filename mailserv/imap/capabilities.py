"""The CAPABILITY list: what the registered extensions offer the session now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.auth.sasl import SASLContext

if TYPE_CHECKING:
    from mailserv.imap.session import Session


def sasl_context(session: Session) -> SASLContext:
    """What a SASL mechanism may know of this connection (to offer it, and to run it)."""
    return SASLContext(secure=session.secure, plaintext_allowed=session.plaintext_auth_allowed)


def for_session(session: Session) -> list[bytes]:
    return session.services.registry.capabilities(session)
