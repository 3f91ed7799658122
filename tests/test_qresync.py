"""QRESYNC (RFC 7162 section 3.2) over real sockets, on every backend: a client that
reconnects after other sessions expunged, flagged and appended gets exactly the VANISHED
(EARLIER) and FETCH lines of what changed; UID FETCH (CHANGEDSINCE n VANISHED);
VANISHED instead of EXPUNGE; [CLOSED] on reselect; CLOSE's expunges found by the next
resync."""

from __future__ import annotations

import re
import time

import pytest
from imapserver import Connector, code_value, ok, uid_set

from bench import messages
from bench.harness import RawClient, Response, ServerProcess, fetches, flag_set

PROXY_LINGER = 2.0
"""The proxy backend's ``linger`` in the shared test server (tests/dovecot.py)."""


def vanished(response: Response, earlier: bool) -> list[int]:
    """The UIDs of the response's VANISHED lines of one kind."""
    out: list[int] = []
    for line in response.untagged:
        match = re.match(rb"\* VANISHED (\(EARLIER\) )?([0-9:,]+)\r\n", line)
        if match and bool(match.group(1)) == earlier:
            out += uid_set(match.group(2).decode())
    return out


def by_uid(response: Response) -> dict[int, tuple[set[str], int]]:
    """FETCH responses as UID → (flags without \\Recent, modseq)."""
    out = {}
    for items in fetches(response).values():
        modseq = items["MODSEQ"]
        assert isinstance(modseq, list)
        out[int(str(items["UID"]))] = (flag_set(items["FLAGS"]) - {"\\RECENT"}, int(modseq[0]))
    return out


def qresync_client(connect: Connector) -> RawClient:
    client = connect.raw()
    enabled = ok(client, "ENABLE QRESYNC")
    assert enabled.untagged == [b"* ENABLED QRESYNC\r\n"], enabled.untagged
    return client


@pytest.fixture
def ten(connect: Connector) -> list[int]:
    return connect.append([messages.plain(subject=f"m{i}") for i in range(10)])


def test_reconnect_after_other_sessions_changes(connect: Connector, ten: list[int]) -> None:
    """The offline client's cache: UIDVALIDITY, HIGHESTMODSEQ and its UIDs.  Meanwhile
    another session flags three messages, expunges three (one of them flagged before)
    and a message arrives.  The resync tells exactly that, in the RFC's order."""
    first = connect.raw()
    select = ok(first, "SELECT INBOX (CONDSTORE)")
    validity = code_value(select, "UIDVALIDITY")
    highest = code_value(select, "HIGHESTMODSEQ")
    ok(first, "LOGOUT")

    other = connect.selected()
    u = ten
    ok(other, f"UID STORE {u[1]},{u[4]},{u[8]} +FLAGS (\\Flagged $Work)")
    ok(other, f"UID STORE {u[2]},{u[4]},{u[6]} +FLAGS.SILENT (\\Deleted)")
    ok(other, "EXPUNGE")
    (new_uid,) = connect.append([messages.plain(subject="new")])

    client = qresync_client(connect)
    known = f"{u[0]}:{u[-1]}"
    response = ok(client, f"SELECT INBOX (QRESYNC ({validity} {highest} {known}))")
    assert code_value(response, "HIGHESTMODSEQ") > highest
    lines = [line.split(b" ")[1] for line in response.untagged]
    assert lines.index(b"VANISHED") > lines.index(b"OK"), "after the SELECT's own responses"
    assert vanished(response, earlier=True) == [u[2], u[4], u[6]]
    assert not vanished(response, earlier=False)
    changed = by_uid(response)
    assert set(changed) == {u[1], u[8], new_uid}, changed
    assert changed[u[1]][0] == changed[u[8]][0] == {"\\FLAGGED", "$WORK"}
    assert changed[new_uid][0] == set()
    assert all(modseq > highest for _, modseq in changed.values())
    assert b"* 8 EXISTS\r\n" in response.untagged
    # sequence numbers are those of the mailbox now: u[8] is the 6th message
    assert fetches(response)[6]["UID"] == u[8]

    # resync again from the modseq just told: nothing
    latest = code_value(response, "HIGHESTMODSEQ")
    again = ok(client, f"SELECT INBOX (QRESYNC ({validity} {latest}))")
    assert not vanished(again, earlier=True) and not fetches(again)


