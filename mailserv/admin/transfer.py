"""What ``mailserv import`` and ``export`` share: one message on its way, the flag letters
of Maildir and mbox, the per-(user, source) state files and the progress bar."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from mailserv.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, RECENT, SEEN

STATE_DIR = "transfers"
FORWARDED = "$Forwarded"

MAILDIR_LETTERS = {"D": DRAFT, "F": FLAGGED, "P": FORWARDED, "R": ANSWERED, "S": SEEN}
MAILDIR_LETTERS["T"] = DELETED
"""Maildir's info letters (``:2,``) and the flags they stand for (P: passed, forwarded)."""


class TransferError(Exception):
    """The source or destination cannot be used; the text is for the operator."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message read from a source: ``folder`` is a mailserv name (``/`` delimited),
    ``key`` names it in the source for the resume state (unique within the source)."""

    folder: str
    key: str
    data: bytes
    flags: frozenset[str]
    internaldate: datetime | None


def stored_flags(flags: Iterable[str]) -> frozenset[str]:
    """The flags a backend stores: ``\\Recent`` is session state."""
    return frozenset(flags) - {RECENT}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_path(data_dir: str, kind: str, user: str, source: str) -> str:
    """``DATA/transfers/<kind>-<user>-<hash of source>.log``: one per (user, source)."""
    tag = hashlib.sha256(f"{user}\0{source}".encode("utf-8", "surrogateescape")).hexdigest()
    safe_user = "".join(c if c.isalnum() or c in "._-" else "_" for c in user)[:40]
    return os.path.join(data_dir, STATE_DIR, f"{kind}-{safe_user}-{tag[:16]}.log")


class StateLog:
    """An append-only file of JSON records, each flushed and fsynced before the work it
    describes goes on.  A torn last line (the process killed while writing it) is ignored."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._file: IO[str] | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        try:
            handle = open(self.path, encoding="utf-8")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # torn by an interruption
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if isinstance(record, dict):
                    yield record

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see close
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Progress:
    """A tqdm bar on stderr when it is a terminal and not ``quiet``; else nothing."""

    def __init__(self, total: int | None, unit: str, quiet: bool, desc: str) -> None:
        self._bar: Any = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, unit_scale=unit == "B")

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
