"""UTF8=ACCEPT (RFC 6855): UTF-8 mailbox names after ENABLE (every backend stores them its
own way: maildir as modified UTF-7 on disk, sql in a column, the proxy upstream), APPEND
UTF8, SEARCH CHARSET refused, 8-bit ENVELOPE strings quoted; nothing changes before
ENABLE.  Raw sockets and imaplib."""

from __future__ import annotations

import pytest
from imapserver import Connector, ok

from bench import messages
from bench.harness import RawClient, Response, parse_values


def utf8(client: RawClient) -> RawClient:
    response = ok(client, "ENABLE UTF8=ACCEPT")
    assert response.data("ENABLED") == [b"UTF8=ACCEPT"]
    return client


def listed(response: Response) -> dict[bytes, set[str]]:
    """{name as sent: attributes} of the LIST (or LSUB) lines."""
    out = {}
    for data in response.data("LIST") + response.data("LSUB"):
        attrs, _, name, *_ = parse_values(data)[0]
        assert isinstance(attrs, list), data
        out[name if isinstance(name, bytes) else str(name).encode()] = {str(a) for a in attrs}
    return out


DRAFTS = "Entwürfe"
SHOPPING = "Покупки/Чек & Co"


def test_utf8_names_round_trip(connect: Connector) -> None:
    """CREATE, LIST, SELECT, STATUS, RENAME, COPY with UTF-8 names; a legacy session sees
    the same mailboxes in modified UTF-7."""
    client = utf8(connect.raw())
    assert ok(client, f'CREATE "{DRAFTS}"').ok
    names = listed(ok(client, 'LIST "" "*"'))
    assert DRAFTS.encode() in names, names
    select = ok(client, f'SELECT "{DRAFTS}"')
    assert select.numbers("EXISTS") == [0]
    status = ok(client, f'STATUS "{DRAFTS}" (MESSAGES)')
    assert status.data("STATUS") == [f'"{DRAFTS}" (MESSAGES 0)'.encode()]
    assert ok(client, f'RENAME "{DRAFTS}" "{SHOPPING}"').ok
    names = listed(ok(client, 'LIST "" "*"'))
    assert SHOPPING.encode() in names and DRAFTS.encode() not in names, names
    assert "Покупки".encode() in names  # the parent level, created or implied
    assert ok(client, f'SELECT "{SHOPPING}"').ok
    connect.append([messages.plain()])
    assert ok(client, 'SELECT "INBOX"').ok
    assert ok(client, f'COPY 1 "{SHOPPING}"').ok
    assert ok(client, f'STATUS "{SHOPPING}" (MESSAGES)').data("STATUS") == [
        f'"{SHOPPING}" (MESSAGES 1)'.encode()
    ]
    legacy = connect.raw()
    names = listed(ok(legacy, 'LIST "" "*"'))
    assert b"&BB8EPgQ6BEMEPwQ6BDg-/&BCcENQQ6- &- Co" in names, names
    assert ok(legacy, 'SELECT "&BB8EPgQ6BEMEPwQ6BDg-/&BCcENQQ6- &- Co"').numbers("EXISTS") == [1]


def test_imaplib_enable_utf8(connect: Connector) -> None:
    """imaplib's enable("UTF8=ACCEPT") switches it to UTF-8 commands: names go as UTF-8."""
    imap = connect.imaplib()
    assert imap.enable("UTF8=ACCEPT")[0] == "OK"
    assert imap.create('"Черновики"')[0] == "OK"
    typ, data = imap.list('""', '"Ч*"')
    assert typ == "OK" and data == ['(\\HasNoChildren) "/" "Черновики"'.encode()], data
    assert imap.select('"Черновики"')[0] == "OK"
    assert imap.rename('"Черновики"', '"Архив ☺"')[0] == "OK"
    assert imap.list('""', '"Архив*"')[1] == ['(\\HasNoChildren) "/" "Архив ☺"'.encode()]


@pytest.mark.one_backend  # the name codec is the engine's
def test_ampersand_and_mutf7_before_and_after_enable(raw: RawClient) -> None:
    """Before ENABLE ``&Jjo-`` is modified UTF-7 for ☺; after, it is five characters."""
    assert ok(raw, 'CREATE "&Jjo-"').ok
    assert listed(ok(raw, 'LIST "" "*"')).keys() >= {b"&Jjo-"}
    utf8(raw)
    names = listed(ok(raw, 'LIST "" "*"'))
    assert "☺".encode() in names and b"&Jjo-" not in names, names
    assert ok(raw, 'CREATE "&Jjo-"').ok  # a second mailbox: the name "&Jjo-" itself
    names = listed(ok(raw, 'LIST "" "*"'))
    assert {"☺".encode(), b"&Jjo-"} <= names.keys(), names
    bad = raw.command(b'CREATE "\xff\xfe"')
    assert bad.status == "NO" and b"UTF-8" in bad.text, bad.line
    assert raw.command(b'SELECT "\xc3"').status == "NO"
    for name in ("a\u0085b", "line\u2028sep"):  # RFC 6855 3: Net-Unicode, no C1 controls
        refused = raw.command(f'CREATE "{name}"')
        assert refused.status == "NO" and refused.code == "CANNOT", refused.line


