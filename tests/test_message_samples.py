"""Sample messages for the mailserv.message tests (and a realistic generator for timing).

Every sample is built here, byte by byte, so the tests know exactly where each part lies.
"""

from __future__ import annotations

import base64
import quopri
import random
import re
from typing import Any

from imapclient.response_parser import parse_response

CRLF = b"\r\n"

TRACE = (
    b"Return-Path: <alice@example.org>\r\n"
    b"Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n"
    b"\tby mail.example.net (Postfix) with ESMTPS id 4Xy1Zq2abc\r\n"
    b"\tfor <bob@example.net>; Mon, 3 Jun 2024 10:11:13 +0200 (CEST)\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mail;\r\n"
    b"\tt=1717402272; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    b"\th=From:To:Subject:Date:Message-ID; b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n"
)

PLAIN = (
    TRACE + b"From: Alice Example <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>, carol@example.com\r\n"
    b'Cc: "Dave, the Boss" <dave@example.com>\r\n'
    b"Subject: Lunch on\r\n"
    b" Friday?\r\n"
    b"Date: Mon, 3 Jun 2024 10:11:12 +0200\r\n"
    b"Message-ID: <lunch-1@example.org>\r\n"
    b"In-Reply-To: <plan-0@example.net>\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\r\n"
    b"lunch on Friday at noon?\r\n"
    b"-- \r\n"
    b"Alice\r\n"
)

ALTERNATIVE = (
    b"From: news@shop.example\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Offers\r\n"
    b"Date: Tue, 4 Jun 2024 08:00:00 -0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="=_alt_42"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--=_alt_42\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=E9 cr=E8me, only today!\r\n"
    b"--=_alt_42\r\n"
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<html><body><p>Caf=C3=A9 cr=C3=A8me, only <b>today</b>!</p></body></html>\r\n"
    b"--=_alt_42--\r\n"
    b"\r\n"
)

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
ATTACHMENT = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Report\r\n"
    b"Date: Wed, 5 Jun 2024 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed;\r\n"
    b'\tboundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"See the attached report.\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>See the attached report.</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment;\r\n"
    b' filename="report.pdf"; size=1033\r\n'
    b"Content-ID: <report@example.org>\r\n"
    b"Content-Description: Quarterly report\r\n"
    b"Content-Language: en, de\r\n"
    b"Content-Location: http://example.org/\r\n"
    b" report.pdf\r\n"
    b"\r\n" + base64.encodebytes(PDF).replace(b"\n", b"\r\n") + b"--outer--\r\n"
)

INNER = (
    b"From: Carol <carol@example.com>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: Original\r\n"
    b"Date: Sat, 1 Jun 2024 09:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="in"\r\n'
    b"\r\n"
    b"--in\r\n"
    b"\r\n"
    b"Original text.\r\n"
    b"--in\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--in--\r\n"
)
NESTED = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Fwd: Original\r\n"
    b"Date: Sun, 2 Jun 2024 10:00:00 +0200\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=fwd\r\n"
    b"\r\n"
    b"--fwd\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"Forwarding this.\r\n"
    b"--fwd\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Disposition: inline\r\n"
    b"\r\n" + INNER + b"--fwd--\r\n"
)

ENCODED_WORDS = (
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\r\n"
    b"To: =?iso-8859-1?q?Fran=E7ois?= <francois@example.fr>,\r\n"
    b" =?koi8-r?b?8NLJ18XU?= <ivan@example.ru>\r\n"
    b"Cc: =?iso-2022-jp?b?GyRCRnxLXDhsGyhC?= <taro@example.jp>\r\n"
    b"Bcc: =?x-no-such-charset?q?abc?= <x@example.com>\r\n"
    b"Subject: =?utf-8?b?w4ltw6lsaWU=?= and =?utf-8?q?Zo=C3=AB?=\r\n"
    b"  =?utf-8?q?_again?=\r\n"
    b"Date: Thu, 6 Jun 2024 07:30:00 +0900\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
)

GROUPS = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: undisclosed-recipients:;\r\n"
    b'Cc: Team: bob@example.net, "Carol C." <carol@example.com>;, dave@example.com\r\n'
    b"Bcc: <@relay1.example,@relay2.example:eve@example.com>, local-only\r\n"
    b"Reply-To:\r\n"
    b"Sender: Secretary <sec@example.org>\r\n"
    b"Subject: groups\r\n"
    b"\r\n"
    b"body\r\n"
)

EIGHT_BIT = (
    b"From: J\xf6rg <joerg@example.de>\r\n"
    b"To: K\xc3\xb6ln <koeln@example.de>\r\n"
    b"Subject: Gr\xfc\xdfe\r\n"
    b"Date: not a date at all\r\n"
    b"\r\n"
    b"caf\xe9\r\n"
)

LF_ONLY = (
    b"From: alice@example.org\n"
    b"To: bob@example.net\n"
    b"Subject: unix\n"
    b"Content-Type: multipart/mixed; boundary=b\n"
    b"\n"
    b"--b\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"first\n"
    b"--b\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"second\n"
    b"--b--\n"
)

NO_BODY = b"From: alice@example.org\r\nSubject: headers only\r\n"

