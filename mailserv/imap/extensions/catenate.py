"""CATENATE (RFC 4469): APPEND of a message put together from TEXT literals and URLs of
messages or parts the user already has (``/INBOX;UIDVALIDITY=v/;UID=n/;SECTION=1``), so a
client forwards an attachment without downloading and uploading it again.

APPEND (:mod:`mailserv.imap.commands.append`) reads the parts; :mod:`mailserv.imap.imapurl`
resolves the URLs (the signed-in user's own mailboxes only: no URLAUTH), a URL naming
nothing is ``NO [BADURL url]``, the whole message keeps APPENDLIMIT (``NO [TOOBIG]``).
"""

from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "CATENATE", capabilities=(Capability(b"CATENATE"),), response_codes=frozenset({"BADURL"})
)
