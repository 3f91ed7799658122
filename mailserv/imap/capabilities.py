"""The CAPABILITY list: what the registered extensions offer the session now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.auth.sasl import SASLContext
from mailserv.auth.users import portal_store

if TYPE_CHECKING:
    from mailserv.auth.users import IUserStore
    from mailserv.imap.session import Session


def sasl_context(session: Session) -> SASLContext:
    """What a SASL mechanism may know of this connection (to offer it, and to run it)."""
    services = session.services
    return SASLContext(
        secure=session.secure,
        plaintext_allowed=session.plaintext_auth_allowed,
        tls=session.tls_connection,
        key_store=_key_store(session) if session.settings.offer_scram else None,
        secret=services.secret,
    )


def _key_store(session: Session) -> IUserStore | None:
    """The user store behind the portal's checker, if the server checks passwords itself."""
    return portal_store(session.services.portal)


def for_session(session: Session) -> list[bytes]:
    return session.services.registry.capabilities(session)
