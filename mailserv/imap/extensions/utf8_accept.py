"""UTF8=ACCEPT (RFC 6855): after ``ENABLE UTF8=ACCEPT`` the session speaks UTF-8.

Mailbox names go both ways as UTF-8 (no modified UTF-7; ``&`` is itself): the argument
readers and ``name_bytes`` follow :func:`mailserv.imap.session.utf8_names`.  APPEND takes
``UTF8 (literal8)`` (:mod:`mailserv.imap.commands.append`), SEARCH with a CHARSET is
refused (BAD, RFC 6855 3; SORT and THREAD take UTF-8 alone), and ENVELOPE, BODY and
BODYSTRUCTURE strings holding 8-bit go out as UTF-8 (quoted), not as literals
(:func:`mailserv.imap.fetch.utf8_strings`).
A session that does not enable it sees nothing of this.
"""

from __future__ import annotations

from mailserv.imap.registry import Capability, Extension
from mailserv.imap.session import UTF8_ACCEPT

EXTENSION = Extension(
    "UTF8=ACCEPT",
    capabilities=(Capability(b"UTF8=ACCEPT"),),
    enable=frozenset({UTF8_ACCEPT}),
)