def test_known_uids_and_uidvalidity(connect: Connector, ten: list[int]) -> None:
    first = connect.selected()
    select = ok(first, "STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)")
    values = dict(re.findall(rb"(UIDVALIDITY|HIGHESTMODSEQ) (\d+)", select.data("STATUS")[0]))
    validity, highest = int(values[b"UIDVALIDITY"]), int(values[b"HIGHESTMODSEQ"])
    u = ten
    ok(first, f"UID STORE {u[0]},{u[5]},{u[9]} +FLAGS.SILENT (\\Deleted)")
    ok(first, "EXPUNGE")
    client = qresync_client(connect)
    only = ok(client, f"EXAMINE INBOX (QRESYNC ({validity} {highest} {u[4]}:{u[9]}))")
    assert vanished(only, earlier=True) == [u[5], u[9]]
    with_match = ok(
        client,
        f"EXAMINE INBOX (QRESYNC ({validity} {highest} {u[0]}:{u[9]} (1,5 {u[0]},{u[4]})))",
    )
    assert vanished(with_match, earlier=True) == [u[0], u[5], u[9]]
    assert "CLOSED" in with_match.codes(), "a mailbox was selected"
    wrong = ok(client, f"SELECT INBOX (QRESYNC ({validity + 1} {highest} {u[0]}:{u[9]}))")
    assert not vanished(wrong, earlier=True) and not fetches(wrong), "full sync is due"
    assert code_value(wrong, "HIGHESTMODSEQ") > highest


