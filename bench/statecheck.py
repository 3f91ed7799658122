"""A concurrent, model-based IMAP state checker: ``python -m bench.statecheck``.

``--clients`` clients (seeded random, ``--seed``) share a few mailboxes of one or a few users
over real sockets, each on its own raw IMAP connection, doing SELECT/EXAMINE, FETCH (flags,
headers, whole bodies, partials), STORE (system flags and new keywords), APPEND, COPY, MOVE,
EXPUNGE, UID EXPUNGE, STATUS, IDLE, NOOP, CLOSE, LOGOUT and reconnects.  Every connection
keeps what the server told it (:class:`Model`: message count, sequence number → UID, flags
per message, the FLAGS list, UIDVALIDITY, UIDNEXT) and checks every response against it and
against what any connection was told before (:class:`World`): no sequence number beyond the
known count, EXPUNGE renumbering, UIDs ascending and never reused, EXISTS never below the
known count, keywords in FETCH listed by an earlier FLAGS, nothing after BYE, LOGOUT answered
by BYE and the tagged OK only, tags matching, UIDNEXT never going back and above every UID
seen, UIDVALIDITY stable, message bodies immutable (partials and headers slices of them).
Every ``--round`` seconds the clients stop, each NOOPs, and a fresh connection EXAMINEs each
mailbox and fetches ``1:* (UID FLAGS)``: it must agree with every client's model.

Violations are counted with their context, not raised.  Prints the commands per kind,
commands/s and the violations (the first ``--show``); exits 1 when there was one.
The server is started like ``bench.run`` does (``--backend`` memory, maildir, sql-sqlite,
sql-postgresql, proxy; ``dovecot`` runs the checker against a private Dovecot alone, as a
reference); traffic goes only to 127.0.0.1.  A connection that saw a violation selects its
mailbox again, and until then what it learns stays out of the shared facts, so one fault is
not blamed on other clients.  ``--trace FILE`` writes every line sent and received.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bench import messages
from bench.harness import BackendSpec, ParseError, ServerProcess, Value, parse_values, quote

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
RECENT = "\\RECENT"
MAILBOXES = ("INBOX", "Shared1", "Shared2")
READ_LIMIT = 1 << 24
RESPONSE_TIMEOUT = 60.0
KEEP_VIOLATIONS = 500

_NUMBERED = re.compile(rb"^\* (\d+) ([A-Za-z]+)\b ?(.*)$", re.S)
_STATUS_LINE = re.compile(rb"^\* (OK|NO|BAD|BYE|PREAUTH)\b ?(.*)$", re.S | re.I)
_KEYWORD = re.compile(rb"^\* ([A-Za-z]+)\b ?(.*)$", re.S)
_TAGGED = re.compile(rb"^([^\s*+]\S*) (OK|NO|BAD)\b ?(.*)$", re.S | re.I)
_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]")
_PARTIAL_ASKED = re.compile(r"BODY\.PEEK\[\]<(\d+)\.(\d+)>", re.I)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")


def clip(data: bytes | str, limit: int = 240) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def uid_set(text: str) -> list[int]:
    """``1:3,7`` → [1, 2, 3, 7] (no ``*``)."""
    out: list[int] = []
    for item in text.split(","):
        if ":" in item:
            a, b = sorted(int(x) for x in item.split(":"))
            out += range(a, b + 1)
        elif item:
            out.append(int(item))
    return out


def seq_numbers(text: str, count: int) -> list[int]:
    """A sequence set (``*`` is ``count``) → its numbers."""
    return uid_set(text.replace("*", str(count)))


def compact(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7] → ``1:3,7``."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# -- what everyone was told --------------------------------------------------------------


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


# -- one connection's model ---------------------------------------------------------------


@dataclass
class Entry:
    """One message of the selected mailbox as the connection knows it."""

    uid: int | None = None
    flags: frozenset[str] | None = None
    floor: int = 0
    """Its UID must be above this (the highest UID known when EXISTS announced it)."""
    ceiling: int | None = None
    """Its UID must be below this (the UIDNEXT of the SELECT that showed it)."""


_SIMPLE_TOKEN = re.compile(rb"[()]|[^\s()]+")


def parse_simple(data: bytes) -> list[Value]:
    """:func:`parse_values` for the common case of no strings and no literals, faster."""
    if b'"' in data or b"{" in data or b"[" in data:
        return parse_values(data)[0]
    stack: list[list[Value]] = [[]]
    for token in _SIMPLE_TOKEN.findall(data):
        if token == b"(":
            stack.append([])
        elif token == b")":
            if len(stack) == 1:
                raise ParseError("unbalanced parenthesis")
            inner = stack.pop()
            stack[-1].append(inner)
        elif token.isdigit():
            stack[-1].append(int(token))
        elif token.upper() == b"NIL":
            stack[-1].append(None)
        else:
            stack[-1].append(token.decode("utf-8", "replace"))
    if len(stack) != 1:
        raise ParseError("unbalanced parenthesis")
    return stack[0]


def flag_names(value: Value) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(f) if not isinstance(f, bytes) else f.decode("utf-8", "replace") for f in value]


class Model:
    """What the server told one connection, checked response by response.

    Feed it :meth:`begin` when a command is sent, :meth:`untagged` for every untagged
    response (literals inlined) and :meth:`tagged` for the tagged one; violations go to the
    world.  It knows nothing of sockets, so wrong response streams can be fed to it directly.
    """

    def __init__(self, world: World, name: str, user: str = "user") -> None:
        self.world = world
        self.name = name
        self.user = user
        self.state = "auth"  # auth, selecting, selected, logout, closed
        self.mailbox: str | None = None
        self.readonly = False
        self.entries: list[Entry] = []
        self.flag_list: set[str] = set()
        self.flags_told = False
        self.initial_exists = False
        self.stale = False
        """It saw a violation: the client selects its mailbox again."""
        self.tainted = False
        self.uidvalidity: int | None = None
        self.uidnext: int | None = None
        self.session_max_uid = 0
        self.session_expunged: set[int] = set()
        self.select_snapshot: Snapshot | None = None
        self.bye = False
        self.after_bye = False
        self.tag: str | None = None
        self.command = "(greeting)"
        self.kind = ""
        self.target: Snapshot | None = None
        self.partial_length: int | None = None
        self.last_status = ""

    # -- helpers --------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self.entries)

    def key(self, mailbox: str) -> str:
        name = "INBOX" if mailbox.upper() == "INBOX" else mailbox
        return f"{self.user}/{name}"

    def bad(self, line: bytes | str, what: str) -> None:
        self.world.violation(self.name, self.command, line, what)
        # What it knows may be wrong from now on: keep it out of the shared facts (where it
        # would blame other clients), and let the client select its mailbox again.
        self.tainted = True
        self.stale = True

    @property
    def facts(self) -> MailboxFacts | None:
        return self.world.mailbox(self.key(self.mailbox)) if self.mailbox else None

    # -- the command being sent ----------------------------------------------------------

    def begin(self, tag: str, command: str, target: str | None = None) -> None:
        """``command`` is the text after the tag; ``target`` the mailbox it writes to."""
        self.tag = tag
        self.command = command
        words = command.split(" ", 2)
        kind = words[0].upper()
        if kind == "UID" and len(words) > 1:
            kind = "UID " + words[1].upper()
        self.kind = kind
        self.world.kinds[kind] += 1
        self.target = self.world.snapshot(self.key(target)) if target else None
        match = _PARTIAL_ASKED.search(command)
        self.partial_length = int(match.group(2)) if match else None
        if self.bye:
            self.bad("", "command sent after the server's BYE (checker bug)")
        if kind in ("SELECT", "EXAMINE"):
            mailbox = target or ""
            self.state = "selecting"
            self.mailbox = mailbox
            self.readonly = kind == "EXAMINE"
            self.entries = []
            self.flag_list = set()
            self.flags_told = False
            self.initial_exists = False
            self.stale = False
            self.tainted = False
            self.uidvalidity = None
            self.uidnext = None
            self.session_max_uid = 0
            self.session_expunged = set()
            self.select_snapshot = self.target
        elif kind in ("STORE", "UID STORE") and ".SILENT" in command.upper():
            if kind == "STORE":
                for n in seq_numbers(words[1], self.count):
                    if 1 <= n <= self.count:
                        self.entries[n - 1].flags = None
            else:
                wanted = set(uid_set(words[2].split(" ", 1)[0]))
                for entry in self.entries:
                    if entry.uid in wanted:
                        entry.flags = None

    # -- untagged responses ---------------------------------------------------------------

    def untagged(self, line: bytes) -> None:
        self.world.clock += 1
        if self.bye:
            if not self.after_bye:  # once per connection: a LOGOUT may flush hundreds
                self.after_bye = True
                self.bad(line, "response after BYE")
            return
        if line.startswith(b"+"):
            if self.kind != "IDLE":
                self.bad(line, "continuation request for a command that sent no literal")
            return
        status = _STATUS_LINE.match(line)
        if self.kind == "LOGOUT" and not (status and status.group(1).upper() == b"BYE"):
            self.bad(line, "LOGOUT answered with something else than BYE")
            return
        if status:
            self._status(status.group(1).upper().decode(), status.group(2), line)
            return
        numbered = _NUMBERED.match(line)
        if numbered:
            n = int(numbered.group(1))
            what = numbered.group(2).upper()
            if what == b"EXISTS":
                self._exists(n, line)
            elif what == b"EXPUNGE":
                self._expunge(n, line)
            elif what == b"FETCH":
                self._fetch(n, numbered.group(3), line)
            elif what == b"RECENT":
                self._needs_mailbox(line)
            else:
                self.bad(line, "unknown numbered response")
            return
        keyword = _KEYWORD.match(line)
        if keyword is None:
            self.bad(line, "unparsable response")
            return
        what = keyword.group(1).upper()
        if what == b"FLAGS":
            self._flags(keyword.group(2), line)
        elif what == b"STATUS":
            self._status_response(keyword.group(2), line)

    def _needs_mailbox(self, line: bytes) -> bool:
        if self.state not in ("selected", "selecting"):
            self.bad(line, f"mailbox data while no mailbox is selected (state {self.state})")
            return False
        return True

    def _status(self, kind: str, rest: bytes, line: bytes) -> None:
        self.world.statuses["* " + kind] += 1
        if kind == "BYE":
            if self.kind != "LOGOUT":
                self.bad(line, "BYE the client did not ask for")
            self.bye = True
            return
        if kind == "BAD":
            self.bad(line, "untagged BAD")
        self._code(rest, line)

    def _code(self, rest: bytes, line: bytes) -> None:
        match = _CODE.match(rest)
        if match is None:
            return
        name = match.group(1).upper().decode()
        arg = (match.group(2) or b"").decode("utf-8", "replace")
        if name == "UIDVALIDITY" and self.state == "selecting":
            self.uidvalidity = int(arg)
        elif name == "UIDNEXT" and self.state == "selecting":
            self.uidnext = int(arg)
            for entry in self.entries:  # the messages shown so far are below it
                entry.ceiling = self.uidnext
        elif name == "APPENDUID":
            validity, uids = arg.split(" ", 1)
            self._new_uids(int(validity), uid_set(uids), line)
        elif name == "COPYUID":
            validity, _source, uids = arg.split(" ", 2)
            self._new_uids(int(validity), uid_set(uids), line)

    def _new_uids(self, validity: int, uids: list[int], line: bytes) -> None:
        """UIDs of new messages in the command's target (APPENDUID, COPYUID)."""
        if self.target is None:
            self.bad(line, "UID response code for a command with no target mailbox")
            return
        facts = self.world.mailbox(self.target.key)
        if facts.uidvalidity is None:
            facts.uidvalidity = validity
        elif facts.uidvalidity != validity:
            self.bad(line, f"UIDVALIDITY {validity}, was {facts.uidvalidity}")
            return
        for uid in uids:
            gone = facts.expunged.get(uid)
            if gone is not None and gone < self.target.clock:  # (later: others were quicker)
                self.bad(line, f"new message has UID {uid}, which was expunged before")
            if uid <= self.target.max_uid:
                self.bad(line, f"new UID {uid} not above UID {self.target.max_uid} seen before")
            if uid < self.target.max_uidnext:
                self.bad(line, f"new UID {uid} below UIDNEXT {self.target.max_uidnext} told")
            facts.max_uid = max(facts.max_uid, uid)

    def _exists(self, n: int, line: bytes) -> None:
        if not self._needs_mailbox(line):
            return
        if n < self.count:
            self.bad(line, f"EXISTS {n} below the {self.count} messages known")
            # Believe it, and forget which UIDs and flags the messages have (the server may
            # have mixed another mailbox's updates in), so one mistake is reported once.
            self.entries = [Entry() for _ in range(n)]
            self.session_max_uid = 0
            self.uidnext = None
            return
        if self.state == "selecting" and not self.initial_exists:
            # The SELECT's view; below its UIDNEXT (whether that came before or comes after).
            self.initial_exists = True
            self.entries += [Entry(ceiling=self.uidnext) for _ in range(n - self.count)]
            return
        # New since the SELECT's view (also an EXISTS after the first inside its response).
        floor = max(self.session_max_uid, (self.uidnext or 1) - 1)
        self.entries += [Entry(floor=floor) for _ in range(n - self.count)]

    def _expunge(self, n: int, line: bytes) -> None:
        if not self._needs_mailbox(line):
            return
        if self.kind in ("FETCH", "STORE", "SEARCH"):
            self.bad(line, f"EXPUNGE during {self.kind} (RFC 3501 7.4.1)")
        if not 1 <= n <= self.count:
            self.bad(line, f"EXPUNGE {n} beyond the {self.count} messages known")
            return
        entry = self.entries.pop(n - 1)
        if entry.uid is not None:
            self.session_expunged.add(entry.uid)
            facts = self.facts
            assert facts is not None
            if not self.tainted:
                facts.expunged.setdefault(entry.uid, self.world.clock)

    def _flags(self, rest: bytes, line: bytes) -> None:
        if not self._needs_mailbox(line):
            return
        try:
            values, _ = parse_values(rest)
        except ParseError as e:
            self.bad(line, f"unparsable FLAGS: {e}")
            return
        names = flag_names(values[0]) if values else None
        if names is None:
            self.bad(line, "FLAGS without a list")
            return
        self.flag_list = {f.upper() for f in names}
        self.flags_told = True

    def _status_response(self, rest: bytes, line: bytes) -> None:
        try:
            values, _ = parse_values(rest)
        except ParseError as e:
            self.bad(line, f"unparsable STATUS: {e}")
            return
        if len(values) != 2 or not isinstance(values[1], list):
            self.bad(line, "STATUS without an attribute list")
            return
        raw_name = values[0]
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        items = values[1]
        attrs = {str(k).upper(): v for k, v in zip(items[::2], items[1::2], strict=False)}
        facts = self.world.mailbox(self.key(name))
        snap = self.target
        validity = attrs.get("UIDVALIDITY")
        if isinstance(validity, int):
            if facts.uidvalidity is None:
                facts.uidvalidity = validity
            elif facts.uidvalidity != validity:
                self.bad(line, f"STATUS UIDVALIDITY {validity}, was {facts.uidvalidity}")
        uidnext = attrs.get("UIDNEXT")
        if isinstance(uidnext, int):
            if snap is not None and uidnext < snap.max_uidnext:
                self.bad(line, f"STATUS UIDNEXT {uidnext} below UIDNEXT {snap.max_uidnext} told")
            if snap is not None and uidnext <= snap.max_uid:
                self.bad(line, f"STATUS UIDNEXT {uidnext} not above UID {snap.max_uid} seen")
            facts.max_uidnext = max(facts.max_uidnext, uidnext)

    def _fetch(self, n: int, rest: bytes, line: bytes) -> None:
        if not self._needs_mailbox(line):
            return
        if not 1 <= n <= self.count:
            self.bad(line, f"FETCH {n} beyond the {self.count} messages known")
            return
        try:
            values = parse_simple(rest)
            if len(values) != 1 or not isinstance(values[0], list) or len(values[0]) % 2:
                raise ParseError("not one list of item pairs")
        except ParseError as e:
            self.bad(line, f"unparsable FETCH: {e}")
            return
        items = values[0]
        data = {str(k).upper(): v for k, v in zip(items[::2], items[1::2], strict=True)}
        entry = self.entries[n - 1]
        uid = data.get("UID")
        if uid is not None:
            if not isinstance(uid, int):
                self.bad(line, "UID not a number")
            else:
                self._learn_uid(n, uid, line)
        if "FLAGS" in data:
            names = flag_names(data["FLAGS"])
            if names is None:
                self.bad(line, "FLAGS not a list")
            else:
                for flag in names:
                    if not flag.startswith("\\") and flag.upper() not in self.flag_list:
                        told = "the FLAGS list" if self.flags_told else "any FLAGS response"
                        self.bad(line, f"keyword {flag} in FETCH but not in {told}")
                entry.flags = frozenset(f.upper() for f in names) - {RECENT}
        for name, value in data.items():
            if name.startswith(("BODY[", "RFC822")):
                self._body(entry, name, value, line)

    def _learn_uid(self, n: int, uid: int, line: bytes) -> None:
        entry = self.entries[n - 1]
        if entry.uid is not None:
            if entry.uid != uid:
                self.bad(line, f"message {n} has UID {uid}, was told UID {entry.uid}")
            return
        facts = self.facts
        assert facts is not None
        if uid in self.session_expunged:
            self.bad(line, f"UID {uid} again after its EXPUNGE")
        gone = facts.expunged.get(uid)
        if gone is not None and self.select_snapshot and gone < self.select_snapshot.clock:
            self.bad(line, f"UID {uid} was expunged before this mailbox was selected")
        if uid <= entry.floor:
            self.bad(line, f"new message has UID {uid}, not above UID {entry.floor} known")
        if entry.ceiling is not None and uid >= entry.ceiling:
            self.bad(line, f"UID {uid} not below the SELECT's UIDNEXT {entry.ceiling}")
        for i in range(n - 2, -1, -1):
            before = self.entries[i].uid
            if before is not None:
                if before >= uid:
                    self.bad(line, f"UIDs not ascending: message {i + 1} has UID {before}")
                break
        for i in range(n, self.count):
            after = self.entries[i].uid
            if after is not None:
                if after <= uid:
                    self.bad(line, f"UIDs not ascending: message {i + 1} has UID {after}")
                break
        entry.uid = uid
        self.session_max_uid = max(self.session_max_uid, uid)
        if not self.tainted:
            facts.max_uid = max(facts.max_uid, uid)

    def _body(self, entry: Entry, name: str, value: Value, line: bytes) -> None:
        if not isinstance(value, bytes) or entry.uid is None:
            return
        facts = self.facts
        assert facts is not None
        whole = facts.bodies.get(entry.uid)
        if name in ("BODY[]", "RFC822"):
            if whole is None:
                facts.bodies[entry.uid] = value
            elif whole != value:
                self.bad(line, f"UID {entry.uid}: body differs from an earlier FETCH")
            return
        if whole is None:
            return
        if name.startswith("BODY[]<"):
            origin = int(name[7:-1])
            want = whole[origin:]
            if self.partial_length is not None:
                want = want[: self.partial_length]
            if value != want:
                self.bad(line, f"UID {entry.uid}: partial {name} is not that slice of its body")
        elif name == "BODY[HEADER]":
            end = whole.find(b"\r\n\r\n")
            want = whole if end < 0 else whole[: end + 4]
            if value != want:
                self.bad(line, f"UID {entry.uid}: BODY[HEADER] is not the head of its body")

    # -- the tagged response --------------------------------------------------------------

    def tagged(self, line: bytes) -> str:
        """The tagged line of the command in flight; its status (OK, NO, BAD)."""
        self.world.clock += 1
        match = _TAGGED.match(line)
        if match is None:
            self.bad(line, "unparsable tagged response")
            return "BAD"
        tag = match.group(1).decode("utf-8", "replace")
        status = match.group(2).upper().decode()
        self.last_status = status
        self.world.statuses[f"{self.kind} {status}"] += 1
        if tag != self.tag:
            self.bad(line, f"tagged response for {tag!r}, the command in flight is {self.tag!r}")
            return status
        if self.bye and self.kind != "LOGOUT":
            self.bad(line, "tagged response after BYE")
        if status == "BAD":
            self.bad(line, "BAD answer to a valid command")
        self._code(match.group(3), line)
        kind = self.kind
        if kind == "LOGOUT":
            if not self.bye:
                self.bad(line, "LOGOUT completed without BYE")
            if status != "OK":
                self.bad(line, "LOGOUT not OK")
            self.state = "logout"
        elif kind in ("SELECT", "EXAMINE"):
            self._selected(status == "OK", line)
        elif kind in ("CLOSE", "UNSELECT") and status == "OK":
            self.state = "auth"
            self.mailbox = None
            self.entries = []
        self.tag = None
        self.kind = ""
        return status

    def _selected(self, ok: bool, line: bytes) -> None:
        if not ok:
            self.state = "auth"
            self.mailbox = None
            self.entries = []
            return
        self.state = "selected"
        facts = self.facts
        snap = self.select_snapshot
        assert facts is not None and snap is not None
        if self.uidvalidity is None:
            self.bad(line, "SELECT without UIDVALIDITY")
        elif facts.uidvalidity is None:
            facts.uidvalidity = self.uidvalidity
        elif facts.uidvalidity != self.uidvalidity:
            self.bad(line, f"UIDVALIDITY {self.uidvalidity}, was {facts.uidvalidity}")
        if not self.flags_told:
            self.bad(line, "SELECT without FLAGS")
        if self.uidnext is not None:
            if self.uidnext < snap.max_uidnext:
                self.bad(line, f"UIDNEXT {self.uidnext} below UIDNEXT {snap.max_uidnext} told")
            if self.uidnext <= snap.max_uid:
                self.bad(line, f"UIDNEXT {self.uidnext} not above UID {snap.max_uid} seen")
            facts.max_uidnext = max(facts.max_uidnext, self.uidnext)

    def closed(self) -> None:
        """The server closed the connection."""
        if self.state != "logout" and not self.bye:
            self.bad("(end of stream)", "connection closed without BYE")
        self.state = "closed"


