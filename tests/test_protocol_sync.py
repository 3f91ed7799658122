"""Several sessions on one mailbox: IDLE notifications (RFC 2177), untagged updates after
NOOP, no EXPUNGE during FETCH/STORE/SEARCH (RFC 3501 7.4.1), no duplicate updates for the
session that made a change."""

from __future__ import annotations

import re
import time

import pytest
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, fetches, flag_set

NOTIFY_TIMEOUT = 5.0


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def start_idle(client: RawClient, tag: str = "idle1") -> None:
    client.send(f"{tag} IDLE\r\n")
    line = client.read_response()
    while not line.startswith(b"+"):
        assert line.startswith(b"* "), line  # untagged updates may come first
        line = client.read_response()


def wait_for(client: RawClient, pattern: bytes, timeout: float = NOTIFY_TIMEOUT) -> list[bytes]:
    """Read responses until one matches ``pattern``; everything read, in order."""
    client.settimeout(timeout)
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = client.read_response()
            seen.append(line)
            if re.search(pattern, line, re.I):
                return seen
    finally:
        client.settimeout(10.0)
    raise AssertionError(f"no {pattern!r} within {timeout}s; got {seen!r}")


def end_idle(client: RawClient, tag: str = "idle1", word: str = "DONE") -> Response:
    client.send(word + "\r\n")
    return client.read_until_tagged(tag)


def test_idle_sees_append_store_expunge(connect: Connector) -> None:
    connect.append([messages.plain(subject="first")])
    idler = connect.selected()
    actor = connect.selected()
    start_idle(idler)

    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="second"))
    wait_for(idler, rb"^\* 2 EXISTS")

    ok(actor, "STORE 1 +FLAGS (\\Flagged)")
    lines = wait_for(idler, rb"^\* 1 FETCH")
    assert b"\\FLAGGED" in lines[-1].upper()

    ok(actor, "STORE 1 +FLAGS.SILENT (\\Deleted)")  # .SILENT only spares the actor
    lines = wait_for(idler, rb"^\* 1 FETCH")
    assert b"\\DELETED" in lines[-1].upper()
    ok(actor, "EXPUNGE")
    wait_for(idler, rb"^\* 1 EXPUNGE")

    response = end_idle(idler)
    assert response.ok, response.line
    assert not any(re.match(rb"\* \d+ EXPUNGE", line) for line in response.untagged)
    after = fetches(ok(idler, "FETCH 1:* (UID FLAGS)"))
    assert list(after) == [1]


