"""STORE (±FLAGS, .SILENT, keywords), COPY/UID COPY with COPYUID, MOVE/UID MOVE
(RFC 3501 6.4.6-6.4.8; RFC 4315; RFC 6851)."""

from __future__ import annotations

import re

import pytest
from imapclient import IMAPClient
from imapserver import Connector, uid_set

from bench import messages
from bench.harness import RawClient, Response, fetches, flag_set


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def flag_sets(response: Response) -> dict[int, set[str]]:
    return {
        seq: flag_set(items["FLAGS"])
        for seq, items in fetches(response).items()
        if "FLAGS" in items
    }


def current_flags(client: RawClient) -> dict[int, set[str]]:
    return {k: v - {"\\RECENT"} for k, v in flag_sets(ok(client, "FETCH 1:* FLAGS")).items()}


@pytest.fixture
def three(connect: Connector) -> tuple[RawClient, list[int]]:
    uids = connect.append([messages.plain(subject=f"m{i}") for i in range(3)])
    return connect.selected(), uids


def test_store_add_remove_replace(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    response = ok(client, "STORE 1:2 +FLAGS (\\Flagged \\Answered)")
    got = flag_sets(response)
    assert set(got) == {1, 2}
    assert all({"\\FLAGGED", "\\ANSWERED"} <= flags for flags in got.values())
    response = ok(client, "STORE 2 -FLAGS (\\Answered)")
    assert "\\ANSWERED" not in flag_sets(response)[2] and "\\FLAGGED" in flag_sets(response)[2]
    response = ok(client, "STORE 3 FLAGS (\\Draft \\Seen)")
    assert flag_sets(response)[3] - {"\\RECENT"} == {"\\DRAFT", "\\SEEN"}
    assert current_flags(client) == {
        1: {"\\FLAGGED", "\\ANSWERED"},
        2: {"\\FLAGGED"},
        3: {"\\DRAFT", "\\SEEN"},
    }
    ok(client, "STORE 1 FLAGS ()")
    assert current_flags(client)[1] == set()


def test_store_silent_sends_no_fetch(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    for command in ("+FLAGS.SILENT (\\Seen)", "-FLAGS.SILENT (\\Seen)", "FLAGS.SILENT (\\Deleted)"):
        response = ok(client, f"STORE 1:3 {command}")
        assert not response.data("FETCH"), (command, response.untagged)
    assert all(flags == {"\\DELETED"} for flags in current_flags(client).values())
    assert not ok(client, "NOOP").data("FETCH")


@pytest.mark.one_backend  # the engine's report; the backends' stores have their own tests
def test_store_reports_every_message_once_in_order(connect: Connector) -> None:
    """Changed and unchanged messages, numbers that are not UIDs (after an EXPUNGE), UID
    STORE, and MODSEQ once CONDSTORE is on: one FETCH per message, in sequence order."""
    connect.append([messages.plain(subject=f"m{i}") for i in range(6)])
    client = connect.selected()
    ok(client, "STORE 2 +FLAGS.SILENT (\\Deleted)")
    ok(client, "EXPUNGE")  # UIDs 1 3 4 5 6 are numbers 1-5
    ok(client, "STORE 2,4 +FLAGS.SILENT (\\Seen)")
    response = ok(client, "STORE 1:5 +FLAGS (\\Seen $Hot)")
    assert [line.split()[1] for line in response.untagged if b"FETCH" in line] == [
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
    ]
    assert set(map(frozenset, flag_sets(response).values())) == {
        frozenset({"\\SEEN", "$HOT", "\\RECENT"})
    }
    ok(client, "STORE 2,4 -FLAGS.SILENT ($Hot)")
    response = ok(client, "UID STORE 1:* +FLAGS (\\Seen)")  # nothing changes
    got = fetches(response)
    assert list(got) == [1, 2, 3, 4, 5]
    assert [got[n]["UID"] for n in got] == [1, 3, 4, 5, 6]
    assert [("$HOT" in flag_set(got[n]["FLAGS"])) for n in got] == [True, False, True, False, True]
    ok(client, "ENABLE CONDSTORE")
    got = fetches(ok(client, "STORE 3:5 -FLAGS ($Hot)"))
    assert list(got) == [3, 4, 5] and [got[n]["UID"] for n in got] == [4, 5, 6]
    assert got[3]["MODSEQ"] == got[5]["MODSEQ"] != got[4]["MODSEQ"]


def test_store_flag_list_without_parentheses(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    ok(client, "STORE 1 +FLAGS \\Seen \\Flagged")
    assert current_flags(client)[1] == {"\\SEEN", "\\FLAGGED"}


def test_uid_store_includes_uid(three: tuple[RawClient, list[int]]) -> None:
    client, uids = three
    response = ok(client, f"UID STORE {uids[1]} +FLAGS (\\Flagged)")
    got = fetches(response)
    assert list(got) == [2]
    assert got[2]["UID"] == uids[1]
    # Non-existent UIDs in a UID range are not an error.
    response = ok(client, f"UID STORE {uids[-1] + 100}:{uids[-1] + 200} +FLAGS (\\Seen)")
    assert not response.data("FETCH")


def test_keywords(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    ok(client, "STORE 1 +FLAGS ($Forwarded project-x Junk)")
    flags = current_flags(client)[1]
    assert {"$FORWARDED", "PROJECT-X", "JUNK"} <= flags
    assert ok(client, "SEARCH KEYWORD project-x").data("SEARCH")[0].split() == [b"1"]
    assert ok(client, "SEARCH UNKEYWORD project-x").data("SEARCH")[0].split() == [b"2", b"3"]
    ok(client, "STORE 1 -FLAGS (project-x)")
    assert "PROJECT-X" not in current_flags(client)[1]
    # New keywords become part of the mailbox's FLAGS (or PERMANENTFLAGS allows \*).
    response = ok(client, "SELECT INBOX")
    text = b" ".join(response.untagged).upper()
    assert b"$FORWARDED" in text or b"\\*" in text


def test_store_keyword_is_case_insensitive_for_search(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    ok(client, "STORE 2 +FLAGS (Important)")
    assert ok(client, "SEARCH KEYWORD Important").data("SEARCH")[0].split() == [b"2"]


def test_store_invalid_is_bad(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    for command in ("STORE 1 +FLAGZ (\\Seen)", "STORE 1 +FLAGS (\\Seen", "STORE 1", "STORE"):
        assert client.command(command).status == "BAD", command
    assert client.command("STORE 99 +FLAGS (\\Seen)").status in ("BAD", "NO")


def test_store_imaplib_and_imapclient(connect: Connector) -> None:
    uids = connect.append([messages.plain(), messages.plain()])
    conn = connect.imaplib()
    conn.select("INBOX")
    typ, data = conn.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and data[0] is not None and b"\\Flagged" in data[0]
    cli: IMAPClient = connect.imapclient()
    cli.select_folder("INBOX")
    cli.add_flags([uids[1]], [b"\\Answered", b"custom"])
    flags = cli.get_flags(uids)
    assert b"\\Flagged" in flags[uids[0]]
    assert {b"\\Answered", b"custom"} <= set(flags[uids[1]])
    cli.remove_flags([uids[1]], [b"custom"])
    assert b"custom" not in cli.get_flags([uids[1]])[uids[1]]
    cli.set_flags([uids[0]], [b"\\Seen"])
    assert set(cli.get_flags([uids[0]])[uids[0]]) - {b"\\Recent"} == {b"\\Seen"}


# -- COPY ------------------------------------------------------------------------------


def copyuid(response: Response) -> tuple[int, list[int], list[int]]:
    """(UIDVALIDITY, source UIDs, destination UIDs) from a COPYUID code (tagged or untagged)."""
    for code in response.codes():
        parts = code.split()
        if parts and parts[0].upper() == "COPYUID":
            assert len(parts) == 4, code
            return int(parts[1]), uid_set(parts[2]), uid_set(parts[3])
    raise AssertionError(f"no COPYUID in {response.all_text()!r}")


def test_copy_with_copyuid_keeps_flags_and_dates(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(4)])
    client = connect.selected()
    ok(client, "CREATE Dest")
    ok(client, "STORE 2 +FLAGS (\\Flagged $Label)")
    source = fetches(ok(client, "FETCH 2:3 (INTERNALDATE RFC822.SIZE)"))
    response = ok(client, "COPY 2:3 Dest")
    validity, src, dst = copyuid(response)
    assert sorted(src) == uids[1:3]
    assert len(dst) == 2 and len(set(dst)) == 2
    status = ok(client, "STATUS Dest (UIDVALIDITY MESSAGES)").data("STATUS")[0]
    assert f"UIDVALIDITY {validity}".encode() in status and b"MESSAGES 2" in status
    # The source is unchanged.
    assert len(fetches(ok(client, "FETCH 1:* UID"))) == 4
    other = connect.selected("Dest")
    pairs = dict(zip(src, dst, strict=True))
    copied = fetches(ok(other, f"UID FETCH {pairs[uids[1]]} (FLAGS INTERNALDATE RFC822.SIZE)"))
    (items,) = copied.values()
    flags = flag_set(items["FLAGS"])
    assert {"\\FLAGGED", "$LABEL"} <= flags
    assert items["INTERNALDATE"] == source[2]["INTERNALDATE"]
    assert items["RFC822.SIZE"] == source[2]["RFC822.SIZE"]


def test_uid_copy(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(3)])
    client = connect.selected()
    ok(client, "CREATE Dest")
    response = ok(client, f"UID COPY {uids[0]},{uids[2]} Dest")
    _, src, dst = copyuid(response)
    assert sorted(src) == [uids[0], uids[2]]
    assert len(dst) == 2
    # A UID set naming no message copies nothing and is not an error.
    response = client.command(f"UID COPY {uids[-1] + 50} Dest")
    assert response.ok
    status = ok(client, "STATUS Dest (MESSAGES)").data("STATUS")[0]
    assert b"MESSAGES 2" in status


def test_copy_to_missing_mailbox_is_trycreate(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    response = client.command("COPY 1 NoSuchBox")
    assert response.status == "NO"
    assert "TRYCREATE" in response.codes()


def test_copy_to_same_mailbox(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    response = ok(client, "COPY 1 INBOX")
    exists = response.numbers("EXISTS") + ok(client, "NOOP").numbers("EXISTS")
    assert exists and exists[-1] == 4


def test_copy_imapclient(connect: Connector) -> None:
    uids = connect.append([messages.plain(), messages.plain()])
    cli: IMAPClient = connect.imapclient()
    cli.create_folder("Copies")
    cli.select_folder("INBOX")
    result = cli.copy(uids, "Copies")
    assert result is None or b"COPYUID" in result.upper()
    assert cli.folder_status("Copies", ["MESSAGES"])[b"MESSAGES"] == 2


# -- MOVE ------------------------------------------------------------------------------


def test_move(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(4)])
    client = connect.selected()
    ok(client, "CREATE Moved")
    response = ok(client, "MOVE 2:3 Moved")
    _, src, dst = copyuid(response)
    assert sorted(src) == uids[1:3] and len(dst) == 2
    remaining = list(uids)
    for seq in response.numbers("EXPUNGE"):
        del remaining[seq - 1]
    assert remaining == [uids[0], uids[3]]
    # COPYUID comes before the EXPUNGE responses (RFC 6851 4.3) when it is untagged.
    lines = response.untagged
    copy_lines = [i for i, line in enumerate(lines) if b"COPYUID" in line.upper()]
    expunge_lines = [i for i, line in enumerate(lines) if re.match(rb"\* \d+ EXPUNGE", line)]
    if copy_lines:
        assert copy_lines[0] < expunge_lines[0]
    after = fetches(ok(client, "FETCH 1:* UID"))
    assert [after[i]["UID"] for i in sorted(after)] == [uids[0], uids[3]]
    status = ok(client, "STATUS Moved (MESSAGES)").data("STATUS")[0]
    assert b"MESSAGES 2" in status


def test_uid_move(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(3)])
    client = connect.selected()
    ok(client, "CREATE Moved")
    ok(client, f"UID STORE {uids[2]} +FLAGS (\\Seen)")
    response = ok(client, f"UID MOVE {uids[2]} Moved")
    _, src, dst = copyuid(response)
    assert src == [uids[2]]
    assert response.numbers("EXPUNGE") == [3]
    other = connect.selected("Moved")
    flags = fetches(ok(other, f"UID FETCH {dst[0]} FLAGS"))
    assert "\\SEEN" in flag_set(next(iter(flags.values()))["FLAGS"])


def test_move_to_missing_mailbox_keeps_messages(three: tuple[RawClient, list[int]]) -> None:
    client, _ = three
    response = client.command("MOVE 1:* NoSuchBox")
    assert response.status == "NO"
    assert "TRYCREATE" in response.codes()
    assert not response.numbers("EXPUNGE")
    assert len(fetches(ok(client, "FETCH 1:* UID"))) == 3


def test_move_is_seen_by_other_session(connect: Connector) -> None:
    connect.append([messages.plain(subject=str(i)) for i in range(2)])
    mover = connect.selected()
    watcher = connect.selected()
    ok(mover, "CREATE Elsewhere")
    ok(mover, "MOVE 1 Elsewhere")
    assert ok(watcher, "NOOP").numbers("EXPUNGE") == [1]


def test_move_imapclient(connect: Connector) -> None:
    uids = connect.append([messages.plain(), messages.plain()])
    cli: IMAPClient = connect.imapclient()
    cli.create_folder("Archive")
    cli.select_folder("INBOX")
    cli.move([uids[0]], "Archive")
    assert cli.search("ALL") == [uids[1]]
    assert cli.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1


def uids_of(client: RawClient) -> list[int]:
    got = fetches(ok(client, "FETCH 1:* UID"))
    return [int(str(got[seq]["UID"])) for seq in sorted(got)]


@pytest.mark.one_backend  # the engine's numbering; the backends' expunges have their own tests
@pytest.mark.timeout(600)  # 9,500 messages: seconds in memory, a minute on a loaded maildir
def test_expunge_and_move_of_thousands_are_numbered_as_told(connect: Connector) -> None:
    """More messages than the view drops in one step (it tells them in steps, highest
    first): the EXPUNGEs, applied in order by the client that expunged, by another
    session at its NOOP, and VANISHED with QRESYNC, leave each with the mailbox's UIDs."""
    uids = connect.append_in_batches([messages.plain(subject=str(i)) for i in range(9500)])
    client = connect.selected()
    watcher = connect.selected()
    resyncing = connect.raw()
    ok(resyncing, "ENABLE QRESYNC")
    ok(resyncing, "SELECT INBOX")
    doomed = {*uids[10:4000], *uids[4000:9000:3], uids[-1]}
    ok(client, f"UID STORE {','.join(map(str, sorted(doomed)))} +FLAGS.SILENT (\\Deleted)")
    response = ok(client, "EXPUNGE")
    left = [uid for uid in uids if uid not in doomed]
    for client_uids, told in ((list(uids), response), (list(uids), ok(watcher, "NOOP"))):
        assert len(told.numbers("EXPUNGE")) == len(doomed)
        for seq in told.numbers("EXPUNGE"):
            del client_uids[seq - 1]
        assert client_uids == left
    vanished = [
        uid for line in ok(resyncing, "NOOP").data("VANISHED") for uid in uid_set(line.decode())
    ]
    assert sorted(vanished) == sorted(doomed)
    ok(client, "CREATE Moved")
    half = len(left) // 2
    response = ok(client, f"MOVE 1:{half} Moved")
    client_uids = list(left)
    for seq in response.numbers("EXPUNGE"):
        del client_uids[seq - 1]
    assert client_uids == left[half:] == uids_of(client) == uids_of(watcher)
