"""CATENATE (RFC 4469): APPEND of TEXT literals and URLs of stored messages and parts, on
every backend (the URLs are read from it); the refusals."""

from __future__ import annotations

import pytest
from imapserver import Connector, appenduid

from bench import messages
from bench.harness import RawClient, Response, ServerProcess, fetches
from mailserv.imap.imapurl import BadUrl, parse

ATTACHED = messages.with_attachment(b"%PDF-1.4 the attachment\r\n" * 20)


def lit(data: bytes) -> bytes:
    """A LITERAL+ literal (sent without waiting for a continuation)."""
    return b"{%d+}\r\n%s" % (len(data), data)


def catenate(client: RawClient, parts: bytes, mailbox: str = "INBOX") -> Response:
    return client.command(b"APPEND " + mailbox.encode() + b" CATENATE (" + parts + b")")


def body(client: RawClient, uid: int) -> bytes:
    (items,) = fetches(client.command(f"UID FETCH {uid} BODY.PEEK[]")).values()
    value = items["BODY[]"]
    assert isinstance(value, bytes)
    return value


@pytest.fixture
def stored(connect: Connector) -> tuple[RawClient, int, int]:
    """A selected session, the UIDVALIDITY and the UID of a message with an attachment."""
    (uid,) = connect.append([ATTACHED])
    client = connect.selected()
    validity = int(client.command("STATUS INBOX (UIDVALIDITY)").data("STATUS")[0].split()[-1][:-1])
    return client, validity, uid


def test_forward_an_attachment_without_downloading_it(stored: tuple[RawClient, int, int]) -> None:
    client, validity, uid = stored
    head = b"From: me@example.org\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
    head += b'Content-Type: multipart/mixed; boundary="fwd"\r\n\r\n--fwd\r\n'
    url = f'"/INBOX;UIDVALIDITY={validity}/;UID={uid}/;SECTION=2.MIME"'.encode()
    part = f'"/INBOX;UIDVALIDITY={validity}/;UID={uid}/;SECTION=2"'.encode()
    tail = b"\r\n--fwd--\r\n"
    response = catenate(
        client, b"TEXT " + lit(head) + b" URL " + url + b" URL " + part + b" TEXT " + lit(tail)
    )
    assert response.ok, response.line
    new = appenduid(response)[1]
    original = body(client, uid)
    sections = fetches(client.command(f"UID FETCH {uid} (BODY.PEEK[2.MIME] BODY.PEEK[2])"))
    (items,) = sections.values()
    assert body(client, new) == head + items["BODY[2.MIME]"] + items["BODY[2]"] + tail
    assert items["BODY[2]"] and items["BODY[2]"] in original
    (fetched,) = fetches(client.command(f"UID FETCH {uid} FLAGS")).values()
    assert "\\Seen" not in str(fetched["FLAGS"])  # reading a URL does not set \Seen


def test_url_forms(stored: tuple[RawClient, int, int], connect: Connector) -> None:
    client, validity, uid = stored
    original = body(client, uid)
    whole = catenate(client, f'URL "/INBOX/;UID={uid}"'.encode())
    assert whole.ok, whole.line
    assert body(client, appenduid(whole)[1]) == original
    header = f"/INBOX;UIDVALIDITY={validity}/;UID={uid}/;SECTION=HEADER/;PARTIAL=0.20"
    absolute = f"imap://{connect.user.name}@localhost{header}"
    response = catenate(client, f'URL "{absolute}" TEXT '.encode() + lit(b"\r\n\r\nend\r\n"))
    assert response.ok, response.line
    assert body(client, appenduid(response)[1]) == original[:20] + b"\r\n\r\nend\r\n"
    assert client.command('CREATE "Two words"').ok
    moved = catenate(client, f'URL "/INBOX/;UID={uid}"'.encode(), mailbox='"Two words"')
    again = catenate(client, f'URL "/Two%20words/;UID={appenduid(moved)[1]}"'.encode())
    assert again.ok, again.line
    assert body(client, appenduid(again)[1]) == original


