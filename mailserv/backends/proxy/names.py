"""Mailbox names between mailserv (``/`` hierarchy, text) and the upstream (its own
delimiter and personal-namespace prefix, modified UTF-7 on the wire).

mailserv shows its clients ``/`` whatever the upstream uses; the user's first upstream
connection asks NAMESPACE (else ``LIST "" ""``) for the delimiter and the personal prefix
(:func:`mailserv.backends.proxy.user.discover_names`), and every name crosses here:
``a/b`` is ``a.b`` on an upstream that says ``.``, and ``INBOX.a.b`` under Courier's or
Cyrus's ``INBOX.`` prefix.
LIST and LSUB ask the upstream for every name (``*``) and the engine matches the client's
pattern against the translated names, so ``%`` stops at ``/`` whatever the upstream's
delimiter; commands that carry a name (CREATE, DELETE, RENAME, SUBSCRIBE, SELECT, EXAMINE,
STATUS, APPEND, COPY, MOVE) send :meth:`NameMap.encode` of it; caches are keyed by our name.

What cannot cross:

- a level of a client's name that contains the upstream's delimiter (``v1.2`` when the
  upstream says ``.``): the command answers NO [CANNOT];
- any hierarchy when the upstream has none (delimiter NIL): ``a/b`` answers NO [CANNOT];
- an upstream name that contains ``/`` inside a level (``a/b`` as one level of a ``.``
  upstream), has an empty level (``a..b``) or lies outside the personal namespace: it is
  left out of LIST and LSUB (there is no ``/`` name that would reach it) and cannot be
  selected through mailserv.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailserv.errors import InvalidMailboxName
from mailserv.interfaces import DELIMITER, INBOX
from mailserv.syntax import utf7


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
                raise InvalidMailboxName(
                    f"The upstream server has no mailbox hierarchy: {DELIMITER!r} is not allowed"
                )
            return self.prefix + name
        if delimiter != DELIMITER and any(delimiter in level for level in levels):
            raise InvalidMailboxName(
                f"The upstream server separates levels with {delimiter!r}: "
                f"a mailbox name may not contain it"
            )
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
        if delimiter != DELIMITER and DELIMITER in raw:
            return None  # a "/" inside a level: no name of ours reaches it
        local = raw if delimiter is None else raw.replace(delimiter, DELIMITER)
        if "" in local.split(DELIMITER):
            return None  # an empty level ("a..b", ".a"): not a valid name here
        return local

    def decode(self, raw: bytes | str) -> str | None:
        """``local`` of a name as it came off the wire (modified UTF-7)."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        try:
            text = utf7.decode(data)
        except ValueError:
            text = data.decode("utf-8", "replace")
        return self.local(text)
