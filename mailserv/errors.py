"""Exceptions a backend raises; the IMAP engine maps each to a tagged NO with a response code.

They are part of the backend contract (see ``mailserv.interfaces``).
"""


class BackendError(Exception):
    """Base class; ``code`` is the IMAP response code the engine sends with the NO."""

    code: str | None = None


class MailboxNotFound(BackendError):
    code = "NONEXISTENT"


class MailboxExists(BackendError):
    code = "ALREADYEXISTS"


class MailboxHasChildren(BackendError):
    """DELETE of a \\Noselect mailbox that still has inferiors (RFC 3501 6.3.4)."""

    code = "HASCHILDREN"  # RFC 9051 7.1


class MailboxNotSelectable(BackendError):
    """SELECT/EXAMINE/APPEND/STATUS on a \\Noselect name."""


class InvalidMailboxName(BackendError):
    code = "CANNOT"


class ReadOnlyMailbox(BackendError):
    code = "READ-ONLY"


class MessageTooLarge(BackendError):
    code = "TOOBIG"


class QuotaExceeded(BackendError):
    code = "OVERQUOTA"


class BinaryNotStored(BackendError):
    """The store cannot keep content with NUL octets (RFC 3516 4.4)."""

    code = "UNKNOWN-CTE"


class BackendUnavailable(BackendError):
    """The store (a database, an upstream server) cannot be reached right now."""

    code = "UNAVAILABLE"


class BackendOptionError(ValueError):
    """A ``--backend-option`` is missing, unknown or malformed; the text names it."""