def compare(world: World, reference: Model, client: Model) -> bool:
    """Does ``client``'s model of its selected mailbox agree with a fresh ``reference``?"""
    world.compared += 1
    where = f"fresh EXAMINE {reference.mailbox}"
    if client.count != reference.count:
        mine = {e.uid for e in client.entries if e.uid is not None}
        truth = {e.uid for e in reference.entries if e.uid is not None}
        world.violation(
            client.name,
            where,
            f"UIDs only the client has: {compact(sorted(mine - truth)) or '-'}; "
            f"only the fresh EXAMINE: {compact(sorted(truth - mine)) or '-'}",
            f"client knows {client.count} messages, a fresh EXAMINE shows {reference.count}",
        )
        return False
    for n, (mine, truth) in enumerate(zip(client.entries, reference.entries, strict=True), 1):
        if mine.uid is None or mine.flags is None:
            world.unknown += 1
        if mine.uid is not None and mine.uid != truth.uid:
            world.violation(
                client.name, where, "", f"message {n}: client has UID {mine.uid}, is {truth.uid}"
            )
            return False
        if mine.flags is not None and mine.flags != truth.flags:
            world.violation(
                client.name,
                where,
                f"client has {' '.join(sorted(mine.flags))}; "
                f"a fresh FETCH {' '.join(sorted(truth.flags or ()))}",
                f"message {n} (UID {truth.uid}): flags differ from a fresh FETCH",
            )
            return False
    return True


