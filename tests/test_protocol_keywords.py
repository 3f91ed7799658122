"""New keywords are announced (RFC 3501 7.2.6): before a FETCH response carries a flag, the
session has been sent a ``* FLAGS`` response listing it, whoever set it (this session's STORE,
another session's STORE, APPEND or COPY/MOVE into the mailbox) and whatever carries it
(unsolicited FETCH after NOOP or in IDLE, the session's own FETCH or STORE).  Read-write
sessions also get ``PERMANENTFLAGS`` with the keyword and ``\\*``; EXAMINE ones an empty one.
"""

from __future__ import annotations

import re
import time

from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, parse_fetch, parse_values

NOTIFY_TIMEOUT = 5.0
SYSTEM = {"\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\SEEN", "\\DRAFT"}


class Watched:
    """A selected raw client and the flag list it has been told, checked line by line."""

    def __init__(self, client: RawClient, readonly: bool = False) -> None:
        self.client = client
        self.readonly = readonly
        self.known: set[str] | None = None
        self.permanent: set[str] | None = None
        self.announcements = 0
        """``* FLAGS`` responses after the first (the one of SELECT/EXAMINE)."""
        self.flag_fetches: list[set[str]] = []

    def see(self, lines: list[bytes]) -> None:
        """Check responses in the order they came; fail at a FETCH with an unannounced flag."""
        for line in lines:
            if re.match(rb"\* FLAGS ", line, re.I):
                if self.known is not None:
                    self.announcements += 1
                self.known = _flag_list(line, len(b"* FLAGS "))
                assert self.known >= SYSTEM, line
                self.permanent = None  # a PERMANENTFLAGS must follow it
                continue
            match = re.match(rb"\* OK \[PERMANENTFLAGS ", line, re.I)
            if match:
                assert self.known is not None, "PERMANENTFLAGS before any FLAGS"
                self.permanent = _flag_list(line, match.end())
                if self.readonly:
                    assert self.permanent == set(), line
                else:
                    assert self.permanent == self.known | {"\\*"}, (line, self.known)
                continue
            if re.match(rb"\* \d+ FETCH ", line, re.I):
                _, items = parse_fetch(line)
                if "FLAGS" not in items:
                    continue
                flags = {str(f).upper() for f in items["FLAGS"]}  # type: ignore[union-attr]
                assert self.known is not None, f"FETCH FLAGS before any FLAGS: {line!r}"
                unannounced = flags - self.known - {"\\RECENT"}
                assert not unannounced, f"{line!r} carries {unannounced} not in FLAGS {self.known}"
                assert self.permanent is not None, "no PERMANENTFLAGS after FLAGS"
                self.flag_fetches.append(flags)

    def command(self, text: str) -> Response:
        response = self.client.command(text)
        self.see(response.untagged)
        assert response.ok, (text, response.line)
        return response

    def start_idle(self) -> None:
        self.client.send("idle1 IDLE\r\n")
        while True:
            line = self.client.read_response()
            if line.startswith(b"+"):
                return
            self.see([line])

    def idle_until(self, pattern: bytes) -> list[bytes]:
        """Read IDLE updates until one matches ``pattern``; everything read (checked)."""
        self.client.settimeout(NOTIFY_TIMEOUT)
        seen: list[bytes] = []
        deadline = time.monotonic() + NOTIFY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                line = self.client.read_response()
                seen.append(line)
                self.see([line])
                if re.search(pattern, line, re.I):
                    return seen
        finally:
            self.client.settimeout(10.0)
        raise AssertionError(f"no {pattern!r} within {NOTIFY_TIMEOUT}s; got {seen!r}")

    def end_idle(self) -> Response:
        self.client.send(b"DONE\r\n")
        response = self.client.read_until_tagged("idle1")
        self.see(response.untagged)
        assert response.ok, response.line
        return response


def _flag_list(line: bytes, at: int) -> set[str]:
    values, _ = parse_values(line, at)
    assert values and isinstance(values[0], list), line
    return {str(f).upper() for f in values[0]}


def watch(connect: Connector, mailbox: str = "INBOX", readonly: bool = False) -> Watched:
    client = connect.raw()
    watched = Watched(client, readonly)
    watched.command(f'{"EXAMINE" if readonly else "SELECT"} "{mailbox}"')
    assert watched.known is not None and watched.permanent is not None
    return watched


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


# -- changes by another session ------------------------------------------------------------


def test_other_session_store_announced_before_noop_fetch(connect: Connector) -> None:
    connect.append([messages.plain(subject="a"), messages.plain(subject="b")])
    watcher = watch(connect)
    actor = connect.selected()
    ok(actor, "STORE 2 +FLAGS ($NewKeyword)")
    watcher.command("NOOP")
    assert watcher.flag_fetches and "$NEWKEYWORD" in watcher.flag_fetches[-1]
    assert watcher.known is not None and "$NEWKEYWORD" in watcher.known
    assert watcher.announcements == 1
    # Once: the same keyword again, on another message, needs no second FLAGS.
    ok(actor, "STORE 1 +FLAGS.SILENT ($NewKeyword)")
    watcher.command("NOOP")
    watcher.command("FETCH 1:* FLAGS")
    assert watcher.announcements == 1
    # A second keyword: the list grows and keeps the first.
    ok(actor, "STORE 1 +FLAGS.SILENT (Second)")
    watcher.command("NOOP")
    assert watcher.announcements == 2
    assert watcher.known is not None and {"$NEWKEYWORD", "SECOND"} <= watcher.known


