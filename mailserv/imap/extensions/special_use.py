"""SPECIAL-USE (RFC 6154): LIST shows the backend's special-use attributes (``\\Sent``...);
CREATE takes ``(USE (\\Sent))`` (:mod:`mailserv.imap.commands.mailboxes`)."""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "SPECIAL-USE",
    capabilities=(Capability(b"SPECIAL-USE"),),
    response_codes=frozenset({"USEATTR"}),
)