# -- connections --------------------------------------------------------------------------


class Closed(Exception):
    """The connection ended (or stalled) in the middle of a command."""


class Connection:
    """One raw IMAP connection driven on the event loop, its responses fed to a Model."""

    def __init__(self, world: World, name: str, port: int, user: str, password: str) -> None:
        self.world = world
        self.name = name
        self.port = port
        self.user = user
        self.password = password
        self.model = Model(world, name, user)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.counter = 0

    async def open(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=READ_LIMIT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer = writer
        self.reader_task = asyncio.create_task(self._read(reader))
        greeting = await self._next()
        if greeting is None or not greeting.upper().startswith(b"* OK"):
            raise Closed(f"bad greeting {greeting!r}")
        self.model.world.clock += 1
        status = await self.command(f"LOGIN {quote(self.user)} {quote(self.password)}")
        if status != "OK":
            raise Closed("LOGIN failed")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                while True:
                    match = _LITERAL_AT_END.search(line)
                    if match is None:
                        break
                    line += await reader.readexactly(int(match.group(1)))
                    line += await reader.readuntil(b"\r\n")
                self.world.log(self.name, "S:", line)
                await self.queue.put(line)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        await self.queue.put(None)

    async def _next(self, timeout: float = RESPONSE_TIMEOUT) -> bytes | None:
        if not self.queue.empty():  # the common case, without a timer
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            self.model.bad("", f"no response within {timeout:.0f} s")
            raise Closed("timeout") from None

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.world.log(self.name, "C:", data)
        self.writer.write(data)

    def next_tag(self) -> str:
        self.counter += 1
        return f"{self.name}.{self.counter}"

    async def command(
        self, text: str, literal: bytes | None = None, target: str | None = None
    ) -> str:
        """Send one command (a LITERAL+ literal appended), check every response; status."""
        tag = self.next_tag()
        self.model.begin(tag, text, target)
        if literal is None:
            self.send(f"{tag} {text}\r\n".encode())
        else:
            self.send(f"{tag} {text} {{{len(literal)}+}}\r\n".encode() + literal + b"\r\n")
        return await self._until_tagged(tag)

    async def _until_tagged(self, tag: str) -> str:
        want = tag.encode() + b" "
        while True:
            line = await self._next()
            if line is None:
                self.model.closed()
                raise Closed("closed")
            if line.startswith(want) or _TAGGED.match(line):
                return self.model.tagged(line)
            self.model.untagged(line)

    async def idle(self, seconds: float) -> str:
        tag = self.next_tag()
        self.model.begin(tag, "IDLE")
        self.send(f"{tag} IDLE\r\n".encode())
        while True:
            line = await self._next()
            if line is None:
                self.model.closed()
                raise Closed("closed")
            if line.startswith(b"+"):
                break
            if _TAGGED.match(line):
                return self.model.tagged(line)
            self.model.untagged(line)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                break
            if line is None:
                self.model.closed()
                raise Closed("closed")
            self.model.untagged(line)
        self.send(b"DONE\r\n")
        return await self._until_tagged(tag)

    async def logout(self) -> None:
        """LOGOUT; then the server must close the connection, sending nothing more."""
        await self.command("LOGOUT")
        try:
            line = await asyncio.wait_for(self.queue.get(), 10)
        except TimeoutError:
            self.model.bad("", "connection still open 10 s after LOGOUT")
            line = None
        if line is not None:
            self.model.bad(line, "data after LOGOUT's tagged OK")
        self.abort()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            self.reader_task.cancel()
        self.model.state = "closed"


# -- the random clients -------------------------------------------------------------------


@dataclass
class Settings:
    port: int
    users: list[tuple[str, str]]
    clients: int = 8
    seconds: float = 8.0
    seed: int = 1
    round_seconds: float = 4.0
    keywords: int = 20
    """New keywords made up in the whole run (some servers cap keywords per mailbox)."""
    mailboxes: tuple[str, ...] = MAILBOXES


class Pause:
    """Stops every client between two commands for a consistency check."""

    def __init__(self, clients: int) -> None:
        self.running = asyncio.Event()
        self.running.set()
        self.clients = clients
        self.parked = 0
        self.all_parked = asyncio.Event()

    async def gate(self) -> None:
        if self.running.is_set():
            return
        self.parked += 1
        if self.parked >= self.clients:
            self.all_parked.set()
        await self.running.wait()

    def leave(self) -> None:
        """A client that has finished for good counts as parked from now on."""
        self.clients -= 1
        if not self.running.is_set() and self.parked >= self.clients:
            self.all_parked.set()


class Client:
    def __init__(
        self, settings: Settings, world: World, index: int, rng: random.Random, pool: list[str]
    ) -> None:
        self.settings = settings
        self.world = world
        self.name = f"c{index}"
        self.rng = rng
        self.pool = pool
        self.user, self.password = settings.users[index % len(settings.users)]
        self.sessions = 0
        self.conn: Connection | None = None

    async def connect(self) -> Connection:
        self.sessions += 1
        conn = Connection(
            self.world, f"{self.name}s{self.sessions}", self.settings.port, self.user, self.password
        )
        self.conn = conn
        await conn.open()
        return conn

    def keyword(self) -> str:
        made = sum(1 for k in self.pool if k.startswith("$New"))
        if made < self.settings.keywords and self.rng.random() < 0.15:
            word = f"$New{secrets.token_hex(3)}"
            self.pool.append(word)
            return word
        return self.rng.choice(self.pool)

    def flags(self) -> list[str]:
        picked = set()
        for _ in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.6:
                picked.add(self.rng.choice(SYSTEM_FLAGS))
            else:
                picked.add(self.keyword())
        return sorted(picked)

    def seqs(self, model: Model) -> str:
        a = self.rng.randint(1, model.count)
        r = self.rng.random()
        if r < 0.5:
            return str(a)
        if r < 0.8:
            return f"{a}:{min(model.count, a + self.rng.randint(1, 10))}"
        return f"{a}:*"

    def uids(self, model: Model) -> str | None:
        known = [e.uid for e in model.entries if e.uid is not None]
        if not known:
            return None
        return compact(self.rng.sample(known, min(len(known), self.rng.randint(1, 4))))

    def other_mailbox(self, model: Model) -> str:
        return self.rng.choice([m for m in self.settings.mailboxes if m != model.mailbox])

    async def step(self, conn: Connection) -> None:
        model = conn.model
        rng = self.rng
        if model.state == "selected" and model.stale and model.mailbox is not None:
            verb = "EXAMINE" if model.readonly else "SELECT"
            await conn.command(f"{verb} {quote(model.mailbox)}", target=model.mailbox)
            return
        if model.state != "selected":
            mailbox = rng.choice(self.settings.mailboxes)
            verb = "EXAMINE" if rng.random() < 0.2 else "SELECT"
            await conn.command(f"{verb} {quote(mailbox)}", target=mailbox)
            return
        writable = not model.readonly
        count = model.count
        grow = 3.0 if count < 150 else 0.2
        choices: list[tuple[float, str]] = [
            (2, "noop"),
            (3, "fetch_flags"),
            (1.5, "fetch_header"),
            (1.5, "fetch_body"),
            (1, "fetch_partial"),
            (grow, "append"),
            (0.7, "status"),
            (0.7, "idle"),
            (0.4, "reselect"),
            (0.2, "close"),
            (0.15, "logout"),
        ]
        if writable:
            choices += [(5, "store"), (1, "expunge"), (0.7, "uid_expunge")]
            choices += [(grow * 0.4, "copy"), (0.6, "move")]
        if count == 0:
            needs = ("fetch_flags", "fetch_header", "fetch_body", "fetch_partial", "store")
            choices = [c for c in choices if c[1] not in needs + ("copy", "move")]
        total = sum(w for w, _ in choices)
        pick = rng.uniform(0, total)
        for weight, op in choices:  # noqa: B007 (op is used after the loop)
            pick -= weight
            if pick <= 0:
                break
        await getattr(self, "op_" + op)(conn, model)

    async def op_noop(self, conn: Connection, model: Model) -> None:
        await conn.command("NOOP")

    async def op_fetch_flags(self, conn: Connection, model: Model) -> None:
        if self.rng.random() < 0.3:
            await conn.command("FETCH 1:* (UID FLAGS)")
        else:
            await conn.command(f"FETCH {self.seqs(model)} (UID FLAGS)")

    async def op_fetch_header(self, conn: Connection, model: Model) -> None:
        item = self.rng.choice(
            ["BODY.PEEK[HEADER]", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)]", "ENVELOPE"]
        )
        await conn.command(f"FETCH {self.seqs(model)} (UID FLAGS {item})")

    async def op_fetch_body(self, conn: Connection, model: Model) -> None:
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID FETCH {uids} (UID BODY.PEEK[])")
        else:
            await conn.command(f"FETCH {self.rng.randint(1, model.count)} (UID BODY.PEEK[])")

    async def op_fetch_partial(self, conn: Connection, model: Model) -> None:
        n = self.rng.randint(1, model.count)
        start, length = self.rng.randint(0, 2000), self.rng.randint(1, 700)
        await conn.command(f"FETCH {n} (UID BODY.PEEK[]<{start}.{length}>)")

    async def op_store(self, conn: Connection, model: Model) -> None:
        how = self.rng.choice(["+FLAGS", "+FLAGS", "-FLAGS", "FLAGS"])
        if self.rng.random() < 0.15:
            how += ".SILENT"
        flags = " ".join(self.flags())
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.3:
            await conn.command(f"UID STORE {uids} {how} ({flags})")
        else:
            await conn.command(f"STORE {self.seqs(model)} {how} ({flags})")

    async def op_append(self, conn: Connection, model: Model) -> None:
        mailbox = model.mailbox if self.rng.random() < 0.6 else self.other_mailbox(model)
        assert mailbox is not None
        body = messages.realistic(self.rng.randrange(10**6), self.rng)
        flags = " ".join(self.flags()) if self.rng.random() < 0.6 else ""
        text = f"APPEND {quote(mailbox)}" + (f" ({flags})" if flags else "")
        await conn.command(text, literal=body, target=mailbox)

    async def op_copy(self, conn: Connection, model: Model) -> None:
        dest = self.other_mailbox(model)
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID COPY {uids} {quote(dest)}", target=dest)
        else:
            await conn.command(f"COPY {self.seqs(model)} {quote(dest)}", target=dest)

    async def op_move(self, conn: Connection, model: Model) -> None:
        dest = self.other_mailbox(model)
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID MOVE {uids} {quote(dest)}", target=dest)
        else:
            n = self.rng.randint(1, model.count)
            await conn.command(f"MOVE {n} {quote(dest)}", target=dest)

    async def op_expunge(self, conn: Connection, model: Model) -> None:
        await conn.command("EXPUNGE")

    async def op_uid_expunge(self, conn: Connection, model: Model) -> None:
        deleted = [e.uid for e in model.entries if e.uid and e.flags and "\\DELETED" in e.flags]
        uids = compact(deleted[:5]) if deleted else self.uids(model)
        if uids is None:
            await conn.command("EXPUNGE")
        else:
            await conn.command(f"UID EXPUNGE {uids}")

    async def op_status(self, conn: Connection, model: Model) -> None:
        mailbox = self.other_mailbox(model)
        await conn.command(
            f"STATUS {quote(mailbox)} (MESSAGES UIDNEXT UIDVALIDITY)", target=mailbox
        )

    async def op_idle(self, conn: Connection, model: Model) -> None:
        await conn.idle(self.rng.uniform(0.05, 0.5))

    async def op_reselect(self, conn: Connection, model: Model) -> None:
        mailbox = self.rng.choice(self.settings.mailboxes)
        verb = "EXAMINE" if self.rng.random() < 0.2 else "SELECT"
        await conn.command(f"{verb} {quote(mailbox)}", target=mailbox)

    async def op_close(self, conn: Connection, model: Model) -> None:
        await conn.command("CLOSE" if self.rng.random() < 0.7 else "UNSELECT")

    async def op_logout(self, conn: Connection, model: Model) -> None:
        await conn.logout()
        await self.connect()

    async def run(self, pause: Pause, until: float) -> None:
        try:
            while time.monotonic() < until:
                await pause.gate()
                if time.monotonic() >= until:
                    break
                try:
                    conn = self.conn if self.conn is not None else await self.connect()
                    if conn.model.state == "closed":
                        conn = await self.connect()
                    await self.step(conn)
                except (Closed, ConnectionError, OSError) as e:
                    if self.conn is not None:
                        self.conn.abort()
                    self.world.violation(self.name, "(connection)", "", f"connection lost: {e}")
                    self.conn = None
                    await asyncio.sleep(0.2)
        finally:
            pause.leave()


