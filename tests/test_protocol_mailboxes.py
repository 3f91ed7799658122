"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE/LSUB, LIST (wildcards,
references, \\Noselect, CHILDREN), INBOX naming, modified UTF-7 names, STATUS
(RFC 3501 6.3.3-6.3.10, 5.1; RFC 3348)."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient, imap_utf7
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, flag_set, parse_values


def listing(response: Response, kind: str = "LIST") -> dict[str, set[str]]:
    """{name: attributes (upper case)} of the LIST/LSUB responses; checks the delimiter."""
    assert response.ok, response.line
    out: dict[str, set[str]] = {}
    for data in response.data(kind):
        values, _ = parse_values(data)
        assert len(values) == 3, data
        attrs, delimiter, name = values
        assert isinstance(attrs, list)
        assert delimiter in (b"/", None), data
        if isinstance(name, bytes):
            text = name.decode("ascii")
        else:
            text = str(name)
        assert text not in out, f"{text} listed twice"
        out[text] = {str(a).upper() for a in attrs}
    return out


def names(response: Response, kind: str = "LIST") -> set[str]:
    return set(listing(response, kind))


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


# -- LIST ----------------------------------------------------------------------------------


def test_list_empty_pattern_returns_delimiter(raw: RawClient) -> None:
    response = ok(raw, 'LIST "" ""')
    lines = response.data("LIST")
    assert len(lines) == 1
    values, _ = parse_values(lines[0])
    assert "\\NOSELECT" in flag_set(values[0])
    assert values[1] == b"/"
    assert values[2] in (b"", "")


def test_new_account_has_inbox(raw: RawClient) -> None:
    entries = listing(ok(raw, 'LIST "" *'))
    assert "INBOX" in entries
    assert "\\NOSELECT" not in entries["INBOX"]


def test_list_wildcards(raw: RawClient) -> None:
    for name in ("Work", "Work/2021", "Work/2021/Q1", "Private", "Private/Taxes"):
        ok(raw, f"CREATE {name}")
    assert names(ok(raw, 'LIST "" *')) == {
        "INBOX",
        "Work",
        "Work/2021",
        "Work/2021/Q1",
        "Private",
        "Private/Taxes",
    }
    assert names(ok(raw, 'LIST "" %')) == {"INBOX", "Work", "Private"}
    assert names(ok(raw, 'LIST "" Work/%')) == {"Work/2021"}
    assert names(ok(raw, 'LIST "" Work/*')) == {"Work/2021", "Work/2021/Q1"}
    assert names(ok(raw, 'LIST "" %/%')) == {"Work/2021", "Private/Taxes"}
    assert names(ok(raw, 'LIST "" *2021*')) == {"Work/2021", "Work/2021/Q1"}
    assert names(ok(raw, 'LIST "" P*')) == {"Private", "Private/Taxes"}
    assert names(ok(raw, 'LIST "" NoSuch*')) == set()


def test_list_with_reference(raw: RawClient) -> None:
    for name in ("Work", "Work/2021", "Work/2021/Q1"):
        ok(raw, f"CREATE {name}")
    assert names(ok(raw, "LIST Work/ %")) == {"Work/2021"}
    assert names(ok(raw, "LIST Work/ *")) == {"Work/2021", "Work/2021/Q1"}


def test_list_children_attributes(raw: RawClient) -> None:
    ok(raw, "CREATE Parent/Child")
    ok(raw, "CREATE Lonely")
    entries = listing(ok(raw, 'LIST "" *'))
    assert "\\HASCHILDREN" in entries["Parent"]
    assert "\\HASNOCHILDREN" not in entries["Parent"]
    assert "\\HASNOCHILDREN" in entries["Parent/Child"]
    assert "\\HASNOCHILDREN" in entries["Lonely"]
    # With %, Parent's children are not listed but it still has them.
    entries = listing(ok(raw, 'LIST "" %'))
    assert "\\HASCHILDREN" in entries["Parent"]


def test_list_imapclient(client: IMAPClient) -> None:
    client.create_folder("Archive/2020")
    folders = {name: flags for flags, delim, name in client.list_folders()}
    assert "Archive/2020" in folders and "INBOX" in folders
    assert all(delim == b"/" for _f, delim, _n in client.list_folders())


