"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: what a session sees before and after ENABLE
IMAP4rev2 (no RECENT, ESEARCH answers, SELECT's LIST and no [UNSEEN], [CLOSED], UTF-8
names, STATUS RECENT refused, LSUB still served).  The engine does all of it whatever the
backend: one backend, but for UTF-8 names (stored by each backend its own way)."""

from __future__ import annotations

import unicodedata

import pytest
from imapserver import Connector, ok

from bench import messages
from bench.harness import RawClient, Response, fetches, flag_set
from mailserv.syntax import utf7


def rev2(client: RawClient) -> RawClient:
    assert ok(client, "ENABLE IMAP4rev2").data("ENABLED") == [b"IMAP4REV2"]
    return client


def esearch(response: Response) -> str:
    """The ESEARCH line after its ``(TAG "...")``; there must be no SEARCH line."""
    assert response.ok, response.line
    assert not response.data("SEARCH"), response.untagged
    (line,) = response.data("ESEARCH")
    prefix = f'(TAG "{response.tag.decode()}")'
    assert line.decode().startswith(prefix), line
    return line.decode()[len(prefix) :].strip()


@pytest.fixture
def four(connect: Connector) -> Connector:
    """Four messages, 2 and 4 flagged, 1 and 3 seen: all \\Recent for the first SELECT."""
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 5)])
    client = connect.raw()
    assert ok(client, "EXAMINE INBOX").numbers("RECENT") == [4]
    client.command("LOGOUT")
    return connect


@pytest.mark.one_backend
def test_capabilities_name_both(raw: RawClient) -> None:
    words = ok(raw, "CAPABILITY").data("CAPABILITY")[0].split()
    assert words[:2] == [b"IMAP4rev1", b"IMAP4rev2"], words


@pytest.mark.one_backend
def test_select_before_and_after_enable(four: Connector) -> None:
    """RFC 3501's SELECT (RECENT, [UNSEEN n]) until ENABLE; then RFC 9051's: FLAGS, EXISTS,
    LIST, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY, no RECENT and no [UNSEEN]."""
    legacy = four.raw()
    before = ok(legacy, "EXAMINE INBOX")
    assert before.numbers("RECENT") == [4] and "UNSEEN 1" in before.codes(), before.untagged
    assert not before.data("LIST")
    client = rev2(four.raw())
    after = ok(client, "SELECT INBOX")
    assert not after.data("RECENT"), after.untagged
    assert not [c for c in after.codes() if c.startswith("UNSEEN")], after.codes()
    assert after.data("LIST") == [b'(\\HasNoChildren) "/" INBOX'], after.untagged
    assert after.numbers("EXISTS") == [4]
    assert after.data("FLAGS") and after.code == "READ-WRITE"
    kinds = {c.split()[0] for c in after.codes()}
    assert {"PERMANENTFLAGS", "UIDNEXT", "UIDVALIDITY"} <= kinds, after.codes()


@pytest.mark.one_backend
def test_no_recent_anywhere_after_enable(four: Connector) -> None:
    """FETCH FLAGS without \\Recent, new mail told by EXISTS alone (RFC 9051 Appendix E);
    SEARCH RECENT still runs (the session still has its recent messages)."""
    client = rev2(four.raw())
    ok(client, "SELECT INBOX")
    flags = {n: flag_set(f["FLAGS"]) for n, f in fetches(ok(client, "FETCH 1:4 FLAGS")).items()}
    assert flags == {1: set(), 2: set(), 3: set(), 4: set()}, flags
    four.append([messages.plain(subject="m5")])
    noop = ok(client, "NOOP")
    assert noop.numbers("EXISTS") == [5] and not noop.data("RECENT"), noop.untagged
    assert esearch(ok(client, "SEARCH RECENT")) == "ALL 1:5"
    legacy = four.raw()
    assert ok(legacy, "SELECT INBOX").numbers("RECENT") == [0]  # the rev2 session has them


@pytest.mark.one_backend
def test_status_recent_refused_deleted_counted(four: Connector) -> None:
    """RFC 9051 6.3.11: no RECENT, and DELETED (the messages with \\Deleted) instead
    (QUOTA's item, RFC 9208: offered before ENABLE too)."""
    client = four.raw()
    assert ok(client, "STATUS INBOX (RECENT)").data("STATUS") == [b"INBOX (RECENT 4)"]
    assert ok(client, "STATUS INBOX (DELETED)").data("STATUS") == [b"INBOX (DELETED 0)"]
    ok(client, "SELECT INBOX")
    ok(client, "STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    ok(client, "UNSELECT")
    rev2(client)
    assert ok(client, "STATUS INBOX (DELETED MESSAGES)").data("STATUS") == [
        b"INBOX (DELETED 2 MESSAGES 4)"
    ]
    listed = ok(client, 'LIST "" INBOX RETURN (STATUS (DELETED))')
    assert listed.data("STATUS") == [b"INBOX (DELETED 2)"], listed.untagged
    for command in ("STATUS INBOX (MESSAGES RECENT)", 'LIST "" INBOX RETURN (STATUS (RECENT))'):
        refused = client.command(command)
        assert refused.status == "BAD" and b"RECENT" in refused.text, refused.line
    status = ok(client, "STATUS INBOX (MESSAGES UNSEEN SIZE)").data("STATUS")[0]
    assert status.startswith(b"INBOX (MESSAGES 4 UNSEEN 4 SIZE "), status


@pytest.mark.one_backend
def test_search_answers_esearch(four: Connector) -> None:
    """RFC 9051 6.4.4: SEARCH without RETURN is answered as RETURN (ALL); no match, no
    ALL; UID SEARCH says UID; RETURN as before."""
    client = four.raw()
    ok(client, "SELECT INBOX")
    ok(client, "STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    ok(client, "STORE 1,3 +FLAGS.SILENT (\\Seen)")
    assert ok(client, "SEARCH FLAGGED").data("SEARCH") == [b"2 4"]
    rev2(client)
    assert esearch(ok(client, "SEARCH FLAGGED")) == "ALL 2,4"
    assert esearch(ok(client, "SEARCH UNSEEN")) == "ALL 2,4"
    assert esearch(ok(client, "SEARCH KEYWORD nothing")) == ""
    assert esearch(ok(client, "UID SEARCH ALL")) == "UID ALL 1:4"
    assert esearch(ok(client, "UID SEARCH DELETED")) == "UID"
    example = ok(client, 'SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert esearch(example) == "MIN 2 COUNT 2"
    assert esearch(ok(client, "SEARCH CHARSET UTF-8 FLAGGED")) == "ALL 2,4"


@pytest.mark.one_backend
def test_closed_when_selecting_again(four: Connector) -> None:
    """RFC 9051 7.1: [CLOSED] once a mailbox was selected before; none on the first."""
    legacy = four.raw()
    ok(legacy, "SELECT INBOX")
    assert "CLOSED" not in ok(legacy, "EXAMINE INBOX").codes()
    client = rev2(four.raw())
    assert "CLOSED" not in ok(client, "SELECT INBOX").codes()
    again = ok(client, "EXAMINE INBOX")
    assert again.codes()[0] == "CLOSED" and again.untagged[0].startswith(b"* OK [CLOSED]")
    failed = client.command("SELECT Nowhere")
    assert failed.status == "NO" and failed.codes()[0] == "CLOSED", failed.untagged


@pytest.mark.one_backend
def test_list_defaults_and_lsub(raw: RawClient) -> None:
    """After ENABLE: LIST gives children and special-use attributes unasked, LSUB is still
    served, names go as UTF-8."""
    ok(raw, "CREATE Sent (USE (\\Sent))")
    ok(raw, 'CREATE "Ünter/Ort"')
    ok(raw, 'SUBSCRIBE "Ünter/Ort"')
    assert ok(raw, 'LSUB "" "*"').data("LSUB") == [b'() "/" &ANw-nter/Ort']
    rev2(raw)
    lines = ok(raw, 'LIST "" "*"').data("LIST")
    assert b'(\\HasNoChildren \\Sent) "/" Sent' in lines, lines
    assert '(\\HasChildren) "/" "Ünter"'.encode() in lines, lines
    assert '(\\HasNoChildren) "/" "Ünter/Ort"'.encode() in lines, lines
    assert ok(raw, 'LSUB "" "*"').data("LSUB") == ['() "/" "Ünter/Ort"'.encode()]
    assert ok(raw, 'SELECT "Ünter/Ort"').data("LIST") == [
        '(\\HasNoChildren) "/" "Ünter/Ort"'.encode()
    ]


def test_utf8_names_every_backend(connect: Connector) -> None:
    """CREATE, LIST, SELECT, RENAME of a UTF-8 name after ENABLE IMAP4rev2; STATUS
    DELETED."""
    client = rev2(connect.raw())
    ok(client, 'CREATE "Ορίζοντας & Co"')
    assert ok(client, 'SELECT "Ορίζοντας & Co"').data("LIST") == [
        '(\\HasNoChildren) "/" "Ορίζοντας & Co"'.encode()
    ]
    ok(client, 'RENAME "Ορίζοντας & Co" "日本/語"')
    lines = ok(client, 'LIST "" "*"').data("LIST")
    assert '(\\HasNoChildren) "/" "日本/語"'.encode() in lines, lines
    connect.append([messages.plain(subject=f"m{n}") for n in range(3)], "日本/語")
    ok(client, 'SELECT "日本/語"')
    ok(client, "STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    assert ok(client, 'STATUS "日本/語" (MESSAGES DELETED)').data("STATUS") == [
        '"日本/語" (MESSAGES 3 DELETED 2)'.encode()  # each backend's flag search
    ]


NFD = unicodedata.normalize("NFD", "Übung/Körbe")
NFC = unicodedata.normalize("NFC", NFD)


@pytest.mark.one_backend
def test_names_taken_in_nfc_with_oldname(raw: RawClient) -> None:
    """RFC 9051 5.1: names are Net-Unicode (NFC).  A decomposed name is taken in its NFC
    form by CREATE, SELECT, RENAME and DELETE, each answering ``* LIST`` of the NFC name
    with ``("OLDNAME" (as sent))``; a name sent in NFC gets no such line."""
    rev2(raw)
    created = ok(raw, f'CREATE "{NFD}"')
    assert created.data("LIST") == [f'(\\HasNoChildren) "/" "{NFC}" ("OLDNAME" ("{NFD}"))'.encode()]
    assert f'(\\HasNoChildren) "/" "{NFC}"'.encode() in ok(raw, 'LIST "" "*"').data("LIST")
    selected = ok(raw, f'EXAMINE "{NFD}"')
    assert selected.data("LIST") == created.data("LIST"), selected.untagged
    assert not ok(raw, f'SELECT "{NFC}"').data("LIST")[0].endswith(b"))")
    assert ok(raw, f'STATUS "{NFD}" (MESSAGES)').data("STATUS") == [
        f'"{NFC}" (MESSAGES 0)'.encode()
    ]
    renamed = ok(raw, f'RENAME "{NFC}" "{NFD}2"')
    assert renamed.data("LIST") == [
        f'(\\HasNoChildren) "/" "{NFC}2" ("OLDNAME" ("{NFD}2"))'.encode()
    ], renamed.untagged
    deleted = ok(raw, f'DELETE "{NFD}2"')
    assert deleted.data("LIST") == [f'(\\NonExistent) "/" "{NFC}2" ("OLDNAME" ("{NFD}2"))'.encode()]
    assert ok(raw, f'CREATE "{NFC}"').data("LIST") == []


@pytest.mark.one_backend
def test_rev1_names_as_sent(raw: RawClient) -> None:
    """A client that never enabled UTF-8 names gets them as before: no normalisation."""
    ok(raw, f'CREATE "{NFD}"')
    names = ok(raw, 'LIST "" "*"').data("LIST")
    assert any(utf7.encode(NFD) in line for line in names), names
    assert raw.command(f'SELECT "{NFC}"').status == "NO"


EIGHT_BIT = (
    "From: Jörg <j@example.org>\r\nTo: b@example.net\r\nSubject: Grüße\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
    "--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Description: Bücher\r\n\r\n"
    'hi\r\n--zz\r\nContent-Type: application/pdf; name="Übung.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--zz--\r\n"
).encode()


@pytest.mark.one_backend
def test_8bit_headers_as_utf8_strings(connect: Connector) -> None:
    """RFC 9051 4.3: ENVELOPE, BODY and BODYSTRUCTURE give 8-bit header values as UTF-8
    strings (quoted); a raw Latin-1 value is sent in UTF-8, not as octets no UTF-8 client
    can read.  Before ENABLE: the literals RFC 3501 has."""
    latin = b"From: a@example.org\r\nSubject: caf\xe9 cr\xe8me\r\n\r\nx\r\n"
    connect.append([EIGHT_BIT, latin])
    client = connect.raw()
    ok(client, "EXAMINE INBOX")
    before = ok(client, "FETCH 1:2 (ENVELOPE BODYSTRUCTURE)").untagged
    assert "{7}\r\nGrüße".encode() in before[0] and b"{10}\r\ncaf\xe9 cr\xe8me" in before[1]
    rev2(client)
    ok(client, "EXAMINE INBOX")
    first, second = ok(client, "FETCH 1:2 (ENVELOPE BODYSTRUCTURE BODY)").untagged
    assert b"{" not in first + second, (first, second)
    for text in ('"Grüße"', '(("Jörg" NIL "j" "example.org"))', '"Bücher"', '"Übung.pdf"'):
        assert text.encode() in first, first
    assert first.count('"Übung.pdf"'.encode()) == 2, first  # BODYSTRUCTURE and BODY
    assert '"café crème"'.encode() in second, second