async def reference_check(settings: Settings, world: World, clients: list[Client]) -> None:
    """Every client NOOPs; then a fresh connection per mailbox must agree with them all."""
    live = [c.conn for c in clients if c.conn is not None and c.conn.model.state == "selected"]

    async def noop(conn: Connection) -> None:
        try:
            await conn.command("NOOP")
        except (Closed, ConnectionError, OSError):
            conn.abort()

    await asyncio.gather(*(noop(conn) for conn in live))
    world.rounds += 1
    for user, password in settings.users:
        for mailbox in settings.mailboxes:
            ref = Connection(world, f"ref{world.rounds}", settings.port, user, password)
            try:
                await ref.open()
                if await ref.command(f"EXAMINE {quote(mailbox)}", target=mailbox) != "OK":
                    continue
                if ref.model.count:
                    await ref.command("FETCH 1:* (UID FLAGS)")
                if any(e.uid is None or e.flags is None for e in ref.model.entries):
                    ref.model.bad("", "FETCH 1:* (UID FLAGS) left messages without UID or FLAGS")
                    continue
                key = ref.model.key(mailbox)
                for conn in live:
                    model = conn.model
                    mine = model.key(model.mailbox) if model.mailbox else None
                    same = model.state == "selected" and model.user == user and mine == key
                    same = same and not model.tainted  # (it was reported already)
                    if same and not compare(world, ref.model, model):
                        model.stale = model.tainted = True  # SELECT again
                await ref.logout()
            except (Closed, ConnectionError, OSError) as e:
                world.violation(ref.name, "(reference)", "", f"reference connection failed: {e}")
                ref.abort()