BROKEN_BOUNDARY = (
    b"From: alice@example.org\r\n"
    b"Subject: broken\r\n"
    b'Content-Type: multipart/mixed; boundary="never-used"\r\n'
    b"\r\n"
    b"--other\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"text without a real boundary\r\n"
)

UNCLOSED = (
    b"Subject: unclosed\r\n"
    b"Content-Type: multipart/mixed; boundary=u\r\n"
    b"\r\n"
    b"--u\r\n"
    b"\r\n"
    b"one\r\n"
    b"--u \r\n"
    b"\r\n"
    b"two\r\n"
)

DIGEST = (
    b"Subject: digest\r\n"
    b"Content-Type: multipart/digest; boundary=d\r\n"
    b"\r\n"
    b"--d\r\n"
    b"\r\n"
    b"Subject: one\r\n"
    b"\r\n"
    b"first message\r\n"
    b"--d\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"not a message\r\n"
    b"--d--\r\n"
)

RFC2231 = (
    b"Subject: params\r\n"
    b"Content-Type: application/x-stuff;\r\n"
    b" title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n"
    b" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n"
    b' title*2="isn\'t it!"\r\n'
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.txt\r\n"
    b"\r\n"
    b"data\r\n"
)

SAMPLES: dict[str, bytes] = {
    "plain": PLAIN,
    "alternative": ALTERNATIVE,
    "attachment": ATTACHMENT,
    "nested": NESTED,
    "encoded_words": ENCODED_WORDS,
    "groups": GROUPS,
    "eight_bit": EIGHT_BIT,
    "lf_only": LF_ONLY,
    "no_body": NO_BODY,
    "broken_boundary": BROKEN_BOUNDARY,
    "unclosed": UNCLOSED,
    "digest": DIGEST,
    "rfc2231": RFC2231,
    "empty": b"",
}

_WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "meeting", "report",
    "invoice", "budget", "project", "schedule", "team", "update", "review", "deadline",
    "customer", "support", "release", "notes", "please", "thanks",
)  # fmt: skip


def _paragraphs(rng: random.Random, size: int) -> str:
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 12)))
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines) + "\r\n"


def realistic(seed: int) -> bytes:
    """A plausible 5-50 KB message: trace headers, then plain, alternative or attachments."""
    rng = random.Random(seed)
    kind = rng.random()
    names = ["Alice Example", "Bob", "=?utf-8?q?J=C3=B6rg?=", '"Smith, John"', "Carol"]
    recipients = ", ".join(
        f"{rng.choice(names)} <user{rng.randint(1, 999)}@example.{rng.choice(['com', 'net'])}>"
        for _ in range(rng.randint(1, 4))
    )
    head = (
        TRACE * rng.randint(1, 3)
        + (
            f"From: {rng.choice(names)} <sender{seed}@example.org>\r\n"
            f"To: {recipients}\r\n"
            f"Subject: {'=?utf-8?q?R=C3=A9union?= ' if seed % 3 == 0 else ''}"
            f"{' '.join(rng.choice(_WORDS) for _ in range(5))}\r\n"
            f"Date: Mon, {rng.randint(1, 28)} Jun 2024 10:{rng.randint(10, 59)}:12 +0200\r\n"
            f"Message-ID: <{seed}.{rng.randint(1, 10**9)}@example.org>\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode()
    )
    text = _paragraphs(rng, rng.randint(3000, 20000))
    if kind < 0.3:
        return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
    html = quopri.encodestring(f"<html><body><p>{text}</p></body></html>".encode())
    alternative = (
        b'Content-Type: multipart/alternative; boundary="alt-' + str(seed).encode() + b'"\r\n'
        b"\r\n--alt-" + str(seed).encode() + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + quopri.encodestring(text.encode())
        + b"\r\n--alt-"
        + str(seed).encode()
        + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + html
        + b"\r\n--alt-"
        + str(seed).encode()
        + b"--\r\n"
    )
    if kind < 0.7:
        return head + alternative
    blob = base64.encodebytes(rng.randbytes(rng.randint(2000, 20000))).replace(b"\n", b"\r\n")
    return (
        head + b'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
        b"--mix\r\n" + alternative + b"--mix\r\n"
        b'Content-Type: application/octet-stream; name="data.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n' + blob + b"--mix--\r\n"
    )


_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def imap_parse(data: bytes) -> Any:
    """Parse IMAP response data with imapclient (literals split out as imaplib would)."""
    chunks: list[bytes | tuple[bytes, bytes]] = []
    pos = 0
    while (match := _LITERAL.search(data, pos)) is not None:
        size = int(match.group(1))
        head = data[pos : match.end() - 2]
        chunks.append((head, data[match.end() : match.end() + size]))
        pos = match.end() + size
    chunks.append(data[pos:])
    (value,) = parse_response(chunks)  # type: ignore[arg-type]
    return value


def test_imap_parse_literals() -> None:
    assert imap_parse(b'("a" {3}\r\n\xff\r\n NIL)') == (b"a", b"\xff\r\n", None)


def test_realistic_sizes() -> None:
    sizes = [len(realistic(seed)) for seed in range(50)]
    assert min(sizes) > 3000 and max(sizes) < 80_000
