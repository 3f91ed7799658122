"""What every connection of the state checker was told: violations, counts, mailbox facts."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from bench.statecheck.wire import clip

KEEP_VIOLATIONS = 500


@dataclass
class Violation:
    client: str
    command: str
    line: str
    what: str

    def __str__(self) -> str:
        return f"[{self.client}] {self.what}\n    command: {self.command}\n    line: {self.line}"


@dataclass
class MailboxFacts:
    """What any connection was told about one mailbox (of one user)."""

    uidvalidity: int | None = None
    max_uid: int = 0
    """The highest UID any connection was told of."""
    max_uidnext: int = 0
    """The highest UIDNEXT any connection was told."""
    expunged: dict[int, int] = field(default_factory=dict)
    """UID → the world clock when a connection was first told that it was expunged."""
    bodies: dict[int, bytes] = field(default_factory=dict)
    """UID → its whole message, as a FETCH BODY[] returned it first."""


@dataclass(frozen=True)
class Snapshot:
    """A mailbox's facts when a command was sent (what its answer must not contradict)."""

    key: str
    clock: int
    max_uid: int
    max_uidnext: int


class World:
    """Shared by every connection: the violations, the command counts, the mailbox facts.

    ``clock`` counts the responses received by any connection, in the order they arrived;
    all connections run on one event loop, so that order is real time.
    """

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.violation_kinds: Counter[str] = Counter()
        self.trace: TextIO | None = None
        """Every line sent and received goes here when set (``--trace FILE``)."""
        self.violation_count = 0
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.clock = 0
        self.facts: dict[str, MailboxFacts] = {}
        self.rounds = 0
        self.compared = 0
        self.unknown = 0

    def violation(self, client: str, command: str, line: bytes | str, what: str) -> None:
        if self.trace is not None:
            self.trace.write(f"{self.clock} {client} VIOLATION {what} | {clip(line)}\n")
        self.violation_count += 1
        self.violation_kinds[re.sub(r"\d+", "n", what)] += 1
        if len(self.violations) < KEEP_VIOLATIONS:
            self.violations.append(Violation(client, clip(command), clip(line), what))

    def log(self, name: str, direction: str, data: bytes) -> None:
        if self.trace is not None:
            self.trace.write(f"{self.clock} {name} {direction} {clip(data, 400)}\n")

    def mailbox(self, key: str) -> MailboxFacts:
        return self.facts.setdefault(key, MailboxFacts())

    def snapshot(self, key: str) -> Snapshot:
        facts = self.mailbox(key)
        return Snapshot(key, self.clock, facts.max_uid, facts.max_uidnext)
