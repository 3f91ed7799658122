"""LITERAL+ (RFC 7888): non-synchronizing literals ``{n+}``.

The framer (:mod:`mailserv.imap.framer`) reads them, up to ``max_literal_plus`` bytes;
this module only offers the capability, to every session.
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension("LITERAL+", capabilities=(Capability(b"LITERAL+"),))
