"""mbox files (mboxrd) in and out, one message at a time.

Written: a ``From MAILER-DAEMON <internal date, UTC, asctime>`` line, then ``Status:``,
``X-Status:`` and ``X-Keywords:`` lines carrying the flags, then the message with every line
matching ``>*From `` given one more ``>``, then an empty line.  Read: the same undone — the
flag lines (and the other mbox bookkeeping headers Dovecot and mutt add: ``X-UID``,
``X-IMAP``, ``X-IMAPbase``) are taken out of the header wherever they are, one ``>`` is
taken off ``>+From `` lines and the separating empty line is dropped.  A message that does
not end with a line break gets a private ``X-Mailserv-Eol: none`` line so that the break
the format needs is taken off again.  So a message comes back byte for byte unless it
carried one of those bookkeeping headers itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from mailserv.admin.transfer import SourceMessage, TransferError, stored_flags
from mailserv.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

SUFFIX = ".mbox"
_FROM_LINE = re.compile(
    rb"From \S*\s+\w{3} (\w{3}) +(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2}) (?:\S+ )?(\d{4})"
)
_MONTHS = {
    name: index
    for index, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_BOOKKEEPING = re.compile(
    rb"^(status|x-status|x-keywords|x-uid|x-imap|x-imapbase|x-mailserv-eol):[^\n]*\n"
    rb"(?:[ \t][^\n]*\n)*",
    re.MULTILINE | re.IGNORECASE,
)
_HEADER_END = re.compile(rb"^\r?\n", re.MULTILINE)
NO_EOL = b"x-mailserv-eol: none"
X_STATUS = {"A": ANSWERED, "F": FLAGGED, "T": DRAFT, "D": DELETED}


def _header_value(header: bytes, name: bytes) -> str:
    found = re.search(rb"^" + name + rb":([^\n]*(?:\n[ \t][^\n]*)*)", header, re.M | re.I)
    return found.group(1).decode("utf-8", "replace").strip() if found else ""


def _flags(header: bytes) -> frozenset[str]:
    flags = set()
    if "R" in _header_value(header, b"status"):
        flags.add(SEEN)
    flags.update(
        flag for letter, flag in X_STATUS.items() if letter in _header_value(header, b"x-status")
    )
    flags.update(re.split(r"[\s,]+", _header_value(header, b"x-keywords")))
    flags.discard("")
    return stored_flags(flags)


def _date(line: bytes) -> datetime | None:
    found = _FROM_LINE.match(line)
    if found is None:
        return None
    month = _MONTHS.get(found.group(1).decode().lower())
    if month is None:
        return None
    day, hour, minute, second, year = (int(found.group(n)) for n in (2, 3, 4, 5, 6))
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def _message(from_line: bytes, raw: bytes, folder: str, key: str) -> SourceMessage:
    raw = raw.removesuffix(b"\n")  # the empty line before the next From line
    end = _HEADER_END.search(raw)
    split = end.start() if end else len(raw)
    header = raw[:split]
    flags = _flags(header)
    if NO_EOL in header.lower():
        raw = raw.removesuffix(b"\n")
    data = _BOOKKEEPING.sub(b"", header) + raw[split:]
    return SourceMessage(folder, key, _UNQUOTE.sub(rb"\1", data), flags, _date(from_line))


class MboxReader:
    """The messages of one mbox file, read line by line; ``position``: bytes read so far.
    The key of a message is ``tag`` and the offset of its From line."""

    def __init__(self, path: str, folder: str, tag: str = "") -> None:
        self.path = path
        self.tag = tag
        self.folder = folder
        self.position = 0
        self.size = os.path.getsize(path)
        with open(path, "rb") as handle:
            self._first_line(handle)  # refused before any work starts

    def _first_line(self, handle: BinaryIO) -> bytes:
        first = handle.readline()
        while first in (b"\n", b"\r\n"):
            first = handle.readline()
        if not first.startswith(b"From "):
            raise TransferError(f"{self.path} is not an mbox file (no 'From ' line first)")
        return first

    def __iter__(self) -> Iterator[SourceMessage]:
        with open(self.path, "rb") as handle:
            first = self._first_line(handle)
            start = handle.tell() - len(first)
            lines: list[bytes] = []
            from_line = first
            for line in handle:
                if line.startswith(b"From "):
                    yield _message(from_line, b"".join(lines), self.folder, f"{self.tag}{start}")
                    start += len(from_line) + sum(len(line) for line in lines)
                    self.position = start
                    from_line, lines = line, []
                else:
                    lines.append(line)
            yield _message(from_line, b"".join(lines), self.folder, f"{self.tag}{start}")
            self.position = self.size


def from_line(internaldate: datetime) -> bytes:
    when = internaldate.astimezone(UTC)
    stamp = f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"  # asctime(): "Dec  5"
    return f"From MAILER-DAEMON {stamp}\n".encode()


def entry(data: bytes, flags: frozenset[str], internaldate: datetime) -> bytes:
    """One message as written to an mbox file (From line to the empty line after it)."""
    newline = b"\r\n" if data.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    status = b"Status: RO" if SEEN in flags else b"Status: O"
    lines = [from_line(internaldate), status, newline]
    letters = "".join(letter for letter, flag in X_STATUS.items() if flag in flags)
    if letters:
        lines += [b"X-Status: ", letters.encode(), newline]
    keywords = sorted(flag for flag in flags if not flag.startswith("\\"))
    if keywords:
        lines += [b"X-Keywords: ", " ".join(keywords).encode("utf-8"), newline]
    tail = b"\n"
    if not data.endswith(b"\n"):
        lines += [b"X-Mailserv-Eol: none", newline]
        tail = b"\n\n"
    lines += [_QUOTE.sub(rb">\1", data), tail]
    return b"".join(lines)


def open_for_append(path: str, offset: int) -> BinaryIO:
    """``path`` cut back to ``offset`` (what a previous run finished) and opened at its end."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - the exporter closes it
    handle.truncate(offset)
    handle.seek(offset)
    return handle
