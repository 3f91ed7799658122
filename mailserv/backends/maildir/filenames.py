"""Maildir file names: ``<base>:2,<flags>``, unique bases, and the flag letters.

A base looks like Dovecot's, ``<secs>.M<usecs>P<pid>Q<n>R<random>.<host>,S=<size>,W=<vsize>``:
``S=`` is the file size and ``W=`` the size with CRLF line ends (RFC822.SIZE), so readers
need not stat or read the file to learn them.  The ``:2,`` info carries the flags: upper
case letters for system flags, ``a``..``z`` for keywords numbered in ``dovecot-keywords``.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping

from mailserv.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

INFO_SEPARATOR = ":2,"

SYSTEM_LETTERS: Mapping[str, str] = {
    DRAFT: "D",
    FLAGGED: "F",
    ANSWERED: "R",
    SEEN: "S",
    DELETED: "T",
}
LETTER_FLAGS: Mapping[str, str] = {letter: flag for flag, letter in SYSTEM_LETTERS.items()}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"

_SIZE_FIELD = re.compile(r",([SW])=(\d+)")


def split(filename: str) -> tuple[str, str]:
    """(base, info letters); a name without ``:2,`` has empty info."""
    base, sep, info = filename.partition(INFO_SEPARATOR)
    if not sep:
        base = filename.partition(":")[0]
        info = ""
    return base, info


def join(base: str, letters: str) -> str:
    return base + INFO_SEPARATOR + letters


def sizes(base: str) -> tuple[int | None, int | None]:
    """(S=, W=) from a base, None where absent."""
    found = dict(_SIZE_FIELD.findall(base))
    size, vsize = found.get("S"), found.get("W")
    return (int(size) if size else None, int(vsize) if vsize else None)


def saved_seconds(base: str) -> int | None:
    """When the file was delivered, in seconds since the epoch: the first part of its base
    (ours, Dovecot's and most deliverers' names start so; every APPEND, COPY and MOVE
    makes a new base), None for a name that does not."""
    head, dot, _ = base.partition(".")
    return int(head) if dot and head.isdigit() and len(head) < 12 else None


def info_letters(flags: Iterable[str], keyword_letters: Mapping[str, str], keep: str = "") -> str:
    """The sorted ``:2,`` letters for ``flags``; ``keep`` are letters we do not map but must
    not drop (``P`` "passed", keywords another program numbered)."""
    letters = set(keep)
    for flag in flags:
        letter = SYSTEM_LETTERS.get(flag) or keyword_letters.get(flag)
        if letter:
            letters.add(letter)
    return "".join(sorted(letters))


def host_name() -> str:
    """This host as a maildir name part (``/`` and ``:`` written as octal escapes)."""
    name = os.uname().nodename or "localhost"
    return name.replace("/", "\\057").replace(":", "\\072")


class BaseNames:
    """Makes unique bases; one per backend so the counter is not module state."""

    def __init__(self) -> None:
        self._host = host_name()
        self._counter = itertools.count(1)

    def new(self, size: int, vsize: int) -> str:
        now = time.time_ns() // 1000
        seconds, micros = divmod(now, 1_000_000)
        unique = f"M{micros}P{os.getpid()}Q{next(self._counter)}R{secrets.token_hex(4)}"
        return f"{seconds}.{unique}.{self._host},S={size},W={vsize}"
