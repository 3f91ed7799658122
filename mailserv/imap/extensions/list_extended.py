"""LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): LIST with selection options, several
patterns, ``RETURN (...)`` options and ``STATUS`` answers after each listed mailbox.

The command is :mod:`mailserv.imap.commands.lists` (it reads every form); this module
offers the capabilities.
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "LIST-EXTENDED",
    capabilities=(Capability(b"LIST-EXTENDED"), Capability(b"LIST-STATUS")),
)