def test_idle_notification_is_prompt(connect: Connector) -> None:
    idler = connect.selected()
    actor = connect.raw()
    start_idle(idler)
    message = messages.plain()
    started = time.monotonic()
    actor.send(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    wait_for(idler, rb"^\* 1 EXISTS")
    elapsed = time.monotonic() - started
    assert actor.read_until_tagged("a1").ok
    assert elapsed < 2.0, f"EXISTS took {elapsed:.3f}s"
    assert end_idle(idler).ok


def test_idle_done_is_case_insensitive(connect: Connector) -> None:
    idler = connect.selected()
    start_idle(idler)
    assert end_idle(idler, word="done").ok
    assert ok(idler, "NOOP").ok


def test_idle_continues_until_done(connect: Connector) -> None:
    idler = connect.selected()
    actor = connect.raw()
    start_idle(idler)
    for i in range(3):
        actor.command_with_literal("APPEND INBOX ", messages.plain(subject=str(i)))
        wait_for(idler, rb"^\* %d EXISTS" % (i + 1))
    # Nothing but DONE was sent: the IDLE command is still running, untagged data only.
    idler.settimeout(0.3)
    extra: list[bytes] = []
    with pytest.raises(TimeoutError):
        while True:
            extra.append(idler.read_line())
    idler.settimeout(10.0)
    assert all(line.startswith(b"* ") for line in extra), extra
    assert end_idle(idler).ok


def test_idle_other_input_does_not_break_connection(connect: Connector) -> None:
    idler = connect.selected()
    start_idle(idler)
    idler.send("x1 NOOP\r\n")
    idler.settimeout(2.0)
    lines: list[bytes] = []
    try:
        while True:
            line = idler.read_response()
            lines.append(line)
            if line.startswith(b"idle1 ") or re.match(rb"^(\*|x1) BAD", line):
                break
    except TimeoutError:
        pass  # still idling, input ignored
    idler.settimeout(10.0)
    assert not any(b"Traceback" in line for line in lines)
    if not any(line.startswith(b"idle1 ") for line in lines):
        idler.send("DONE\r\n")
        idler.read_until_tagged("idle1")
    assert ok(idler, "NOOP").ok


def test_idle_imapclient(connect: Connector) -> None:
    cli = connect.imapclient()
    cli.select_folder("INBOX")
    actor = connect.raw()
    cli.idle()
    actor.command_with_literal("APPEND INBOX ", messages.plain())
    responses = cli.idle_check(timeout=NOTIFY_TIMEOUT)
    assert (1, b"EXISTS") in responses
    cli.idle_done()
    assert len(cli.search("ALL")) == 1


def test_idle_requires_selected_or_authenticated(connect: Connector) -> None:
    client = connect.raw(login=False)
    assert client.command("IDLE").status in ("BAD", "NO")


# -- outside IDLE --------------------------------------------------------------------------


def test_noop_reports_other_sessions_changes(connect: Connector) -> None:
    connect.append([messages.plain(subject="a"), messages.plain(subject="b")])
    watcher = connect.selected()
    actor = connect.selected()
    actor.command_with_literal("APPEND INBOX ", messages.plain(subject="c"))
    ok(actor, "STORE 1 +FLAGS.SILENT (\\Answered)")
    response = ok(watcher, "NOOP")
    assert response.numbers("EXISTS")[-1] == 3
    got = fetches(response)
    assert b"\\ANSWERED" in str(got[1]["FLAGS"]).upper().encode()
    # Told once: the next NOOP is quiet.
    quiet = ok(watcher, "NOOP")
    assert not quiet.numbers("EXISTS") and not quiet.data("FETCH")


def test_no_expunge_during_fetch_store_search(connect: Connector) -> None:
    connect.append([messages.plain(subject=str(i)) for i in range(3)])
    watcher = connect.selected()
    actor = connect.selected()
    ok(actor, "STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert ok(actor, "EXPUNGE").numbers("EXPUNGE") == [2]

    def no_expunge(response: Response) -> None:
        assert not any(re.match(rb"\* \d+ EXPUNGE", line, re.I) for line in response.untagged)
        assert not any(b"Traceback" in line for line in response.untagged)

    fetch = watcher.command("FETCH 1:* (FLAGS)")
    assert fetch.status in ("OK", "NO"), fetch.line  # NO is allowed for expunged messages
    no_expunge(fetch)
    store = watcher.command("STORE 1 +FLAGS (\\Seen)")
    assert store.status in ("OK", "NO")
    no_expunge(store)
    search = watcher.command("SEARCH ALL")
    assert search.ok
    no_expunge(search)
    # The sequence numbers the watcher knows are still valid until it is told.
    fetch3 = watcher.command("FETCH 3 UID")
    no_expunge(fetch3)
    noop = ok(watcher, "NOOP")
    assert noop.numbers("EXPUNGE") == [2]
    assert sorted(fetches(ok(watcher, "FETCH 1:* UID"))) == [1, 2]


def test_uid_commands_may_carry_expunge(connect: Connector) -> None:
    connect.append([messages.plain(subject=str(i)) for i in range(2)])
    watcher = connect.selected()
    actor = connect.selected()
    ok(actor, "STORE 1 +FLAGS.SILENT (\\Deleted)")
    ok(actor, "EXPUNGE")
    first = ok(watcher, "UID FETCH 1:* UID")
    second = ok(watcher, "NOOP")
    expunges = first.numbers("EXPUNGE") + second.numbers("EXPUNGE")
    assert expunges == [1]


def test_own_changes_are_not_repeated(connect: Connector) -> None:
    connect.append([messages.plain(subject=str(i)) for i in range(3)])
    client = connect.selected()
    connect.selected()  # another session on the same mailbox
    store = ok(client, "STORE 1 +FLAGS (\\Flagged)")
    assert list(fetches(store)) == [1]
    ok(client, "STORE 3 -FLAGS.SILENT (\\Seen)")
    ok(client, "STORE 2 +FLAGS.SILENT (\\Deleted)")
    expunge = ok(client, "EXPUNGE")
    assert expunge.numbers("EXPUNGE") == [2]
    copy = ok(client, "COPY 1 INBOX")
    exists_now = copy.numbers("EXISTS")
    noop = ok(client, "NOOP")
    assert not noop.data("FETCH"), noop.untagged
    assert not noop.numbers("EXPUNGE"), noop.untagged
    assert len(exists_now + noop.numbers("EXISTS")) == 1
    assert (exists_now + noop.numbers("EXISTS"))[0] == 3


def test_other_session_sees_flags_of_silent_store(connect: Connector) -> None:
    connect.append([messages.plain()])
    watcher = connect.selected()
    actor = connect.selected()
    ok(actor, "STORE 1 FLAGS.SILENT (\\Draft)")
    got = fetches(ok(watcher, "NOOP"))
    assert b"\\DRAFT" in str(got[1]["FLAGS"]).upper().encode()


def test_silent_store_tells_what_another_session_changed(connect: Connector) -> None:
    """RFC 3501 6.4.6: .SILENT or not, a change from an external source is told.  Another
    session flagged the message before this one's STORE .SILENT; the client is sent the
    flags that hold after both (not nothing, and not the other session's older ones)."""
    connect.append([messages.plain()])
    actor = connect.selected()
    other = connect.selected()
    ok(other, "STORE 1 +FLAGS (\\Flagged)")
    stored = ok(actor, "STORE 1 +FLAGS.SILENT (\\Seen)")
    told = [fetches(ok(actor, "NOOP")), fetches(stored)]
    last = next(flag_set(got[1]["FLAGS"]) for got in told if 1 in got)
    assert {"\\FLAGGED", "\\SEEN"} <= last, told
    silent = ok(actor, "STORE 1 +FLAGS.SILENT (\\Answered)")
    assert not silent.data("FETCH") and not ok(actor, "NOOP").data("FETCH")


def test_expunge_in_other_mailbox_not_reported(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE Other")
    connect.append([messages.plain()], mailbox="Other", flags="\\Deleted")
    ok(client, "SELECT INBOX")
    actor = connect.selected("Other")
    ok(actor, "EXPUNGE")
    noop = ok(client, "NOOP")
    assert not noop.numbers("EXPUNGE") and not noop.numbers("EXISTS")
