"""MULTIAPPEND (RFC 3502): one APPEND, several messages, all stored or none.

APPEND (:mod:`mailserv.imap.commands.append`) reads the messages, checks each (flags, date,
size within APPENDLIMIT, NUL only in a literal8) before anything is stored, and hands them
to the account in one call (``IMultiAppendAccount.append_many``); APPENDUID names the UID
set.  Offered when the account provides that interface: a backend that cannot store a
batch all or none (the proxy, which has only the upstream's one-message APPENDs) leaves it
out, and its sessions see APPEND of one message only.
"""

from mailserv.imap.commands.append import multiappend_offered
from mailserv.imap.registry import Capability, Extension

EXTENSION = Extension(
    "MULTIAPPEND", capabilities=(Capability(b"MULTIAPPEND", when=multiappend_offered),)
)
