"""How values are laid out in rows: flags, dates, UID sets, and the change notices.

Flags are one text column, `` \\Seen $Work `` (sorted, space-separated and space-framed), so
SQL can test a flag with ``instr(flags, ' \\Seen ')`` and Python splits it back.  An internal
date is whole seconds since the epoch plus the sender's UTC offset in minutes, and its
calendar day in that zone (what SEARCH BEFORE/ON/SINCE compare).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from mailserv.syntax.sequences import format_set, parse_sequence_set

MAX_NOTICE = 7000
"""Bytes of one NOTIFY payload (PostgreSQL allows 8000)."""


def flags_text(flags: Iterable[str]) -> str:
    return " " + " ".join(sorted(flags)) + " "


def flag_probe(flag: str) -> str:
    """What ``instr(flags, ?)`` looks for to test one flag."""
    return f" {flag} "


FLAG_INDEXES_4 = {"\\Seen": "mail_unseen", "\\Flagged": "mail_flagged", "\\Deleted": "mail_deleted"}
"""The partial indexes of schema version 4 over (mailbox_id, uid): the messages without
\\Seen, with \\Flagged, with \\Deleted, each written as :func:`flag_test` tests the flag
(a literal, not a parameter: only a query testing it so may use the index).
Schema 12 replaced the last two by indexes on ``marks`` (see :data:`MARKS`) and, on
PostgreSQL, dropped the first (see ``schema._page_local_flag_updates``)."""

MARKS = {"\\Flagged": 1, "\\Deleted": 2}
"""System flags also kept as bits of ``mail.marks`` (schema 12), each with a partial index
over (mailbox_id, uid) of the messages that have it (:data:`MARK_INDEXES`), so FLAGGED and
EXPUNGE read those rows alone (on SQLite the flagged index holds ``marks`` too, schema 16: a
FLAGGED search reads the index alone).  ``marks`` changes only when one of these flags does: a STORE
of \\Seen or of keywords leaves every indexed column as it was, so PostgreSQL's update stays
on its page (HOT)."""
MARK_INDEXES = {"\\Flagged": "mail_flagged", "\\Deleted": "mail_deleted"}


def marks_of(flags: Iterable[str]) -> int:
    """The ``marks`` bits of a flag set."""
    return sum(bit for flag, bit in MARKS.items() if flag in flags)


def mark_test(flag: str, present: bool, column: str = "marks") -> str:
    """SQL testing a flag of :data:`MARKS`, written as its partial index is (present).  An
    equality: PostgreSQL has no statistics of the expression and guesses that few rows pass
    one (``<> 0`` it guesses nearly all do, and reads the mailbox rather than the index)."""
    bit = MARKS[flag]
    return f"({column} & {bit}) = {bit if present else 0}"


def marks_sql(find: str, column: str = "flags") -> str:
    """SQL computing ``marks`` from the flags text (migration 12)."""
    return " + ".join(
        f"CASE WHEN {flag_test(find, flag, True, column)} THEN {bit} ELSE 0 END"
        for flag, bit in MARKS.items()
    )


def flag_test(find: str, flag: str, present: bool, column: str = "flags") -> str:
    """SQL testing a system ``flag`` (``find``: the dialect's substring function); written
    as the partial indexes of :data:`FLAG_INDEXES_4` are, so the planner can use them."""
    test = f"{find}({column}, '{flag_probe(flag)}')"
    return f"{test} > 0" if present else f"{test} = 0"


@dataclass(frozen=True, slots=True)
class When:
    """An internal date as stored."""

    seconds: int
    tz: int  # minutes east of UTC
    day: int  # proleptic ordinal of the calendar day in that zone

    @classmethod
    def of(cls, value: datetime) -> When:
        offset = value.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        return cls(int(value.timestamp()), minutes, value.date().toordinal())


class Zones:
    """``datetime`` objects back from rows; timezone objects are made once per offset."""

    def __init__(self) -> None:
        self._zones: dict[int, timezone] = {}

    def datetime(self, seconds: int, tz: int) -> datetime:
        zone = self._zones.get(tz)
        if zone is None:
            zone = self._zones[tz] = timezone(timedelta(minutes=tz))
        return datetime.fromtimestamp(seconds, zone)


# -- change notices ----------------------------------------------------------------------

ADDED = "a"
EXPUNGED = "x"
FLAGS = "f"
RENAMED = "n"


@dataclass(frozen=True, slots=True)
class Notice:
    """A change the other frontends must hear of: ``<sender> <kind> <mailbox> <modseq> <data>``.

    ``data`` is a UID set (added, expunged); a UID set followed by the flags those messages
    now have, space-separated (flags), or empty when the messages are to be read from the
    database (those at ``modseq``); or the new name (renamed).
    """

    sender: str
    kind: str
    mailbox_id: int
    modseq: int
    data: str = ""

    def encode(self) -> str:
        return f"{self.sender} {self.kind} {self.mailbox_id} {self.modseq} {self.data}"

    @classmethod
    def decode(cls, payload: str) -> Notice | None:
        parts = payload.split(" ", 4)
        if len(parts) != 5 or not (parts[2].isdigit() and parts[3].isdigit()):
            return None
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]), parts[4])

    def uids(self) -> list[int]:
        """The UIDs of an added/expunged/flags notice (ascending)."""
        out: list[int] = []
        text = self.data.split(" ", 1)[0]
        if text:
            for low, high in parse_sequence_set(text).resolve(0):
                out.extend(range(low, high + 1))
        return out

    def flags(self) -> frozenset[str]:
        """The flags a flags notice sets."""
        return frozenset(self.data.split(" ")[1:]) - {""}


def uid_notices(
    sender: str, kind: str, mailbox_id: int, modseq: int, uids: Sequence[int], suffix: str = ""
) -> Iterator[str]:
    """Payloads for ``uids`` (then ``suffix``), split so none is longer than PostgreSQL takes."""
    text = format_set(sorted(uids))
    room = MAX_NOTICE - len(Notice(sender, kind, mailbox_id, modseq, suffix).encode())
    if room < 64:
        raise ValueError("notice suffix too long")
    while text:
        if len(text) <= room:
            chunk, text = text, ""
        else:
            cut = text.rfind(",", 0, room)
            chunk, text = text[:cut], text[cut + 1 :]
        yield Notice(sender, kind, mailbox_id, modseq, chunk + suffix).encode()