def test_list_imaplib(connect: Connector) -> None:
    conn = connect.imaplib()
    assert conn.create("Lists/A")[0] == "OK"
    typ, data = conn.list('""', "Lists/*")
    assert typ == "OK"
    assert len(data) == 1 and data[0] is not None
    assert b"Lists/A" in data[0]


def test_list_missing_arguments_is_bad(raw: RawClient) -> None:
    assert raw.command("LIST").status == "BAD"
    assert raw.command('LIST ""').status == "BAD"


# -- INBOX ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["inbox", "Inbox", "iNbOx"])
def test_inbox_is_case_insensitive(raw: RawClient, spelling: str) -> None:
    entries = listing(ok(raw, f'LIST "" {spelling}'))
    assert set(entries) == {"INBOX"}
    assert ok(raw, f"SELECT {spelling}").ok
    assert ok(raw, f"STATUS {spelling} (MESSAGES)").ok
    assert raw.command(f"CREATE {spelling}").status == "NO"


def test_inbox_children_with_mixed_case(raw: RawClient) -> None:
    ok(raw, "CREATE INBOX/Sub")
    assert "INBOX/Sub" in names(ok(raw, 'LIST "" *'))
    assert ok(raw, "SELECT INBOX/Sub").ok


def test_append_to_inbox_any_case(connect: Connector) -> None:
    client = connect.raw()
    response = client.command_with_literal("APPEND inbox ", messages.plain())
    assert response.ok, response.line
    status = ok(client, "STATUS INBOX (MESSAGES)")
    assert b"MESSAGES 1" in status.data("STATUS")[0]


# -- CREATE --------------------------------------------------------------------------------


def test_create_makes_intermediate_levels(raw: RawClient) -> None:
    ok(raw, "CREATE a/b/c")
    entries = listing(ok(raw, 'LIST "" *'))
    assert {"a", "a/b", "a/b/c"} <= set(entries)
    assert "\\NOSELECT" not in entries["a/b/c"]
    ok(raw, "SELECT a/b/c")


def test_create_existing_is_no(raw: RawClient) -> None:
    ok(raw, "CREATE Dup")
    assert raw.command("CREATE Dup").status == "NO"
    assert raw.command("CREATE INBOX").status == "NO"


def test_create_with_trailing_delimiter(raw: RawClient) -> None:
    ok(raw, "CREATE Folder/")
    assert "Folder" in names(ok(raw, 'LIST "" *'))
    assert "Folder/" not in names(ok(raw, 'LIST "" *'))


def test_create_quoted_name_with_space(raw: RawClient) -> None:
    ok(raw, 'CREATE "My Folder"')
    assert "My Folder" in names(ok(raw, 'LIST "" *'))
    ok(raw, 'SELECT "My Folder"')


def test_create_missing_argument_is_bad(raw: RawClient) -> None:
    assert raw.command("CREATE").status == "BAD"


def test_created_mailbox_is_empty_and_selectable(connect: Connector) -> None:
    cli = connect.imapclient()
    cli.create_folder("Projects")
    info = cli.select_folder("Projects")
    assert info[b"EXISTS"] == 0
    assert cli.folder_exists("Projects")
    assert not cli.folder_exists("Nope")


# -- DELETE --------------------------------------------------------------------------------


def test_delete_plain_mailbox(raw: RawClient) -> None:
    ok(raw, "CREATE Trash2")
    ok(raw, "DELETE Trash2")
    assert "Trash2" not in names(ok(raw, 'LIST "" *'))
    assert raw.command("SELECT Trash2").status == "NO"


def test_delete_inbox_and_missing_are_no(raw: RawClient) -> None:
    assert raw.command("DELETE INBOX").status == "NO"
    assert raw.command("DELETE NoSuchMailbox").status == "NO"


