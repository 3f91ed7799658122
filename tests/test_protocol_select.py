"""SELECT/EXAMINE responses, \\Recent, APPEND (flags, dates, TRYCREATE, APPENDUID, LITERAL+),
CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE (RFC 3501 6.3.1, 6.3.2, 6.3.11, 6.4.1-6.4.3;
RFC 4315; RFC 3691)."""

from __future__ import annotations

import imaplib
import re
from datetime import UTC, datetime, timedelta, timezone

from imapclient import IMAPClient
from imapserver import Connector, appenduid

from bench import messages
from bench.harness import RawClient, Response, fetches, flag_set, parse_values
from bench.run import append_all


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def select_info(response: Response) -> dict[str, object]:
    """The pieces of a SELECT/EXAMINE answer, each required one checked present once."""
    assert response.ok, response.line
    info: dict[str, object] = {}
    for kind in ("EXISTS", "RECENT"):
        numbers = response.numbers(kind)
        assert len(numbers) == 1, (kind, response.untagged)
        info[kind] = numbers[0]
    flags = response.data("FLAGS")
    assert len(flags) == 1, response.untagged
    values, _ = parse_values(flags[0])
    info["FLAGS"] = flag_set(values[0])
    for code in response.codes():
        name, _, rest = code.partition(" ")
        info[name.upper()] = rest
    return info


def internaldate(value: object) -> datetime:
    assert isinstance(value, bytes), value
    assert re.fullmatch(rb"[ 0-3]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}", value), value
    return datetime.strptime(value.decode().strip(), "%d-%b-%Y %H:%M:%S %z")


# -- SELECT / EXAMINE ----------------------------------------------------------------------


def test_select_empty_inbox(raw: RawClient) -> None:
    info = select_info(raw.command("SELECT INBOX"))
    assert info["EXISTS"] == 0
    assert info["RECENT"] == 0
    assert {"\\SEEN", "\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\DRAFT"} <= info["FLAGS"]  # type: ignore[operator]
    assert int(str(info["UIDVALIDITY"])) > 0
    assert int(str(info["UIDNEXT"])) > 0
    assert "READ-WRITE" in info
    assert "UNSEEN" not in info  # no unseen message to point at


def test_select_reports_counts_unseen_and_permanentflags(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(5)])
    setter = connect.selected()
    ok(setter, f"UID STORE {uids[0]}:{uids[1]} +FLAGS (\\Seen)")
    ok(setter, "LOGOUT")
    client = connect.raw()
    info = select_info(client.command("SELECT INBOX"))
    assert info["EXISTS"] == 5
    assert info["UNSEEN"] == "3"  # sequence number of the first unseen message
    assert int(str(info["UIDNEXT"])) > uids[-1]
    permanent = str(info["PERMANENTFLAGS"]).upper()
    for flag in ("\\SEEN", "\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\DRAFT", "\\*"):
        assert flag in permanent, permanent


def test_select_finds_the_first_unseen_past_the_first_look(connect: Connector) -> None:
    """SELECT looks for the first unseen message among the first 2000, then in all."""
    connect.append_in_batches([messages.plain(subject=str(i)) for i in range(2003)])
    client = connect.raw()
    ok(client, "SELECT INBOX")
    ok(client, "STORE 1:2001 +FLAGS.SILENT (\\Seen)")
    ok(client, "CLOSE")
    assert select_info(client.command("SELECT INBOX"))["UNSEEN"] == "2002"
    ok(client, "STORE 2:2003 +FLAGS.SILENT (\\Seen)")
    ok(client, "STORE 1 -FLAGS.SILENT (\\Seen)")
    ok(client, "CLOSE")
    assert select_info(client.command("SELECT INBOX"))["UNSEEN"] == "1"
    ok(client, "STORE 1 +FLAGS.SILENT (\\Seen)")
    ok(client, "CLOSE")
    assert "UNSEEN" not in select_info(client.command("SELECT INBOX"))