def test_other_session_store_announced_in_idle(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = watch(connect)
    actor = connect.selected()
    watcher.start_idle()
    ok(actor, "STORE 1 +FLAGS.SILENT ($Idled)")
    lines = watcher.idle_until(rb"^\* 1 FETCH")
    assert any(re.match(rb"\* FLAGS .*\$Idled", line, re.I) for line in lines), lines
    watcher.end_idle()
    assert watcher.announcements == 1


def test_own_fetch_after_other_session_store(connect: Connector) -> None:
    """The FETCH itself carries the keyword first (the unsolicited update comes after it)."""
    connect.append([messages.plain()])
    watcher = watch(connect)
    actor = connect.selected()
    ok(actor, "STORE 1 +FLAGS.SILENT (Fetched)")
    watcher.command("FETCH 1 (FLAGS)")
    assert watcher.announcements == 1
    assert any("FETCHED" in flags for flags in watcher.flag_fetches)


def test_uid_fetch_with_other_items(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = watch(connect)
    actor = connect.selected()
    ok(actor, "STORE 1 +FLAGS.SILENT (Other)")
    watcher.command("UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE)")
    assert watcher.announcements == 1


def test_append_with_keyword_then_fetch(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = watch(connect)
    connect.append([messages.plain(subject="new")], flags="$Appended \\Flagged")
    noop = watcher.command("NOOP")
    assert noop.numbers("EXISTS") == [2]
    watcher.command("FETCH 2 (FLAGS)")
    assert watcher.announcements == 1
    assert "$APPENDED" in watcher.flag_fetches[-1]


def test_append_with_keyword_seen_in_idle_then_fetch(connect: Connector) -> None:
    watcher = watch(connect)
    watcher.start_idle()
    connect.append([messages.plain()], flags="$IdleAppend")
    watcher.idle_until(rb"^\* 1 EXISTS")
    watcher.end_idle()
    watcher.command("FETCH 1:* (UID FLAGS)")
    assert watcher.announcements == 1


def test_copy_and_move_in_with_keywords(connect: Connector) -> None:
    actor = connect.raw()
    ok(actor, "CREATE Source")
    connect.append([messages.plain(subject="c")], mailbox="Source", flags="Copied")
    connect.append([messages.plain(subject="m")], mailbox="Source", flags="Moved")
    watcher = watch(connect)
    ok(actor, "SELECT Source")
    ok(actor, "COPY 1 INBOX")
    watcher.command("NOOP")
    watcher.command("FETCH 1:* FLAGS")
    assert watcher.announcements == 1
    ok(actor, "MOVE 2 INBOX")
    watcher.command("NOOP")
    watcher.command("FETCH 1:* FLAGS")
    assert watcher.announcements == 2
    assert watcher.known is not None and {"COPIED", "MOVED"} <= watcher.known


def test_keywords_present_before_select(connect: Connector) -> None:
    connect.append([messages.plain()], flags="$Before")
    watcher = watch(connect)
    watcher.command("FETCH 1 (FLAGS)")
    assert "$BEFORE" in watcher.flag_fetches[-1]


def test_fetch_body_setting_seen_carries_flags(connect: Connector) -> None:
    """FETCH BODY[] adds \\Seen and so an implicit FLAGS item, keywords included."""
    connect.append([messages.plain()], flags="Implicit")
    watcher = watch(connect)
    watcher.command("FETCH 1 BODY[]")
    assert watcher.flag_fetches and "IMPLICIT" in watcher.flag_fetches[-1]


# -- the session's own changes -------------------------------------------------------------


def test_own_store_of_new_keyword(connect: Connector) -> None:
    connect.append([messages.plain(), messages.plain()])
    watcher = watch(connect)
    watcher.command("STORE 1:2 +FLAGS (Mine)")
    assert watcher.announcements == 1  # once for both messages
    watcher.command("UID STORE 1 FLAGS (Mine Also)")
    assert watcher.announcements == 2
    watcher.command("STORE 2 -FLAGS (Mine)")
    assert watcher.announcements == 2


def test_own_silent_store_then_fetch(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = watch(connect)
    watcher.command("STORE 1 +FLAGS.SILENT (Quiet)")
    watcher.command("FETCH 1 FLAGS")
    assert watcher.announcements == 1


# -- read-only sessions --------------------------------------------------------------------


def test_examine_session_is_told_with_empty_permanentflags(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = watch(connect, readonly=True)
    actor = connect.selected()
    ok(actor, "STORE 1 +FLAGS.SILENT (ReadOnlyView)")
    watcher.command("NOOP")
    assert watcher.announcements == 1
    watcher.start_idle()
    ok(actor, "STORE 1 +FLAGS.SILENT (AnotherOne)")
    watcher.idle_until(rb"^\* 1 FETCH")
    watcher.end_idle()
    assert watcher.announcements == 2
    watcher.command("FETCH 1 FLAGS")
    assert watcher.announcements == 2


def test_reselect_starts_over(connect: Connector) -> None:
    connect.append([messages.plain()], flags="Again")
    watcher = watch(connect)
    watcher.command("FETCH 1 FLAGS")
    assert watcher.announcements == 1
    watcher.known, watcher.announcements = None, 0
    watcher.command("SELECT INBOX")  # its FLAGS replaces the list the client knows
    watcher.command("FETCH 1 FLAGS")
    assert watcher.announcements == 1
