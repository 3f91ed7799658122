"""The CAPABILITY list: what the registered extensions offer the session now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.auth.sasl import SASLContext
from mailserv.auth.scramoffer import scram_key_store

if TYPE_CHECKING:
    from mailserv.imap.session import Session


def sasl_context(session: Session) -> SASLContext:
    """What a SASL mechanism may know of this connection (to offer it, and to run it)."""
    services = session.services
    return SASLContext(
        secure=session.secure,
        plaintext_allowed=session.plaintext_auth_allowed,
        tls=session.tls_connection,
        key_store=scram_key_store(services.portal, session.settings.offer_scram),
        secret=services.secret,
    )


def for_session(session: Session) -> list[bytes]:
    return session.services.registry.capabilities(session)
