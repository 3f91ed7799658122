"""RFC 2231 parameters in BODY and BODYSTRUCTURE: an IMAP4rev1 session gets continuations
merged and an extended value in its ASCII ``charset'lang'%XX`` form under ``NAME*`` (RFC 2231
4.1; RFC 3501 has no other way to carry it); after ENABLE IMAP4rev2 the extended value comes
decoded, in UTF-8 (RFC 9051 7.5.2).  The engine does it whatever the backend: one backend."""

from __future__ import annotations

import pytest
from imapserver import Connector, ok

from bench.harness import fetches
from mailserv.imap.fetchparams import decode_extended
from mailserv.message.parse import parse_message

MESSAGE = (
    b"From: a@example.org\r\nSubject: params\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--XX\r\nContent-Type: application/octet-stream; name*0*=utf-8''%E2%82;\r\n"
    b' name*1*=%AC; name*2=".txt"\r\n'
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.txt;\r\n"
    b' title*0="part one "; title*1="and two"\r\n\r\nAAAA\r\n'
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: NAME*\r\nDate: utf-8''%41\r\n"
    b"Content-Type: text/plain; charset=us-ascii; format*=iso-8859-1''%E9\r\n\r\nz\r\n"
    b"--XX--\r\n"
)


@pytest.mark.one_backend
def test_rfc2231_parameters_by_mode(connect: Connector) -> None:
    connect.append([MESSAGE])
    legacy = connect.selected()
    old = fetches(ok(legacy, "FETCH 1 (BODY BODYSTRUCTURE)"))[1]
    _, attachment, inner = old["BODYSTRUCTURE"][:3]  # type: ignore[index,misc]
    assert attachment[2] == [b"NAME*", b"utf-8''%E2%82%AC.txt"], attachment
    assert attachment[8] == [
        b"ATTACHMENT",
        [b"FILENAME*", b"utf-8''%E2%82%AC.txt", b"TITLE", b"part one and two"],
    ], attachment
    assert inner[8][2] == [b"CHARSET", b"us-ascii", b"FORMAT*", b"iso-8859-1''%E9"], inner
    assert old["BODY"][1][2] == attachment[2], old["BODY"]  # type: ignore[index]

    client = connect.raw()
    assert ok(client, "ENABLE IMAP4rev2").data("ENABLED") == [b"IMAP4REV2"]
    ok(client, "SELECT INBOX")
    response = ok(client, "FETCH 1 (BODY BODYSTRUCTURE)")
    line = b"".join(response.untagged).decode("utf-8")
    assert '("NAME*" "€.txt")' in line, line
    assert '("FILENAME*" "€.txt" "TITLE" "part one and two")' in line, line
    assert '("CHARSET" "us-ascii" "FORMAT*" "é")' in line, line
    assert line.count('"€.txt"') == 3, line  # BODY and BODYSTRUCTURE's Content-Type, and
    # the disposition; the envelope's look-alike strings stay as the message has them
    assert '("utf-8\'\'%41" "NAME*"' in line, line


def test_unrecognised_bytes_stay_as_they_are() -> None:
    """Whatever the walker does not recognise (here every cut of a real BODYSTRUCTURE) is
    sent as stored, never an exception."""
    structure = parse_message(MESSAGE).bodystructure
    assert b"\xe2\x82\xac" in decode_extended(structure)
    for end in range(len(structure)):
        assert decode_extended(structure[:end]) == structure[:end]
