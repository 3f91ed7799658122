"""Decoded header and body text for SEARCH."""

from __future__ import annotations

import base64

import pytest
import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)

from mailserv.message.info import Part
from mailserv.message.parse import parse_message
from mailserv.message.text import (
    body_text,
    decode_part,
    header_text,
    header_values,
    transfer_decode,
)


def values(raw: bytes, name: str) -> list[str]:
    return header_values(raw, parse_message(raw), name)


def body(raw: bytes) -> str:
    return body_text(raw, parse_message(raw))


def test_header_values_are_unfolded_and_decoded() -> None:
    assert values(s.PLAIN, "Subject") == ["Lunch on Friday?"]
    assert values(s.PLAIN, "subject") == ["Lunch on Friday?"]
    assert len(values(s.PLAIN, "RECEIVED")) == 1
    assert values(s.PLAIN, "Received")[0].endswith("+0200 (CEST)")
    assert values(s.PLAIN, "X-Missing") == []
    assert values(s.ENCODED_WORDS, "subject") == ["Émélie and Zoë again"]
    assert values(s.ENCODED_WORDS, "to") == [
        "François <francois@example.fr>, Привет <ivan@example.ru>"
    ]
    assert values(s.EIGHT_BIT, "subject") == ["Grüße"]


def test_header_values_repeat_and_empty() -> None:
    raw = b"X-Tag: one\r\nX-Tag:\r\nx-tag: =?utf-8?q?dr=C3=A9i?=\r\n\r\nbody"
    assert values(raw, "x-tag") == ["one", "", "dréi"]


def test_header_values_ignore_parts() -> None:
    assert values(s.NESTED, "subject") == ["Fwd: Original"]
    assert values(s.ATTACHMENT, "content-id") == []


def test_header_text() -> None:
    text = header_text(s.ENCODED_WORDS, parse_message(s.ENCODED_WORDS))
    assert "Subject: Émélie and Zoë again" in text
    assert "From: Jörg Müller <joerg@example.de>" in text
    assert "Gr" not in text  # the body is not header text
    assert header_text(b"", parse_message(b"")) == ""


def test_body_text_plain_and_eight_bit() -> None:
    assert body(s.PLAIN) == "Hi Bob,\r\n\r\nlunch on Friday at noon?\r\n-- \r\nAlice\r\n"
    assert body(s.ENCODED_WORDS) == "Grüße aus Köln\r\n"
    assert body(s.EIGHT_BIT) == "café\r\n"  # undeclared 8-bit: UTF-8, else Latin-1


def test_body_text_decodes_quoted_printable_in_each_charset() -> None:
    text = body(s.ALTERNATIVE)
    assert "Café crème, only today!" in text
    assert "<p>Café crème, only <b>today</b>!</p>" in text
    assert "multi-part message" not in text  # the preamble is not a text part


def test_body_text_skips_non_text_parts() -> None:
    text = body(s.ATTACHMENT)
    assert "See the attached report." in text and "PDF" not in text
    assert "JVBER" not in text  # the base64 of the attachment


def test_body_text_includes_attached_messages() -> None:
    text = body(s.NESTED)
    assert "Forwarding this." in text and "Original text." in text
    assert "iVBOR" not in text


def test_body_text_of_broken_multipart_is_its_raw_body() -> None:
    assert "text without a real boundary" in body(s.BROKEN_BOUNDARY)


def test_body_text_base64_unknown_charset_and_headers_only() -> None:
    raw = (
        b"Content-Type: text/plain; charset=x-martian\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes("née".encode())
    )
    assert body(raw) == "née"
    assert body(s.NO_BODY) == ""
    assert body(b"Content-Type: image/gif\r\n\r\nGIF89a") == ""
    raw = b"Content-Type: text/plain; charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4"
    assert body(raw) == "Привет"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"aGVsbG8=", b"hello"),
        (b"aGVs\r\nbG8=\r\n", b"hello"),
        (b"aGVsbG8", b"hello"),  # missing padding
        (b"aGVsbG8===", b"hello"),
        (b"aGVs*bG8!", b"hello"),
        (b"a", b""),
        (b"", b""),
    ],
)
def test_lenient_base64(data: bytes, expected: bytes) -> None:
    assert transfer_decode(data, "base64") == expected


def test_quoted_printable_and_identity() -> None:
    assert transfer_decode(b"caf=C3=A9 =\r\nau lait=3D", "quoted-printable") == (
        "café au lait=".encode()
    )
    assert transfer_decode(b"=ZZ broken", "quoted-printable") == b"=ZZ broken"
    assert transfer_decode(b"raw", "x-uuencode") == b"raw"


def test_decode_part_with_unknown_codec_names() -> None:
    raw = b"h\xc3\xa9"
    for charset in ("base64", "rot13", "x-unknown", "", None, "utf-16"):
        part = Part(0, 0, len(raw), "text/plain", "8bit", charset)
        assert isinstance(decode_part(raw, part), str)