def test_select_numbers_the_first_unseen_after_expunges(connect: Connector) -> None:
    """The first unseen as the mailbox keeps it, told as its sequence number (UIDs with gaps),
    whatever spelling of \\Seen the client stored; a later SELECT follows each change."""
    client = connect.raw()
    append_all(client, "INBOX", [messages.plain(subject=str(i)) for i in range(6)])
    ok(client, "SELECT INBOX")
    ok(client, "STORE 1:4 +FLAGS.SILENT (\\seen)")
    ok(client, "STORE 2 +FLAGS.SILENT (\\Deleted)")
    ok(client, "CLOSE")  # UIDs 1, 3, 4, 5, 6 left
    assert select_info(client.command("SELECT INBOX"))["UNSEEN"] == "4"
    ok(client, "UID STORE 3 -FLAGS.SILENT (\\SEEN)")
    assert select_info(client.command("SELECT INBOX"))["UNSEEN"] == "2"
    ok(client, "UID STORE 3,5:6 +FLAGS.SILENT (\\Seen)")
    assert "UNSEEN" not in select_info(client.command("SELECT INBOX"))
    ok(client, "UID STORE 6 -FLAGS.SILENT (\\Seen)")
    assert select_info(client.command("SELECT INBOX"))["UNSEEN"] == "5"


def test_examine_is_read_only(connect: Connector) -> None:
    connect.append([messages.plain()])
    client = connect.raw()
    response = client.command("EXAMINE INBOX")
    info = select_info(response)
    assert response.code == "READ-ONLY"
    assert info["EXISTS"] == 1
    # Reading the body in a read-only mailbox must not set \Seen.
    fetched = fetches(ok(client, "FETCH 1 (BODY[] FLAGS)"))
    flags = fetched[1].get("FLAGS", [])
    assert "\\SEEN" not in flag_set(flags)
    other = connect.raw()
    ok(other, "SELECT INBOX")
    flags = fetches(ok(other, "FETCH 1 FLAGS"))[1]["FLAGS"]
    assert "\\SEEN" not in flag_set(flags)


def test_store_and_expunge_in_examined_mailbox_fail(connect: Connector) -> None:
    connect.append([messages.plain()], flags="\\Deleted")
    client = connect.raw()
    ok(client, "EXAMINE INBOX")
    client.command("STORE 1 +FLAGS (\\Flagged)")  # NO, or OK with nothing stored
    flags = fetches(ok(client, "FETCH 1 FLAGS"))[1]["FLAGS"]
    assert "\\FLAGGED" not in flag_set(flags)
    response = client.command("EXPUNGE")
    assert not response.numbers("EXPUNGE")
    ok(client, "CLOSE")  # no expunge after EXAMINE (RFC 3501 6.4.2)
    status = ok(client, "STATUS INBOX (MESSAGES)").data("STATUS")[0]
    assert b"MESSAGES 1" in status


def test_select_missing_mailbox_deselects(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "SELECT INBOX")
    assert client.command("SELECT NoSuchBox").status == "NO"
    # RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected.
    assert client.command("FETCH 1:* FLAGS").status in ("BAD", "NO")
    assert client.command("CHECK").status in ("BAD", "NO")