def test_multiappend_of_catenated_messages(
    stored: tuple[RawClient, int, int], server: ServerProcess
) -> None:
    client, _, uid = stored
    response = client.command(
        f'APPEND INBOX (\\Flagged) CATENATE (URL "/INBOX/;UID={uid}") '.encode()
        + b"CATENATE (TEXT "
        + lit(b"Subject: x\r\n\r\nshort\r\n")
        + b")"
    )
    assert response.ok, response.line
    first, second = (int(n) for n in response.code.split()[2].split(":"))  # type: ignore[union-attr]
    assert body(client, second) == b"Subject: x\r\n\r\nshort\r\n"
    assert "\\Flagged" in str(fetches(client.command(f"UID FETCH {first} FLAGS")))


def test_urls_naming_nothing_are_badurl_and_nothing_is_stored(
    stored: tuple[RawClient, int, int],
) -> None:
    client, validity, uid = stored
    for url in [
        f"/INBOX;UIDVALIDITY={validity + 1}/;UID={uid}",
        f"/INBOX/;UID={uid + 100}",
        f"/Nowhere/;UID={uid}",
        f"/INBOX/;UID={uid}/;SECTION=9",
        f"imap://somebody-else@localhost/INBOX/;UID={uid}",
        f"/INBOX/;UID={uid};URLAUTH=anonymous",
    ]:
        response = catenate(client, b"TEXT " + lit(b"x: y\r\n\r\n") + f' URL "{url}"'.encode())
        assert response.status == "NO", (url, response.line)
        assert response.code == f"BADURL {url}", response.line
    assert client.command("NOOP").ok
    assert client.command("STATUS INBOX (MESSAGES)").data("STATUS") == [b"INBOX (MESSAGES 1)"]


def test_a_joined_message_over_the_limit_is_toobig(stored: tuple[RawClient, int, int]) -> None:
    client, _, _ = stored
    big = messages.plain(body="x" * 1_000_000)
    (response,) = client.append_many("INBOX", [big])
    uid = appenduid(response)[1]
    parts = b" ".join([f'URL "/INBOX/;UID={uid}"'.encode()] * 70)  # 70 MB > APPENDLIMIT
    response = catenate(client, parts)
    assert (response.status, response.code) == ("NO", "TOOBIG"), response.line


@pytest.mark.one_backend  # the engine refuses these before any URL is read
def test_bad_catenate_syntax(connect: Connector) -> None:
    client = connect.raw()
    for parts in [
        b"",
        b'TEXT "quoted, not a literal"',
        b"TEXT " + lit(b"nul\x00byte"),
        b"URL",
        b'FOO "x"',
        b"URL (a list)",
    ]:
        response = catenate(client, parts)
        assert response.status == "BAD", (parts, response.line)
    assert client.command("APPEND INBOX CATENATE").status == "BAD"
    assert client.command("APPEND INBOX CATENATE TEXT").status == "BAD"
    assert client.command("NOOP").ok


def test_url_parser() -> None:
    url = parse("/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2.MIME/;PARTIAL=5.10", "u")
    assert (url.mailbox, url.uidvalidity, url.uid, url.partial) == ("INBOX", 7, 20, (5, 10))
    assert url.section is not None and (url.section.part, url.section.text) == ((1, 2), "MIME")
    fields = parse("/a%2Fb/;UID=1/;SECTION=HEADER.FIELDS%20(FROM%20TO)", "u").section
    assert fields is not None and fields.fields == ("FROM", "TO")
    for bad in ["INBOX/;UID=1", "/INBOX/;UID=0", "/INBOX;UID=1", "/INBOX/;UID=1/;SECTION=0"]:
        with pytest.raises(BadUrl):
            parse(bad, "u")
