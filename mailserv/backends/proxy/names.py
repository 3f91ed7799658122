"""Mailbox names between mailserv (``/`` hierarchy, text) and the upstream (its own
delimiter and personal-namespace prefix, modified UTF-7 on the wire)."""

from __future__ import annotations

from dataclasses import dataclass

from mailserv.errors import InvalidMailboxName
from mailserv.imap import utf7

DELIMITER = "/"
INBOX = "INBOX"


@dataclass(frozen=True, slots=True)
class NameMap:
    """``delimiter``: the upstream's hierarchy separator (None: a flat namespace);
    ``prefix``: its personal namespace prefix (``""``, or e.g. ``INBOX.`` on Courier)."""

    delimiter: str | None = DELIMITER
    prefix: str = ""

    def upstream(self, name: str) -> str:
        """The upstream's spelling of ``name``; InvalidMailboxName if it cannot be said."""
        if name.upper() == INBOX:
            return INBOX
        levels = name.split(DELIMITER)
        delimiter = self.delimiter
        if delimiter is None:
            if len(levels) > 1:
                raise InvalidMailboxName("The upstream server has no mailbox hierarchy")
            return self.prefix + name
        if delimiter != DELIMITER and any(delimiter in level for level in levels):
            raise InvalidMailboxName(f"Mailbox names here may not contain {delimiter!r}")
        return self.prefix + delimiter.join(levels)

    def encode(self, name: str) -> bytes:
        """``name`` as the upstream's modified UTF-7 bytes."""
        return utf7.encode(self.upstream(name))

    def local(self, raw: str) -> str | None:
        """mailserv's name for the upstream name ``raw`` (already UTF-7 decoded); None for
        names outside the personal namespace."""
        if raw.upper() == INBOX:
            return INBOX
        if self.prefix:
            if not raw.startswith(self.prefix):
                return None
            raw = raw[len(self.prefix) :]
            if not raw:
                return None
        delimiter = self.delimiter
        if delimiter is None or delimiter == DELIMITER:
            return raw
        if DELIMITER in raw:
            return None  # not expressible with our delimiter: hidden
        return raw.replace(delimiter, DELIMITER)

    def decode(self, raw: bytes | str) -> str | None:
        """``local`` of a name as it came off the wire (modified UTF-7)."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        try:
            text = utf7.decode(data)
        except ValueError:
            text = data.decode("utf-8", "replace")
        return self.local(text)