def test_reselect_switches_mailbox(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE Other")
    connect.append([messages.plain()], mailbox="Other")
    assert select_info(client.command("SELECT INBOX"))["EXISTS"] == 0
    assert select_info(client.command("SELECT Other"))["EXISTS"] == 1
    assert select_info(client.command("EXAMINE INBOX"))["EXISTS"] == 0


def test_select_imaplib_and_imapclient(connect: Connector) -> None:
    connect.append([messages.plain(), messages.plain()])
    conn = connect.imaplib()
    typ, data = conn.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    typ, data = conn.select("INBOX", readonly=True)
    assert typ == "OK"
    cli = connect.imapclient()
    info = cli.select_folder("INBOX", readonly=True)
    assert info[b"EXISTS"] == 2
    assert info[b"READ-ONLY"] == [b""]
    info = cli.select_folder("INBOX")
    assert b"UIDVALIDITY" in info and b"UIDNEXT" in info and b"PERMANENTFLAGS" in info


def test_recent_is_given_to_one_session_only(connect: Connector) -> None:
    connect.append([messages.plain(), messages.plain()])
    first = connect.raw()
    response = first.command("SELECT INBOX")
    assert select_info(response)["RECENT"] == 2
    flags = fetches(ok(first, "FETCH 1:* FLAGS"))
    assert all("\\RECENT" in flag_set(v["FLAGS"]) for v in flags.values())
    second = connect.raw()
    assert select_info(second.command("SELECT INBOX"))["RECENT"] == 0
    flags = fetches(ok(second, "FETCH 1:* FLAGS"))
    assert all("\\RECENT" not in flag_set(v["FLAGS"]) for v in flags.values())
    ok(first, "CLOSE")
    third = connect.raw()
    assert select_info(third.command("SELECT INBOX"))["RECENT"] == 0


def test_search_recent_and_new(connect: Connector) -> None:
    connect.append([messages.plain()], flags="\\Seen")
    connect.append([messages.plain()])
    client = connect.raw()
    ok(client, "SELECT INBOX")
    assert ok(client, "SEARCH RECENT").data("SEARCH")[0].split() == [b"1", b"2"]
    assert ok(client, "SEARCH NEW").data("SEARCH")[0].split() == [b"2"]
    assert ok(client, "SEARCH OLD").data("SEARCH")[0].split() == []


# -- APPEND --------------------------------------------------------------------------------


def test_append_returns_appenduid(connect: Connector) -> None:
    client = connect.raw()
    status = ok(client, "STATUS INBOX (UIDVALIDITY)").all_text()
    match = re.search(rb"UIDVALIDITY (\d+)", status)
    assert match is not None
    validity = int(match.group(1))
    first = appenduid(client.command_with_literal("APPEND INBOX ", messages.plain()))
    second = appenduid(client.command_with_literal("APPEND INBOX ", messages.plain()))
    assert first[0] == second[0] == validity
    assert second[1] > first[1]


def test_append_with_flags_and_date(connect: Connector) -> None:
    client = connect.raw()
    message = messages.plain()
    response = client.command_with_literal(
        'APPEND INBOX (\\Seen \\Flagged $Label1) " 5-Mar-2021 10:20:30 +0100" ', message
    )
    uid = appenduid(response)[1]
    ok(client, "SELECT INBOX")
    items = fetches(ok(client, f"UID FETCH {uid} (FLAGS INTERNALDATE RFC822.SIZE)"))[1]
    flags = flag_set(items["FLAGS"])
    assert {"\\SEEN", "\\FLAGGED", "$LABEL1"} <= flags
    assert internaldate(items["INTERNALDATE"]) == datetime(
        2021, 3, 5, 10, 20, 30, tzinfo=timezone(timedelta(hours=1))
    )
    assert items["RFC822.SIZE"] == len(message)


def test_append_without_date_uses_now(connect: Connector) -> None:
    uid = connect.append([messages.plain()])[0]
    client = connect.selected()
    items = fetches(ok(client, f"UID FETCH {uid} INTERNALDATE"))[1]
    stamp = internaldate(items["INTERNALDATE"])
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 300


def test_append_to_missing_mailbox_is_trycreate(connect: Connector) -> None:
    client = connect.raw()
    response = client.command_with_literal("APPEND NoSuchBox ", messages.plain())
    assert response.status == "NO"
    assert response.code == "TRYCREATE"
    assert client.command("SELECT NoSuchBox").status == "NO"  # not created as a side effect


def test_append_literal_plus(connect: Connector) -> None:
    client = connect.raw()
    message = messages.with_attachment()
    client.send(b"a1 APPEND INBOX (\\Draft) {%d+}\r\n%s\r\n" % (len(message), message))
    response = client.read_until_tagged("a1")
    assert response.ok, response.line
    assert not any(line.startswith(b"+") for line in response.untagged)
    ok(client, "SELECT INBOX")
    body = fetches(ok(client, "FETCH 1 BODY.PEEK[]"))[1]["BODY[]"]
    assert body == message


def test_append_eight_bit_and_binary_content_is_kept(connect: Connector) -> None:
    message = messages.eight_bit_headers()
    uid = connect.append([message])[0]
    client = connect.selected()
    assert fetches(ok(client, f"UID FETCH {uid} BODY.PEEK[]"))[1]["BODY[]"] == message


def test_append_in_selected_state_reports_exists_once(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "SELECT INBOX")
    first = client.command_with_literal("APPEND INBOX ", messages.plain())
    assert first.ok
    noop = ok(client, "NOOP")
    exists = first.numbers("EXISTS") + noop.numbers("EXISTS")
    assert exists == [1], (first.untagged, noop.untagged)


def test_append_bad_date_or_flags_is_bad(connect: Connector) -> None:
    client = connect.raw()
    message = messages.plain()
    for args in ('"31-Foo-2021 10:00:00 +0000" ', '(\\Seen) "bogus" ', "(\\Seen)) "):
        response = client.command_with_literal(f"APPEND INBOX {args}", message)
        assert response.status == "BAD", response.line
    assert ok(client, "NOOP").ok
    assert ok(client, "STATUS INBOX (MESSAGES)").data("STATUS")[0].endswith(b"(MESSAGES 0)")


def test_append_imaplib_and_imapclient(connect: Connector) -> None:
    conn = connect.imaplib()
    when = imaplib.Time2Internaldate(datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))
    typ, data = conn.append("INBOX", "(\\Answered)", when, messages.plain())
    assert typ == "OK"
    assert b"APPENDUID" in data[0].upper()
    cli = connect.imapclient()
    result = cli.append("INBOX", messages.alternative(), flags=[b"\\Seen"])
    assert b"APPENDUID" in result.upper()
    cli.select_folder("INBOX")
    assert len(cli.search("ALL")) == 2


