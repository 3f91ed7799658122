"""Which mailboxes of a store other users have entries in, for ``IAclAccount.shared_mailboxes``.

A store that keeps each mailbox's access control list with the mailbox (the memory backend
does) would have to read every mailbox of every account to answer "what is shared with
bob?".  :class:`AclIndex` is kept next to the lists instead, one for the whole store: the
backend tells it of every entry given or taken (SETACL, DELETEACL) and of every mailbox
that goes (DELETE) or changes its name (RENAME), and the answer then costs what it holds:
the mailboxes whose list names the user, ``anyone``, or either with a leading ``-``.
"""

from __future__ import annotations

from collections.abc import Iterable

ANYONE = "anyone"


class AclIndex:
    """Identifier -> the (owner, mailbox name) pairs whose list has an entry for it."""

    def __init__(self) -> None:
        self._by_identifier: dict[str, dict[tuple[str, str], None]] = {}

    def entry(self, owner: str, name: str, identifier: str, present: bool) -> None:
        """``owner``'s ``name`` has (``present``) or no longer has an entry for ``identifier``."""
        if present:
            self._by_identifier.setdefault(identifier, {})[(owner, name)] = None
            return
        boxes = self._by_identifier.get(identifier)
        if boxes is not None:
            boxes.pop((owner, name), None)
            if not boxes:
                del self._by_identifier[identifier]

    def deleted(self, owner: str, name: str, identifiers: Iterable[str]) -> None:
        """``owner``'s ``name`` went, with the entries of its list for ``identifiers``."""
        for identifier in identifiers:
            self.entry(owner, name, identifier, False)

    def renamed(self, owner: str, old: str, new: str, identifiers: Iterable[str]) -> None:
        """``owner``'s ``old`` is now ``new``; its list (``identifiers``) went along."""
        for identifier in identifiers:
            self.entry(owner, old, identifier, False)
            self.entry(owner, new, identifier, True)

    def naming(self, user: str) -> list[tuple[str, str]]:
        """The (owner, name) of every mailbox whose list concerns ``user``, each once, in
        the order their entries were given."""
        found: dict[tuple[str, str], None] = {}
        for identifier in (user, ANYONE, "-" + user, "-" + ANYONE):
            found.update(self._by_identifier.get(identifier, {}))
        return list(found)
