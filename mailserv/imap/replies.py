"""How a command handler ends: a Reply for OK, or raise No / Bad."""

from __future__ import annotations

from dataclasses import dataclass

from mailserv import errors

_BACKEND_TEXT = {
    errors.MailboxNotFound: "No such mailbox",
    errors.MailboxExists: "Mailbox already exists",
    errors.MailboxHasChildren: "Mailbox has inferior hierarchical names",
    errors.MailboxNotSelectable: "Mailbox cannot be selected",
    errors.InvalidMailboxName: "Invalid mailbox name",
    errors.ReadOnlyMailbox: "Mailbox is read-only",
    errors.MessageTooLarge: "Message too large",
    errors.QuotaExceeded: "Quota exceeded",
    errors.BackendUnavailable: "Mail store unavailable, try again later",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A tagged OK; ``code`` is a response code without brackets, e.g. ``b"READ-WRITE"``."""

    text: str = ""
    code: bytes | None = None
    sent: bool = False
    """The handler wrote the tagged line itself (STARTTLS must, before the handshake)."""


class CommandFailure(Exception):
    """A tagged NO or BAD with an optional response code."""

    status = b"NO"

    def __init__(self, text: str, code: bytes | str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code.encode("ascii") if isinstance(code, str) else code


class No(CommandFailure):
    status = b"NO"


class Bad(CommandFailure):
    status = b"BAD"


def tagged(tag: bytes, status: bytes, text: str, code: bytes | None = None) -> bytes:
    """One tagged (or ``*``) status line, CRLF included; the text never carries CR/LF."""
    clean = text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")
    if code:
        return tag + b" " + status + b" [" + code + b"] " + clean + b"\r\n"
    return tag + b" " + status + b" " + clean + b"\r\n"


def backend_text(exc: errors.BackendError) -> str:
    """The NO text for a backend error: its own message, else one by its kind."""
    return str(exc) or _BACKEND_TEXT.get(type(exc), "Operation failed")
