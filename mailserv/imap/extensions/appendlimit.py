"""APPENDLIMIT (RFC 7889): the largest message APPEND takes, offered in every state."""

from collections.abc import Iterable

from mailserv.imap.registry import Capability, Extension
from mailserv.imap.session import Session


def _limit(session: Session) -> Iterable[bytes]:
    return (b"%d" % session.settings.max_literal,)


EXTENSION = Extension(
    "APPENDLIMIT",
    capabilities=(Capability(b"APPENDLIMIT=", values=_limit),),
    response_codes=frozenset({"TOOBIG"}),
)