@dataclass
class Report:
    commands: int
    seconds: float
    kinds: Counter[str]
    statuses: Counter[str]
    violation_count: int
    violations: list[Violation]
    violation_kinds: Counter[str]
    rounds: int
    compared: int

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def text(self, show: int = 10) -> str:
        lines = [
            f"commands: {self.commands} in {self.seconds:.1f} s = {self.rate:.0f} commands/s",
            f"consistency rounds: {self.rounds} ({self.compared} client models compared)",
            "per kind: " + ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items())),
            "not OK: "
            + (
                ", ".join(
                    f"{k} {n}"
                    for k, n in sorted(self.statuses.items())
                    if k.endswith(("NO", "BAD"))
                )
                or "none"
            ),
            f"violations: {self.violation_count}",
        ]
        lines += [f"  {n} x {what}" for what, n in self.violation_kinds.most_common()]
        if self.violations:
            lines.append(f"first {min(show, len(self.violations))}:")
        lines += [str(v) for v in self.violations[:show]]
        return "\n".join(lines)


async def check(settings: Settings, trace: TextIO | None = None) -> Report:
    """Run the clients for ``settings.seconds`` with a consistency round every few seconds."""
    world = World()
    world.trace = trace
    rng = random.Random(settings.seed)
    pool = ["$Label1", "$Label2", "$Label3", "$Forwarded", "$MDNSent"]
    clients = [
        Client(settings, world, i, random.Random(rng.randrange(1 << 30)), pool)
        for i in range(settings.clients)
    ]
    pause = Pause(len(clients))
    started = time.monotonic()
    until = started + settings.seconds
    tasks = [asyncio.create_task(c.run(pause, until)) for c in clients]
    try:
        while time.monotonic() < until:
            await asyncio.sleep(min(settings.round_seconds, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until:
                break
            pause.parked = 0
            pause.all_parked.clear()
            pause.running.clear()
            if pause.clients > 0:
                await pause.all_parked.wait()
            await reference_check(settings, world, clients)
            pause.running.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        await reference_check(settings, world, clients)
        for client in clients:
            if client.conn is not None and client.conn.model.state != "closed":
                try:
                    await client.conn.logout()
                except (Closed, ConnectionError, OSError):
                    client.conn.abort()
    finally:
        for task in tasks:
            task.cancel()
    commands = sum(world.kinds.values())
    return Report(
        commands,
        elapsed,
        world.kinds,
        world.statuses,
        world.violation_count,
        world.violations,
        world.violation_kinds,
        world.rounds,
        world.compared,
    )


def prepare(port: int, users: Sequence[tuple[str, str]], mailboxes: Sequence[str]) -> None:
    """Create the shared mailboxes and put a few messages in each (blocking, before the run)."""
    from bench.harness import RawClient

    rng = random.Random(0)
    for user, password in users:
        client = RawClient.connect(port, timeout=60)
        client.login(user, password)
        for mailbox in mailboxes:
            if mailbox.upper() != "INBOX":
                client.command(f"CREATE {quote(mailbox)}")
            corpus = [messages.realistic(i, rng) for i in range(20)]
            for response in client.append_many(mailbox, corpus):
                if not response.ok:
                    raise RuntimeError(f"APPEND to {mailbox} failed: {response.line!r}")
        client.command("LOGOUT")
        client.close()


def run_check(settings: Settings, trace: str | None = None) -> Report:
    """Prepare the mailboxes, then :func:`check` (``trace``: a file for every line)."""
    prepare(settings.port, settings.users, settings.mailboxes)
    if trace is None:
        return asyncio.run(check(settings))
    with open(trace, "w", encoding="utf-8") as out:
        return asyncio.run(check(settings, out))


# -- the command line ---------------------------------------------------------------------


def backend_spec(name: str) -> BackendSpec:
    """The server setup of one backend, as the protocol suite runs it (tests/conftest.py)."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    if name == "memory":
        return BackendSpec("memory")
    if name == "maildir":
        return BackendSpec("maildir", {"autocreate": "false"})
    if name == "sql-sqlite":
        return BackendSpec("sql")
    if name == "sql-postgresql":
        import pgcluster

        return BackendSpec(
            "sql", prepare=pgcluster.prepare_backend, cleanup=pgcluster.cleanup_backend
        )
    if name == "proxy":
        import dovecot

        spec = dovecot.proxy_backend_spec()
        assert isinstance(spec, BackendSpec)
        return spec
    raise SystemExit(
        f"unknown backend {name!r} (memory, maildir, sql-sqlite, sql-postgresql, proxy)"
    )


def settings_from(args: argparse.Namespace, port: int, users: list[tuple[str, str]]) -> Settings:
    return Settings(
        port=port,
        users=users,
        clients=args.clients,
        seconds=args.seconds,
        seed=args.seed,
        round_seconds=args.round,
        keywords=args.keywords,
    )


def against_dovecot(args: argparse.Namespace, users: list[tuple[str, str]]) -> int:
    """The checker against a private Dovecot, no mailserv: does it pass a reference server?"""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from dovecot import Dovecot

    upstream = Dovecot()
    for user, password in users:
        upstream.add_user(user, password)
    upstream.start()
    try:
        report = run_check(settings_from(args, upstream.imap_port, users), args.trace)
    finally:
        upstream.stop()
    print(f"Dovecot (no mailserv), {args.clients} clients, seed {args.seed}")
    print(report.text(args.show))
    return 1 if report.violation_count else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.statecheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", default="memory", help="or dovecot: no mailserv at all")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--round", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--keywords", type=int, default=20, help="new keywords in the run")
    parser.add_argument("--show", type=int, default=10, help="violations to print")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--trace", metavar="FILE", help="write every line sent and received")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.users < 1:
        parser.error("--clients, --seconds and --users must be positive")
    users = [(f"check{i}", "pw-" + secrets.token_hex(6)) for i in range(args.users)]
    if args.backend == "dovecot":
        return against_dovecot(args, users)
    data_dir = Path(tempfile.mkdtemp(prefix="mailserv-statecheck-"))
    limits = {"max_connections_per_address": max(2000, args.clients * 2 + 100)}
    server = ServerProcess(data_dir, backend_spec(args.backend), limits=limits)
    try:
        server.start()
        for user, password in users:
            server.add_user(user, password)
        report = run_check(settings_from(args, server.imap_port, users), args.trace)
        print(f"backend {args.backend}, {args.clients} clients, seed {args.seed}")
        print(report.text(args.show))
        if not server.alive:
            print("the server died", file=sys.stderr)
            return 1
    finally:
        server.stop()
        if args.keep:
            print(f"data dir kept: {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if report.violation_count else 0


if __name__ == "__main__":
    sys.exit(main())
