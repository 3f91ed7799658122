"""UIDPLUS (RFC 4315): APPENDUID and COPYUID response codes, UID EXPUNGE.

APPEND, COPY and MOVE write the codes, EXPUNGE takes the UID prefix
(:mod:`mailserv.imap.commands`); this module offers the capability.
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "UIDPLUS",
    capabilities=(Capability(b"UIDPLUS"),),
    response_codes=frozenset({"APPENDUID", "COPYUID", "UIDNOTSTICKY"}),
)
