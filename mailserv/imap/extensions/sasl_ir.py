"""SASL-IR (RFC 4959): an initial response on the AUTHENTICATE line.

AUTHENTICATE (:mod:`mailserv.imap.commands.login`) takes it; this module offers the
capability.
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension("SASL-IR", capabilities=(Capability(b"SASL-IR"),))
