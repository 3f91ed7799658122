"""UTF8=ACCEPT (RFC 6855): after ``ENABLE UTF8=ACCEPT`` the session speaks UTF-8.

Mailbox names go both ways as UTF-8 (no modified UTF-7; ``&`` is itself): the argument
readers and ``name_bytes`` follow :func:`mailserv.imap.session.utf8_names`.  APPEND takes
``UTF8 (literal8)`` (:mod:`mailserv.imap.commands.append`), SEARCH with a CHARSET is
refused (BAD, RFC 6855 3), and ENVELOPE strings holding 8-bit UTF-8 go out quoted, not as
literals.  A session that does not enable it sees nothing of this.
"""

from __future__ import annotations

from mailserv.imap.registry import Capability, Extension
from mailserv.imap.session import UTF8_ACCEPT
from mailserv.message.store import EnvelopeValue, envelope_values
from mailserv.syntax import encode


def utf8_envelope(envelope: bytes) -> bytes:
    """The precomputed ENVELOPE with its 8-bit UTF-8 literals as quoted strings."""
    if b"{" not in envelope:
        return envelope  # no literal: nothing to change (the usual case)
    values = envelope_values(envelope)
    return envelope if values is None else _encoded(values)


def _encoded(value: EnvelopeValue) -> bytes:
    if isinstance(value, list):
        return b"(" + b" ".join(_encoded(item) for item in value) + b")"
    return encode.nstring(value, utf8=True)


EXTENSION = Extension(
    "UTF8=ACCEPT",
    capabilities=(Capability(b"UTF8=ACCEPT"),),
    enable=frozenset({UTF8_ACCEPT}),
)
