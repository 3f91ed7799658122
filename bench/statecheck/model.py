"""One connection's model of the state checker, checked response by response."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.harness import ParseError, Value, parse_values
from bench.statecheck.wire import (
    _TAGGED,
    compact,
    flag_names,
    parse_simple,
    seq_numbers,
    uid_set,
)
from bench.statecheck.world import MailboxFacts, Snapshot, World

RECENT = "\\RECENT"

_NUMBERED = re.compile(rb"^\* (\d+) ([A-Za-z]+)\b ?(.*)$", re.S)
_STATUS_LINE = re.compile(rb"^\* (OK|NO|BAD|BYE|PREAUTH)\b ?(.*)$", re.S | re.I)
_KEYWORD = re.compile(rb"^\* ([A-Za-z]+)\b ?(.*)$", re.S)
_CODE = re.compile(rb"^\[([A-Za-z0-9.-]+)(?: ([^\]]*))?\]")
_PARTIAL_ASKED = re.compile(r"BODY\.PEEK\[\]<(\d+)\.(\d+)>", re.I)


@dataclass
class Entry:
    """One message of the selected mailbox as the connection knows it."""

    uid: int | None = None
    flags: frozenset[str] | None = None
    floor: int = 0
    """Its UID must be above this (the highest UID known when EXISTS announced it)."""
    ceiling: int | None = None
    """Its UID must be below this (the UIDNEXT of the SELECT that showed it)."""


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
        mine_uids = {e.uid for e in client.entries if e.uid is not None}
        true_uids = {e.uid for e in reference.entries if e.uid is not None}
        world.violation(
            client.name,
            where,
            f"UIDs only the client has: {compact(sorted(mine_uids - true_uids)) or '-'}; "
            f"only the fresh EXAMINE: {compact(sorted(true_uids - mine_uids)) or '-'}",
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
