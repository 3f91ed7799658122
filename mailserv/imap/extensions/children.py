"""CHILDREN (RFC 3348): LIST answers carry ``\\HasChildren`` / ``\\HasNoChildren``.

The attributes come from :mod:`mailserv.imap.listing`; this module offers the capability.
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension("CHILDREN", capabilities=(Capability(b"CHILDREN"),))
