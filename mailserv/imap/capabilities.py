"""The CAPABILITY list, which depends on the connection's state and security."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserv.auth.sasl import SASLContext
from mailserv.imap.session import State

if TYPE_CHECKING:
    from mailserv.imap.session import Session

_ALWAYS = (
    b"IMAP4rev1",
    b"LITERAL+",
    b"SASL-IR",
    b"ID",
    b"ENABLE",
    b"IDLE",
    b"NAMESPACE",
    b"UNSELECT",
    b"UIDPLUS",
    b"MOVE",
    b"CHILDREN",
    b"SPECIAL-USE",
)


def sasl_context(session: Session) -> SASLContext:
    """What a SASL mechanism may know of this connection (to offer it, and to run it)."""
    return SASLContext(secure=session.secure, plaintext_allowed=session.plaintext_auth_allowed)


def for_session(session: Session) -> list[bytes]:
    caps = list(_ALWAYS)
    caps.append(b"APPENDLIMIT=%d" % session.settings.max_literal)
    if session.state is State.NOT_AUTHENTICATED:
        if session.services.tls is not None and not session.secure:
            caps.append(b"STARTTLS")
        names = session.services.mechanisms.offered(sasl_context(session))
        caps += [b"AUTH=" + name.encode("ascii") for name in names]
        if not session.plaintext_auth_allowed:
            caps.append(b"LOGINDISABLED")
    return caps