def test_delete_with_inferiors_leaves_noselect(connect: Connector) -> None:
    # RFC 3501 6.3.4: deleting "foo" with "foo/bar" keeps the name as \Noselect.
    client = connect.raw()
    ok(client, "CREATE foo/bar")
    connect.append([messages.plain()], mailbox="foo")
    ok(client, "DELETE foo")
    entries = listing(ok(client, 'LIST "" *'))
    assert "\\NOSELECT" in entries["foo"]
    assert "foo/bar" in entries
    assert client.command("SELECT foo").status == "NO"
    # A \Noselect name with inferiors cannot be deleted (RFC 9051 7.1: [HASCHILDREN]).
    refused = client.command("DELETE foo")
    assert refused.status == "NO" and refused.code == "HASCHILDREN", refused.line
    ok(client, "DELETE foo/bar")
    if "foo" in names(ok(client, 'LIST "" *')):
        ok(client, "DELETE foo")  # a leftover \\Noselect name without inferiors can go
    assert not {"foo", "foo/bar"} & names(ok(client, 'LIST "" *'))


def test_delete_does_not_remove_inferiors(raw: RawClient) -> None:
    ok(raw, "CREATE top/sub")
    ok(raw, "DELETE top")
    assert "top/sub" in names(ok(raw, 'LIST "" *'))
    ok(raw, "SELECT top/sub")


