"""SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154): LIST shows the backend's special-use
attributes (``\\Sent``...) and selects by them (``LIST (SPECIAL-USE) ...``,
:mod:`mailserv.imap.commands.lists`); CREATE takes ``(USE (\\Sent))``
(:mod:`mailserv.imap.commands.mailboxes`)."""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "SPECIAL-USE",
    capabilities=(Capability(b"SPECIAL-USE"), Capability(b"CREATE-SPECIAL-USE")),
    response_codes=frozenset({"USEATTR"}),
)
