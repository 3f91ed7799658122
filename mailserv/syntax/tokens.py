"""The generic argument tree the parser builds; command handlers give it meaning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom as sent (case preserved), e.g. ``INBOX``, ``\\Seen``, ``1:*``, ``NIL``.

    Fetch attributes with a section stay one atom, brackets and partial included:
    ``BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>``.
    """

    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string (escapes removed) or a literal; ``literal8`` marks ``~{n}``."""

    value: bytes
    literal: bool = False
    literal8: bool = False


@dataclass(frozen=True, slots=True)
class ParenList:
    """A parenthesised list of tokens."""

    items: tuple[Token, ...]


Token = Atom | String | ParenList


@dataclass(frozen=True, slots=True)
class Command:
    """One complete command line.  ``name`` is upper case; for ``UID FETCH`` it is ``FETCH``
    with ``uid=True``."""

    tag: str
    name: str
    args: tuple[Token, ...]
    uid: bool = False
