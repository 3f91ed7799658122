"""ESEARCH (RFC 4731): ``SEARCH RETURN (MIN MAX COUNT ALL) ...`` answered with one
``* ESEARCH`` line (:mod:`mailserv.imap.esearch`) carrying only what was asked for; the
SEARCH command (:mod:`mailserv.imap.commands.messages`) reads the options."""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension("ESEARCH", capabilities=(Capability(b"ESEARCH"),))