# -- CHECK / CLOSE / UNSELECT / EXPUNGE ---------------------------------------------------


def test_check(connect: Connector) -> None:
    client = connect.selected()
    assert ok(client, "CHECK").ok


def test_close_expunges_silently(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(3)])
    client = connect.selected()
    ok(client, f"UID STORE {uids[1]} +FLAGS.SILENT (\\Deleted)")
    response = ok(client, "CLOSE")
    assert not response.numbers("EXPUNGE"), response.untagged
    assert client.command("FETCH 1 FLAGS").status in ("BAD", "NO")  # back to authenticated
    info = select_info(client.command("SELECT INBOX"))
    assert info["EXISTS"] == 2
    remaining = fetches(ok(client, "FETCH 1:* UID"))
    assert sorted(v["UID"] for v in remaining.values()) == [uids[0], uids[2]]  # type: ignore[type-var]


def test_unselect_does_not_expunge(connect: Connector) -> None:
    connect.append([messages.plain()], flags="\\Deleted")
    client = connect.selected()
    response = ok(client, "UNSELECT")
    assert not response.numbers("EXPUNGE")
    assert client.command("FETCH 1 FLAGS").status in ("BAD", "NO")
    assert select_info(client.command("SELECT INBOX"))["EXISTS"] == 1


def apply_expunges(uids: list[int], response: Response) -> list[int]:
    """Replay ``* n EXPUNGE`` responses (each renumbers the ones after it) on a UID list."""
    remaining = list(uids)
    for seq in response.numbers("EXPUNGE"):
        assert 1 <= seq <= len(remaining), (seq, remaining)
        del remaining[seq - 1]
    return remaining


