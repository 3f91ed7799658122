"""MessageInfo records decoded when first read, not when read from a store's index.

Many commands read every message's metadata but never its parsed structure: SELECT looks for
the first unseen message, ``FETCH 1:* (FLAGS)`` is how clients resynchronise, STORE reports
the new flags.  Decoding each stored record costs more than the rest of a row together, so
:class:`LazyInfo` is a real MessageInfo (a subclass) that decodes its record on the first
attribute access, but for ENVELOPE, BODY and BODYSTRUCTURE, read alone from the record
while nothing else is asked (``FETCH (FLAGS RFC822.SIZE ENVELOPE)`` is how clients list a
mailbox).  Until then it is one object holding bytes, not a tree of parts: a store that
keeps the infos it loaded (the maildir backend) gives the garbage collector a fifth of the
objects to walk.  The SQL
backend and the maildir index hand out their records this way.
"""

from __future__ import annotations

from datetime import datetime

from mailserv.message import store
from mailserv.message.info import MessageInfo, Part


class LazyInfo(MessageInfo):
    """The MessageInfo :func:`mailserv.message.store.dumps` wrote as ``record``."""

    __slots__ = ("_record", "_decoded", "_heads")
    _record: bytes
    _decoded: MessageInfo | None
    _heads: store.Heads | None

    def __init__(self, record: bytes, heads: store.Heads | None = None) -> None:
        """``heads``: the record's :func:`mailserv.message.store.heads_of`, when the store
        kept them apart (they are then not read from the record)."""
        object.__setattr__(self, "_record", record)
        object.__setattr__(self, "_decoded", None)
        object.__setattr__(self, "_heads", heads)

    def decoded(self) -> MessageInfo:
        info: MessageInfo | None = self._decoded
        if info is None:
            info = store.loads(self._record)
            object.__setattr__(self, "_decoded", info)
            object.__setattr__(self, "_record", b"")
            object.__setattr__(self, "_heads", None)
        return info

    def _read_heads(self) -> store.Heads:
        """ENVELOPE, BODY, BODYSTRUCTURE and the message's offsets, read alone from the
        record while nothing else was asked (what mail clients list a mailbox with: no
        part tree made)."""
        heads = self._heads
        if heads is None:
            try:
                heads = store.heads_of(self._record)
            except store.UnknownFormat:
                decoded = self.decoded()  # as every other field would fail
                top = decoded.top()
                return store.Heads(decoded.envelope, decoded.body, decoded.bodystructure, top)
            object.__setattr__(self, "_heads", heads)
        return heads

    def top(self) -> tuple[int, int, int]:
        if self._decoded is not None:
            return self._decoded.top()
        return self._read_heads().top

    def kept_record(self) -> bytes | None:
        """The record as read, while it is undecoded and in this version's layout."""
        if self._decoded is None and self._record.startswith(store.MARKER):
            return self._record
        return None

    # Each field reads through to the decoded record (these shadow the slots of the base).
    @property
    def envelope(self) -> bytes:
        return self._decoded.envelope if self._decoded is not None else self._read_heads()[0]

    @property
    def body(self) -> bytes:
        return self._decoded.body if self._decoded is not None else self._read_heads()[1]

    @property
    def bodystructure(self) -> bytes:
        decoded = self._decoded
        return decoded.bodystructure if decoded is not None else self._read_heads()[2]

    @property
    def root(self) -> Part:
        return self.decoded().root

    @property
    def subject(self) -> str:
        return self.decoded().subject

    @property
    def from_(self) -> str:
        return self.decoded().from_

    @property
    def to(self) -> str:
        return self.decoded().to

    @property
    def cc(self) -> str:
        return self.decoded().cc

    @property
    def bcc(self) -> str:
        return self.decoded().bcc

    @property
    def sent(self) -> datetime | None:
        return self.decoded().sent

    @property
    def message_id(self) -> str:
        return self.decoded().message_id

    @property
    def references(self) -> tuple[str, ...]:
        return self.decoded().references

    @property
    def base_subject(self) -> str:
        return self.decoded().base_subject

    @property
    def reply(self) -> bool:
        return self.decoded().reply

    @property
    def sort_from(self) -> str:
        return self.decoded().sort_from

    @property
    def sort_to(self) -> str:
        return self.decoded().sort_to

    @property
    def sort_cc(self) -> str:
        return self.decoded().sort_cc

    @property
    def display_from(self) -> str:
        return self.decoded().display_from

    @property
    def display_to(self) -> str:
        return self.decoded().display_to

    @property
    def preview(self) -> str | None:
        return self.decoded().preview

    @property
    def emailid(self) -> str | None:
        return self.decoded().emailid

    @property
    def threadid(self) -> str | None:
        return self.decoded().threadid

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyInfo):
            other = other.decoded()
        return self.decoded() == other

    def __hash__(self) -> int:
        return hash(self.decoded())

    def __repr__(self) -> str:
        return f"LazyInfo({self.decoded()!r})"


def record_of(info: MessageInfo) -> bytes:
    """``store.dumps(info)``; a LazyInfo not yet decoded gives its record back as it is
    when that is in this version's layout (a COPY writes what it read)."""
    kept = info.kept_record() if isinstance(info, LazyInfo) else None
    return store.dumps(info) if kept is None else kept


def is_current(record: bytes) -> bool:
    """True when ``record`` is in the format this version decodes (else: parse again)."""
    return record.startswith(store.MARKERS)