@pytest.mark.one_backend
def test_search_charset_refused_after_enable(connect: Connector) -> None:
    """RFC 6855 3: SEARCH names no CHARSET, SORT and THREAD none but UTF-8 (BAD)."""
    connect.append([messages.plain(subject="Grüße", charset="utf-8")])
    client = connect.selected()
    assert client.command("SEARCH CHARSET UTF-8 ALL").ok
    utf8(client)
    refused = client.command("SEARCH CHARSET UTF-8 ALL")
    assert refused.status == "BAD" and b"CHARSET" in refused.text, refused.line
    assert client.command("UID SEARCH CHARSET US-ASCII ALL").status == "BAD"
    assert ok(client, 'SEARCH SUBJECT "Grüße"').data("SEARCH") == [b"1"]
    assert client.command("SORT (SUBJECT) US-ASCII ALL").status == "BAD"  # erratum 4029
    assert client.command("THREAD REFERENCES ISO-8859-1 ALL").status == "BAD"
    assert ok(client, "SORT (SUBJECT) UTF-8 ALL").data("SORT") == [b"1"]


_EIGHT_BIT = (
    "From: Jürgen <jürgen@example.org>\r\nTo: bob@example.net\r\n"
    "Subject: Grüße aus Köln\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "Message-ID: <8bit@example.org>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n"
).encode()


@pytest.mark.one_backend
def test_append_utf8_and_envelope(connect: Connector) -> None:
    """RFC 6855 4: ``UTF8 (literal8)`` only after ENABLE; the 8-bit subject goes out as a
    quoted UTF-8 string to the session that enabled it, as a literal to the others."""
    client = connect.raw()
    refused = client.command_with_literal("APPEND INBOX UTF8 (~", _EIGHT_BIT, b")")
    assert refused.status == "BAD" and b"ENABLE UTF8=ACCEPT" in refused.text, refused.line
    utf8(client)
    stored = client.command_with_literal("APPEND INBOX UTF8 (~", _EIGHT_BIT, b")")
    assert stored.ok and (stored.code or "").startswith("APPENDUID"), stored.line
    assert client.command("APPEND INBOX UTF8 ()").status == "BAD"
    assert ok(client, "SELECT INBOX").numbers("EXISTS") == [1]
    envelope = ok(client, "FETCH 1 ENVELOPE").untagged[0]
    assert '"Grüße aus Köln"'.encode() in envelope, envelope
    assert '(("Jürgen" NIL "jürgen" "example.org"))'.encode() in envelope, envelope
    legacy = connect.selected()
    envelope = ok(legacy, "FETCH 1 ENVELOPE").untagged[0]
    assert b'"Gr' not in envelope and b"{" in envelope, envelope


@pytest.mark.one_backend  # NOTIFY's names are the engine's
def test_notify_names_in_utf8_after_enable(connect: Connector) -> None:
    """NOTIFY's filter names, STATUS and name-event LIST lines are UTF-8 once enabled;
    a session that did not enable it is told the same change in modified UTF-7."""
    name, renamed = "Übersicht & Co", "Übersicht & Co 2"
    actor = utf8(connect.raw())
    ok(actor, f'CREATE "{name}"')
    watcher = utf8(connect.raw())
    initial = ok(
        watcher, f'NOTIFY SET STATUS (MAILBOXES "{name}" (MessageNew)) (PERSONAL (MailboxName))'
    )
    assert f'* STATUS "{name}" (MESSAGES 0 '.encode() in b"".join(initial.untagged)
    legacy = connect.raw()
    ok(legacy, "NOTIFY SET (PERSONAL (MailboxName))")
    ok(actor, f'RENAME "{name}" "{renamed}"')
    told = b"".join(ok(watcher, "NOOP").untagged)
    assert f'* LIST () "/" "{renamed}" ("OLDNAME" ("{name}"))\r\n'.encode() in told, told
    told = b"".join(ok(legacy, "NOOP").untagged)
    old, new = b'"&ANw-bersicht &- Co"', b'"&ANw-bersicht &- Co 2"'
    assert b'* LIST () "/" %s ("OLDNAME" (%s))\r\n' % (new, old) in told, told
