"""CONDSTORE (RFC 7162 section 3.1) over real sockets, on every backend: HIGHESTMODSEQ,
FETCH MODSEQ and CHANGEDSINCE, STORE UNCHANGEDSINCE and [MODIFIED], SEARCH MODSEQ,
STATUS HIGHESTMODSEQ, MODSEQ in the FETCH responses about flags once it is on, and
nothing of it for a client that never asks."""

from __future__ import annotations

import re

import pytest
from imapclient import IMAPClient
from imapserver import Connector, code_value, ok

from bench import messages
from bench.harness import RawClient, Response, fetches, flag_set


def modseqs(response: Response) -> dict[int, int]:
    """MODSEQ of every FETCH response, by sequence number."""
    out = {}
    for seq, items in fetches(response).items():
        if "MODSEQ" in items:
            value = items["MODSEQ"]
            assert isinstance(value, list) and len(value) == 1, items
            out[seq] = int(str(value[0]))
    return out


@pytest.fixture
def five(connect: Connector) -> tuple[RawClient, list[int]]:
    uids = connect.append([messages.plain(subject=f"m{i}") for i in range(5)])
    client = connect.raw()
    return client, uids


def test_capability_and_plain_client_sees_nothing_new(
    connect: Connector, five: tuple[RawClient, list[int]]
) -> None:
    client, _ = five
    caps = ok(client, "CAPABILITY").data("CAPABILITY")[0].split()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps
    select = ok(client, "SELECT INBOX")
    assert not any("MODSEQ" in c for c in select.codes()), select.untagged
    store = ok(client, "STORE 1 +FLAGS (\\Flagged)")
    assert store.untagged == [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"], store.untagged
    other = connect.selected()
    ok(other, "STORE 2 +FLAGS (\\Deleted)")
    ok(other, "EXPUNGE")
    noop = ok(client, "NOOP")
    assert noop.untagged[-1] == b"* 2 EXPUNGE\r\n", noop.untagged
    assert not any(b"MODSEQ" in line or b"VANISHED" in line for line in noop.untagged)
    ok(client, "STORE 1 +FLAGS.SILENT (\\Deleted)")
    expunge = ok(client, "EXPUNGE")
    assert expunge.untagged == [b"* 1 EXPUNGE\r\n"] and expunge.code is None, expunge.line
    assert not any(b"MODSEQ" in line for line in ok(client, "FETCH 1:* FLAGS").untagged)


def test_select_condstore_and_store_report_modseq(five: tuple[RawClient, list[int]]) -> None:
    client, uids = five
    select = ok(client, "SELECT INBOX (CONDSTORE)")
    highest = code_value(select, "HIGHESTMODSEQ")
    assert highest >= 1
    store = ok(client, "STORE 1:2 +FLAGS (\\Seen)")
    got = fetches(store)
    assert set(got) == {1, 2}
    assert [got[n]["UID"] for n in (1, 2)] == uids[:2], "UID in every such FETCH (3.1)"
    after = modseqs(store)
    assert after[1] > highest and after[1] == after[2]
    silent = ok(client, "STORE 3 +FLAGS.SILENT (\\Answered)")
    got = fetches(silent)  # RFC 7162 3.1.3: the new modseq even after .SILENT
    assert set(got) == {3} and got[3]["UID"] == uids[2] and "FLAGS" not in got[3], got
    assert modseqs(silent)[3] > after[1]
    noop_store = ok(client, "STORE 3 +FLAGS.SILENT (\\Answered)")
    assert not noop_store.untagged, "nothing changed: no new modseq, nothing to tell"
    status = ok(client, "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    line = status.data("STATUS")[0]
    assert re.search(rb"HIGHESTMODSEQ (\d+)", line).group(1) == str(modseqs(silent)[3]).encode()


def test_fetch_modseq_enables_and_tells_highestmodseq_once(
    five: tuple[RawClient, list[int]],
) -> None:
    client, _ = five
    select = ok(client, "SELECT INBOX")
    first = ok(client, "FETCH 1:* (MODSEQ)")
    highest = code_value(first, "HIGHESTMODSEQ")
    values = modseqs(first)
    assert sorted(values) == [1, 2, 3, 4, 5] and max(values.values()) <= highest
    assert not any("MODSEQ" in c for c in select.codes())
    again = ok(client, "FETCH 1 (FLAGS MODSEQ)")
    assert not again.codes(), "HIGHESTMODSEQ only with the first enabling command"
    store = ok(client, "STORE 4 +FLAGS (\\Seen)")
    assert modseqs(store)[4] > highest  # on from now: STORE's FETCH carries MODSEQ


def test_enable_while_selected_tells_highestmodseq(five: tuple[RawClient, list[int]]) -> None:
    client, _ = five
    ok(client, "SELECT INBOX")
    enabled = ok(client, "ENABLE CONDSTORE")
    assert enabled.data("ENABLED") == [b"CONDSTORE"]
    assert code_value(enabled, "HIGHESTMODSEQ") >= 1
    again = ok(client, "ENABLE QRESYNC")
    assert again.data("ENABLED") == [b"QRESYNC"] and not again.codes(), "CONDSTORE was on"


def test_changedsince(connect: Connector, five: tuple[RawClient, list[int]]) -> None:
    client, uids = five
    highest = code_value(ok(client, "SELECT INBOX (CONDSTORE)"), "HIGHESTMODSEQ")
    ok(client, "STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    response = ok(client, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    got = fetches(response)
    assert set(got) == {2, 4}
    assert [got[2]["UID"], got[4]["UID"]] == [uids[1], uids[3]]
    assert all("\\FLAGGED" in flag_set(got[n]["FLAGS"]) for n in (2, 4))
    assert all(m > highest for m in modseqs(response).values())
    latest = max(modseqs(response).values())
    assert not ok(client, f"FETCH 1:* (FLAGS) (CHANGEDSINCE {latest})").untagged
    # imapclient's own modifier syntax, from another session
    other: IMAPClient = connect.imapclient()
    other.select_folder("INBOX")
    got2 = other.fetch(uids, ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])  # UID FETCH
    assert sorted(got2) == [uids[1], uids[3]] and all(b"MODSEQ" in got2[n] for n in got2)


def test_unchangedsince_conflict_gives_modified(
    connect: Connector, five: tuple[RawClient, list[int]]
) -> None:
    """RFC 7162 3.1.3's example: a STORE under a stale modseq fails for the messages
    another client changed meanwhile, which [MODIFIED] names; the others are stored."""
    client, uids = five
    highest = code_value(ok(client, "SELECT INBOX (CONDSTORE)"), "HIGHESTMODSEQ")
    other = connect.selected()
    ok(other, "STORE 1,3 +FLAGS (\\Seen)")
    response = client.command(f"STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Deleted)")
    assert response.ok and response.code == "MODIFIED 1,3", response.line
    got = fetches(response)
    assert list(got) == [2] or set(got) == {1, 2, 3}, response.untagged
    assert "\\DELETED" in flag_set(got[2]["FLAGS"])
    for seq in (1, 3):  # the other session's change is told, not overwritten
        assert seq not in got or "\\DELETED" not in flag_set(got[seq]["FLAGS"])
    uid_response = client.command(
        f"UID STORE {uids[0]}:{uids[4]} (UNCHANGEDSINCE {highest}) -FLAGS.SILENT (\\Seen)"
    )
    assert uid_response.ok, uid_response.line
    assert uid_response.code == f"MODIFIED {uids[0]}:{uids[2]}", uid_response.line
    current = fetches(ok(client, "FETCH 1:5 (FLAGS)"))
    assert {n: "\\DELETED" in flag_set(current[n]["FLAGS"]) for n in current} == {
        1: False,
        2: True,
        3: False,
        4: False,
        5: False,
    }
    zero = client.command("STORE 4:5 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
    assert zero.ok and zero.code == "MODIFIED 4:5", zero.line
    assert not zero.data("FETCH")


def test_search_modseq(five: tuple[RawClient, list[int]]) -> None:
    client, _ = five
    highest = code_value(ok(client, "SELECT INBOX (CONDSTORE)"), "HIGHESTMODSEQ")
    store = ok(client, "STORE 2,5 +FLAGS (\\Draft)")
    newest = max(modseqs(store).values())
    response = ok(client, f"SEARCH MODSEQ {highest + 1}")
    assert response.data("SEARCH") == [b"2 5 (MODSEQ %d)" % newest], response.untagged
    entry = ok(client, f'SEARCH MODSEQ "/flags/\\\\draft" all {highest + 1} DRAFT')
    assert entry.data("SEARCH") == [b"2 5 (MODSEQ %d)" % newest], entry.untagged
    either = ok(client, f"SEARCH OR MODSEQ {newest} UNDRAFT")
    assert either.data("SEARCH") == [b"1 2 3 4 5 (MODSEQ %d)" % newest], either.untagged
    none = ok(client, f"UID SEARCH MODSEQ {newest + 1}")
    assert none.data("SEARCH") == [b""], "no match: no MODSEQ either"


def test_search_modseq_enables_condstore(five: tuple[RawClient, list[int]]) -> None:
    client, _ = five
    ok(client, "SELECT INBOX")
    response = ok(client, "SEARCH MODSEQ 1")
    assert code_value(response, "HIGHESTMODSEQ") >= 1
    assert modseqs(ok(client, "STORE 1 +FLAGS (\\Seen)"))


def test_status_highestmodseq(connect: Connector, five: tuple[RawClient, list[int]]) -> None:
    client, _ = five
    imap: IMAPClient = connect.imapclient()
    before = imap.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
    highest = code_value(ok(client, "SELECT INBOX (CONDSTORE)"), "HIGHESTMODSEQ")
    assert before == highest
    ok(client, "STORE 1 +FLAGS (\\Seen)")
    after = imap.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
    assert after > before
    # STATUS HIGHESTMODSEQ is an enabling command: the selected mailbox's value is told
    ok(client, "UNSELECT")
    fresh = connect.raw()
    ok(fresh, "SELECT INBOX")
    response = ok(fresh, "STATUS INBOX (HIGHESTMODSEQ)")
    assert code_value(response, "HIGHESTMODSEQ") == after


def test_other_sessions_changes_carry_modseq(
    connect: Connector, five: tuple[RawClient, list[int]]
) -> None:
    client, uids = five
    highest = code_value(ok(client, "SELECT INBOX (CONDSTORE)"), "HIGHESTMODSEQ")
    other = connect.selected()
    ok(other, "STORE 3 +FLAGS (\\Flagged)")
    noop = ok(client, "NOOP")
    got = fetches(noop)
    assert list(got) == [3] and got[3]["UID"] == uids[2], noop.untagged
    assert modseqs(noop)[3] > highest
    fetch = ok(client, "FETCH 4 (BODY[TEXT])")  # sets \Seen: UID and MODSEQ come along
    got = fetches(fetch)[4]
    assert got["UID"] == uids[3] and "\\SEEN" in flag_set(got["FLAGS"]) and "MODSEQ" in got


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)", "UNCHANGEDSINCE needs a value"),
        ("STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "UNCHANGEDSINCE:"),
        ("STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS ()", "given twice"),
        ("STORE 1 (XFOO 1) +FLAGS (\\Seen)", "Unknown STORE modifier XFOO"),
        ("STORE 1 (UNCHANGEDSINCE 5) +FLAGS", "modifiers, an item and flags"),
        ("FETCH 1 FLAGS (CHANGEDSINCE)", "CHANGEDSINCE needs a value"),
        ("FETCH 1 FLAGS (CHANGEDSINCE 99999999999999999999)", "CHANGEDSINCE:"),
        ("FETCH 1 MODSEQ[1]", "MODSEQ takes no section"),
        ("SEARCH MODSEQ", "MODSEQ needs a mod-sequence number"),
        ('SEARCH MODSEQ "/flags/\\\\seen" 5', "MODSEQ entry type"),
        ('SEARCH MODSEQ "/other/x" all 5', "Invalid MODSEQ entry name"),
        ("SELECT INBOX (CONDSTORE 1)", "Unknown SELECT parameter 1"),
        ("STATUS INBOX (HIGHESTMODSEQ X)", "Unknown STATUS item X"),
    ],
)
def test_bad_arguments(five: tuple[RawClient, list[int]], command: str, text: str) -> None:
    client, _ = five
    ok(client, "SELECT INBOX")
    response = client.command(command)
    assert response.status == "BAD", response.line
    assert text.encode() in response.text, response.line
    assert not any(b"Traceback" in line for line in response.untagged)
    assert ok(client, "NOOP")