def test_delete_then_recreate_is_empty_with_new_uids(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE Again")
    connect.append([messages.plain()], mailbox="Again")
    before = ok(client, "STATUS Again (UIDVALIDITY UIDNEXT MESSAGES)").data("STATUS")[0]
    ok(client, "DELETE Again")
    ok(client, "CREATE Again")
    after = ok(client, "STATUS Again (UIDVALIDITY UIDNEXT MESSAGES)").data("STATUS")[0]
    old = status_items(before)
    new = status_items(after)
    assert new["MESSAGES"] == 0
    # Either the UIDVALIDITY changes or UIDs are not reused (RFC 3501 2.3.1.1).
    assert new["UIDVALIDITY"] != old["UIDVALIDITY"] or new["UIDNEXT"] >= old["UIDNEXT"]


# -- RENAME --------------------------------------------------------------------------------


def test_rename_with_inferiors(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE old/child")
    connect.append([messages.plain(), messages.plain(subject="two")], mailbox="old")
    ok(client, "RENAME old new")
    entries = names(ok(client, 'LIST "" *'))
    assert {"new", "new/child"} <= entries
    assert not {"old", "old/child"} & entries
    status = status_items(ok(client, "STATUS new (MESSAGES)").data("STATUS")[0])
    assert status["MESSAGES"] == 2


def test_rename_creates_missing_superiors(raw: RawClient) -> None:
    ok(raw, "CREATE src")
    ok(raw, "RENAME src deep/er/dst")
    entries = names(ok(raw, 'LIST "" *'))
    assert {"deep", "deep/er", "deep/er/dst"} <= entries
    assert "src" not in entries


def test_rename_errors(raw: RawClient) -> None:
    ok(raw, "CREATE one")
    ok(raw, "CREATE two")
    assert raw.command("RENAME one two").status == "NO"
    assert raw.command("RENAME missing three").status == "NO"
    assert raw.command("RENAME one").status == "BAD"
    assert {"one", "two"} <= names(ok(raw, 'LIST "" *'))


def test_rename_inbox_moves_messages_and_keeps_inbox(connect: Connector) -> None:
    client = connect.raw()
    connect.append([messages.plain(), messages.plain(subject="b")])
    ok(client, "CREATE INBOX/kid")
    ok(client, "RENAME INBOX Old-Inbox")
    entries = names(ok(client, 'LIST "" *'))
    assert "INBOX" in entries and "Old-Inbox" in entries
    # Inferiors of INBOX are not renamed (RFC 3501 6.3.5).
    assert "INBOX/kid" in entries
    assert status_items(ok(client, "STATUS INBOX (MESSAGES)").data("STATUS")[0])["MESSAGES"] == 0
    moved = status_items(ok(client, "STATUS Old-Inbox (MESSAGES)").data("STATUS")[0])
    assert moved["MESSAGES"] == 2


def test_rename_imapclient(client: IMAPClient) -> None:
    client.create_folder("Before")
    client.rename_folder("Before", "After")
    assert client.folder_exists("After") and not client.folder_exists("Before")


# -- SUBSCRIBE / UNSUBSCRIBE / LSUB --------------------------------------------------------


def test_subscribe_and_lsub(raw: RawClient) -> None:
    ok(raw, "CREATE News")
    ok(raw, "CREATE News/Tech")
    ok(raw, "SUBSCRIBE News/Tech")
    ok(raw, "SUBSCRIBE INBOX")
    assert names(ok(raw, 'LSUB "" *'), "LSUB") == {"INBOX", "News/Tech"}
    ok(raw, "UNSUBSCRIBE News/Tech")
    assert names(ok(raw, 'LSUB "" *'), "LSUB") == {"INBOX"}


def test_lsub_percent_shows_unsubscribed_parent_as_noselect(raw: RawClient) -> None:
    # RFC 3501 6.3.9: "foo/bar" subscribed, "foo" not: LSUB "" % returns foo \Noselect.
    ok(raw, "CREATE foo/bar")
    ok(raw, "SUBSCRIBE foo/bar")
    entries = listing(ok(raw, 'LSUB "" %'), "LSUB")
    assert set(entries) == {"foo"}
    assert "\\NOSELECT" in entries["foo"]


def test_subscription_survives_delete(raw: RawClient) -> None:
    ok(raw, "CREATE Ephemeral")
    ok(raw, "SUBSCRIBE Ephemeral")
    ok(raw, "DELETE Ephemeral")
    assert "Ephemeral" in names(ok(raw, 'LSUB "" *'), "LSUB")


def test_subscriptions_imaplib(connect: Connector) -> None:
    conn = connect.imaplib()
    conn.create("Sub1")
    assert conn.subscribe("Sub1")[0] == "OK"
    typ, data = conn.lsub('""', "*")
    assert typ == "OK" and any(d and b"Sub1" in d for d in data)
    assert conn.unsubscribe("Sub1")[0] == "OK"
    typ, data = conn.lsub('""', "*")
    assert not any(d and b"Sub1" in d for d in data)


def test_subscriptions_imapclient(client: IMAPClient) -> None:
    client.create_folder("Sub2")
    client.subscribe_folder("Sub2")
    assert "Sub2" in [name for _f, _d, name in client.list_sub_folders()]


# -- modified UTF-7 ------------------------------------------------------------------------

INTERNATIONAL = ["R\u00e9unions", "\u65e5\u672c\u8a9e/\u30e1\u30fc\u30eb", "Caf\u00e9 & Bar", "&"]


@pytest.mark.parametrize("name", INTERNATIONAL)
def test_modified_utf7_round_trip_raw(raw: RawClient, name: str) -> None:
    encoded = imap_utf7.encode(name).decode("ascii")
    assert encoded.isascii()
    ok(raw, f'CREATE "{encoded}"')
    listed = names(ok(raw, 'LIST "" *'))
    assert encoded in listed, (encoded, listed)
    ok(raw, f'SELECT "{encoded}"')
    ok(raw, f'STATUS "{encoded}" (MESSAGES)')


def test_modified_utf7_known_encoding(raw: RawClient) -> None:
    # RFC 3501 5.1.3 example: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is 台北/日本語.
    ok(raw, 'CREATE "&U,BTFw-/&ZeVnLIqe-"')
    listed = names(ok(raw, 'LIST "" *'))
    assert {"&U,BTFw-", "&U,BTFw-/&ZeVnLIqe-"} <= listed


def test_modified_utf7_round_trip_imapclient(client: IMAPClient) -> None:
    for name in INTERNATIONAL[:3]:
        client.create_folder(name)
    listed = {n for _f, _d, n in client.list_folders()}
    for name in INTERNATIONAL[:3]:
        assert name in listed
    client.select_folder("R\u00e9unions")
    client.rename_folder("R\u00e9unions", "\u00c9t\u00e9")
    assert client.folder_exists("\u00c9t\u00e9")


# -- STATUS --------------------------------------------------------------------------------


def status_items(data: bytes) -> dict[str, int]:
    values, _ = parse_values(data)
    assert len(values) == 2 and isinstance(values[1], list), data
    items = values[1]
    out = {}
    for key, value in zip(items[::2], items[1::2], strict=True):
        assert isinstance(value, int), data
        out[str(key).upper()] = value
    return out


def test_status_all_items(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE Stat")
    uids = connect.append(
        [messages.plain(), messages.plain(subject="2"), messages.plain(subject="3")], "Stat"
    )
    sel = connect.raw()
    ok(sel, "SELECT Stat")
    ok(sel, f"UID STORE {uids[0]} +FLAGS (\\Seen)")
    ok(sel, "UNSELECT")
    response = ok(client, "STATUS Stat (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    lines = response.data("STATUS")
    assert len(lines) == 1
    values, _ = parse_values(lines[0])
    assert values[0] in ("Stat", b"Stat")
    items = status_items(lines[0])
    assert set(items) == {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN"}
    assert items["MESSAGES"] == 3
    assert items["UNSEEN"] == 2
    assert items["UIDNEXT"] > max(uids)
    assert items["UIDVALIDITY"] > 0
    assert 0 <= items["RECENT"] <= 3


def test_status_uidvalidity_matches_select(connect: Connector) -> None:
    client = connect.raw()
    items = status_items(ok(client, "STATUS INBOX (UIDVALIDITY UIDNEXT)").data("STATUS")[0])
    select = ok(client, "SELECT INBOX")
    assert f"UIDVALIDITY {items['UIDVALIDITY']}" in select.codes()
    assert f"UIDNEXT {items['UIDNEXT']}" in select.codes()


def test_status_errors(raw: RawClient) -> None:
    assert raw.command("STATUS NoSuch (MESSAGES)").status == "NO"
    assert raw.command("STATUS INBOX (BOGUS)").status == "BAD"
    assert raw.command("STATUS INBOX").status == "BAD"


def test_status_imapclient(connect: Connector) -> None:
    connect.append([messages.plain()])
    cli = connect.imapclient()
    status = cli.folder_status("INBOX", ["MESSAGES", "UNSEEN", "UIDNEXT"])
    assert status[b"MESSAGES"] == 1 and status[b"UNSEEN"] == 1


# A valid astring, not valid modified UTF-7: "&'+,-" opens a base64 run with "'" in it.
UNDECODABLE = "!#$&'+,-.0123456789:;<=>?@^_`|[}"


def test_undecodable_names_answer_no_not_bad(raw: RawClient) -> None:
    """Such a name names no mailbox: SELECT/EXAMINE/STATUS/DELETE/APPEND/COPY answer NO
    (a strict client takes BAD as a broken session), LIST/LSUB OK with no match."""
    quoted = '"' + UNDECODABLE + '"'
    for command in (
        f"SELECT {quoted}",
        f"EXAMINE {quoted}",
        f"STATUS {quoted} (MESSAGES)",
        f"DELETE {quoted}",
        f"SUBSCRIBE {quoted}",
        f"RENAME {quoted} Elsewhere",
    ):
        response = raw.command(command)
        assert response.status == "NO", (command, response.line)
        assert response.code == "NONEXISTENT", (command, response.line)
    for command in (f"CREATE {quoted}", f"RENAME INBOX {quoted}"):
        response = raw.command(command)
        assert response.status == "NO", (command, response.line)
        assert response.code == "CANNOT", (command, response.line)
    for kind in ("LIST", "LSUB"):
        for command in (f'{kind} "" {quoted}', f'{kind} {quoted} "*"'):
            response = raw.command(command)
            assert response.ok, (command, response.line)
            assert response.data(kind) == [], (command, response.untagged)
    append = raw.command(f"APPEND {quoted} {{7+}}\r\nX: y\r\n\r\n")
    assert append.status == "NO" and append.code == "NONEXISTENT", append.line
    ok(raw, "SELECT INBOX")
    ok(raw, "APPEND INBOX {7+}\r\nX: y\r\n\r\n")
    for command in (f"COPY 1 {quoted}", f"MOVE 1 {quoted}"):
        response = raw.command(command)
        assert response.status == "NO", (command, response.line)
    assert raw.command("NOOP").ok  # the session goes on
    assert names(ok(raw, 'LIST "" *')) == {"INBOX"}