def test_uid_fetch_changedsince_vanished(connect: Connector, ten: list[int]) -> None:
    """RFC 7162 3.2.6: VANISHED (EARLIER) of the set first, then the changed messages."""
    client = qresync_client(connect)
    highest = code_value(ok(client, "SELECT INBOX"), "HIGHESTMODSEQ")
    u = ten
    other = connect.selected()
    ok(other, f"UID STORE {u[3]},{u[9]} +FLAGS.SILENT (\\Deleted)")
    ok(other, f"UID EXPUNGE {u[3]},{u[9]}")
    ok(other, f"UID STORE {u[5]} +FLAGS (\\Answered)")
    response = ok(client, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    lines = response.untagged
    assert vanished(response, earlier=False) == [u[3], u[9]], "the NOOP-style update"
    assert vanished(response, earlier=True) == [], "those were in the session's view"
    # u[5] answers the FETCH; \Deleted on the others is told before their VANISHED
    assert u[5] in by_uid(response) and set(by_uid(response)) <= {u[3], u[5], u[9]}
    assert not any(b"EXPUNGE" in line for line in lines)
    # from a fresh session, the expunged ones are VANISHED (EARLIER), the highest included
    fresh = qresync_client(connect)
    ok(fresh, "SELECT INBOX")
    response = ok(fresh, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert response.untagged[0].startswith(b"* VANISHED (EARLIER) ")
    assert vanished(response, earlier=True) == [u[3], u[9]]
    assert set(by_uid(response)) == {u[5]}
    part = ok(fresh, f"UID FETCH {u[0]}:{u[4]} (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert vanished(part, earlier=True) == [u[3]] and not fetches(part)


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    ("setup", "command", "text"),
    [
        ("", "SELECT INBOX (QRESYNC (1 1))", "needs ENABLE QRESYNC"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (1))", "QRESYNC takes"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (0 1))", "uidvalidity"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (1 x))", "QRESYNC:"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (1 1 1:*))", "may not contain *"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (1 1 1:5 (1:2 5)))", "differ in size"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))", "QRESYNC takes"),
        ("ENABLE QRESYNC", "SELECT INBOX (QRESYNC 1)", "QRESYNC takes"),
        ("ENABLE QRESYNC", "FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "UID FETCH modifier"),
        ("ENABLE QRESYNC", "UID FETCH 1 FLAGS (VANISHED)", "needs CHANGEDSINCE"),
        ("ENABLE CONDSTORE", "UID FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "ENABLE QRESYNC"),
    ],
)
def test_bad_arguments(
    connect: Connector, ten: list[int], setup: str, command: str, text: str
) -> None:
    client = connect.raw()
    if setup:
        ok(client, setup)
    ok(client, "SELECT INBOX")
    response = client.command(command)
    assert response.status == "BAD", response.line
    assert text.encode() in response.text, response.line
    assert ok(client, "NOOP")


def test_vanished_replaces_expunge(connect: Connector, ten: list[int]) -> None:
    client = qresync_client(connect)
    ok(client, "SELECT INBOX")
    u = ten
    other = connect.selected()
    ok(other, f"UID STORE {u[1]},{u[2]},{u[7]} +FLAGS.SILENT (\\Deleted)")
    ok(other, "EXPUNGE")
    noop = ok(client, "NOOP")
    assert vanished(noop, earlier=False) == [u[1], u[2], u[7]]
    assert not noop.data("EXPUNGE")
    ok(client, f"UID STORE {u[3]},{u[4]} +FLAGS.SILENT (\\Deleted)")
    mine = ok(client, f"UID EXPUNGE {u[4]}")
    assert mine.untagged == [b"* VANISHED %d\r\n" % u[4]], mine.untagged
    assert mine.code is not None and mine.code.startswith("HIGHESTMODSEQ "), mine.line
    assert vanished(ok(client, "EXPUNGE"), earlier=False) == [u[3]]
    ok(client, "CREATE Elsewhere")
    moved = ok(client, f"UID MOVE {u[8]}:{u[9]} Elsewhere")
    assert vanished(moved, earlier=False) == [u[8], u[9]] and not moved.data("EXPUNGE")
    assert ok(client, "NOOP") and fetches(ok(client, "FETCH 1:* UID")).keys() == {1, 2, 3}


def test_closed_on_reselect_only_with_qresync(connect: Connector, ten: list[int]) -> None:
    plain = connect.raw()
    ok(plain, "SELECT INBOX")
    assert "CLOSED" not in ok(plain, "EXAMINE INBOX").codes()
    client = qresync_client(connect)
    assert "CLOSED" not in ok(client, "SELECT INBOX").codes(), "nothing was selected"
    response = ok(client, "EXAMINE INBOX")
    assert response.untagged[0].startswith(b"* OK [CLOSED]"), response.untagged
    failed = client.command("SELECT Nowhere")
    assert failed.status == "NO" and failed.codes()[0] == "CLOSED", failed.untagged
    assert "CLOSED" not in ok(client, "SELECT INBOX").codes(), "the failed SELECT closed it"


def test_close_then_resync_finds_the_expunged(connect: Connector, ten: list[int]) -> None:
    client = qresync_client(connect)
    select = ok(client, "SELECT INBOX")
    validity = code_value(select, "UIDVALIDITY")
    highest = code_value(select, "HIGHESTMODSEQ")
    u = ten
    store = ok(client, f"UID STORE {u[0]},{u[3]} +FLAGS (\\Deleted)")
    assert by_uid(store).keys() == {u[0], u[3]}
    close = ok(client, "CLOSE")
    assert not close.untagged, "CLOSE expunges silently"
    again = ok(client, f"SELECT INBOX (QRESYNC ({validity} {highest}))")
    assert vanished(again, earlier=True) == [u[0], u[3]]
    assert not fetches(again), "the flagged ones are gone; nothing else changed"


def test_known_uids_gone_before_modseq_are_told_too(connect: Connector, ten: list[int]) -> None:
    """A cache that still holds a message expunged before its modseq (or a store whose
    expunge log does not reach back that far) is set right: every known UID the mailbox
    lacks is VANISHED (EARLIER); known UIDs past UIDNEXT never existed and are not."""
    u = ten
    actor = connect.selected()
    ok(actor, f"UID STORE {u[0]} +FLAGS.SILENT (\\Deleted)")
    ok(actor, "EXPUNGE")
    client = qresync_client(connect)
    select = ok(client, "SELECT INBOX")
    validity, highest = code_value(select, "UIDVALIDITY"), code_value(select, "HIGHESTMODSEQ")
    ok(actor, f"UID STORE {u[5]} +FLAGS.SILENT (\\Deleted)")
    ok(actor, "EXPUNGE")
    known = f"{u[0]}:{u[9] + 50}"
    response = ok(client, f"SELECT INBOX (QRESYNC ({validity} {highest} {known}))")
    assert vanished(response, earlier=True) == [u[0], u[5]]
    plain = ok(client, f"SELECT INBOX (QRESYNC ({validity} {highest}))")
    assert vanished(plain, earlier=True) == [u[5]], "without known UIDs: the log since modseq"


def test_resync_after_the_store_forgot_the_mailbox(
    connect: Connector, server: ServerProcess, ten: list[int]
) -> None:
    """Expunges while no session had the mailbox open, then a resync without known UIDs.
    The proxy forgets a user's mailboxes ``linger`` seconds after the last session (its
    mirror starts again with no expunge log): VANISHED (EARLIER) then names every UID the
    mailbox lacks, so nothing expunged meanwhile is missed."""
    u = ten
    first = qresync_client(connect)
    select = ok(first, "SELECT INBOX")
    validity, highest = code_value(select, "UIDVALIDITY"), code_value(select, "HIGHESTMODSEQ")
    ok(first, "LOGOUT")
    actor = connect.selected()
    ok(actor, f"UID STORE {u[2]},{u[7]} +FLAGS.SILENT (\\Deleted)")
    ok(actor, "EXPUNGE")
    ok(actor, "LOGOUT")
    if server.backend.name == "proxy":
        time.sleep(PROXY_LINGER + 1.5)  # the user's mirrors are dropped
    client = qresync_client(connect)
    response = ok(client, f"SELECT INBOX (QRESYNC ({validity} {highest}))")
    assert {u[2], u[7]} <= set(vanished(response, earlier=True)), response.untagged
    assert not set(vanished(response, earlier=True)) & set(u) - {u[2], u[7]}
    fetch = ok(client, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest} VANISHED)")
    assert {u[2], u[7]} <= set(vanished(fetch, earlier=True)), fetch.untagged