def test_expunge_sequence_numbers(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(6)])
    client = connect.selected()
    ok(client, "STORE 2,3,5 +FLAGS.SILENT (\\Deleted)")
    response = ok(client, "EXPUNGE")
    assert len(response.numbers("EXPUNGE")) == 3
    assert apply_expunges(uids, response) == [uids[0], uids[3], uids[5]]
    after = fetches(ok(client, "FETCH 1:* UID"))
    assert [after[i]["UID"] for i in sorted(after)] == [uids[0], uids[3], uids[5]]
    assert ok(client, "EXPUNGE").numbers("EXPUNGE") == []


def test_uid_expunge_only_named_messages(connect: Connector) -> None:
    uids = connect.append([messages.plain(subject=str(i)) for i in range(4)])
    client = connect.selected()
    ok(client, "STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    response = ok(client, f"UID EXPUNGE {uids[1]}:{uids[2]}")
    assert apply_expunges(uids, response) == [uids[0], uids[3]]
    status = ok(client, "NOOP")
    assert not status.numbers("EXPUNGE")
    assert len(fetches(ok(client, "FETCH 1:* FLAGS"))) == 2


def test_expunge_imaplib(connect: Connector) -> None:
    connect.append([messages.plain(), messages.plain()])
    conn = connect.imaplib()
    conn.select("INBOX")
    conn.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = conn.expunge()
    assert typ == "OK" and data == [b"1"]


def test_expunge_imapclient(connect: Connector) -> None:
    uids = connect.append([messages.plain(), messages.plain(), messages.plain()])
    cli = connect.imapclient()
    cli.select_folder("INBOX")
    cli.delete_messages([uids[0], uids[2]])
    cli.uid_expunge([uids[0]])
    assert cli.search("ALL") == [uids[1], uids[2]]
    cli.expunge()
    assert cli.search("ALL") == [uids[1]]


def test_imapclient_unselect_and_close(connect: Connector) -> None:
    connect.append([messages.plain()])
    cli: IMAPClient = connect.imapclient()
    cli.select_folder("INBOX")
    cli.unselect_folder()
    cli.select_folder("INBOX")
    cli.close_folder()
    assert cli.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1


def test_select_shows_what_other_sessions_just_did(connect: Connector) -> None:
    """What a store keeps of a mailbox for all its sessions (SQL: one status read per
    SELECT also answers its UID list, whether anything is left to claim, the first unseen)
    follows every other session's change: each SELECT shows the messages, the first unseen
    and the \\Recent ones as they are, and a new message is recent to one SELECT only."""
    watcher = connect.selected()  # keeps INBOX open meanwhile (and hears every change)
    actor = connect.raw()
    reader = connect.raw()
    uids: list[int] = []
    seen: set[int] = set()
    for i in range(10):
        if i % 3 != 2:
            text = messages.plain(subject=f"round {i}")
            uids.append(appenduid(actor.append_many("INBOX", [text])[0])[1])
        first = select_info(reader.command("SELECT INBOX"))
        again = select_info(actor.command("SELECT INBOX"))
        unseen = [n for n, uid in enumerate(uids, 1) if uid not in seen]
        for info in (first, again):
            assert info["EXISTS"] == len(uids), f"round {i}"
            assert info.get("UNSEEN") == (str(unseen[0]) if unseen else None), f"round {i}"
            assert int(str(info["UIDNEXT"])) == uids[-1] + 1, f"round {i}"
        assert first["RECENT"] == (1 if i % 3 != 2 else 0), f"round {i}: the new one, once"
        assert again["RECENT"] == 0, f"round {i}: claimed by the first SELECT"
        if i % 2:
            uid = uids[i // 3]
            sign = "-" if uid in seen else "+"
            ok(actor, f"UID STORE {uid} {sign}FLAGS.SILENT (\\Seen)")
            seen ^= {uid}
        ok(actor, "CLOSE")
    ok(watcher, "NOOP")
