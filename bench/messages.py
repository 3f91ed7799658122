"""Realistic RFC 5322 / MIME messages for the protocol tests and the benchmark.

Every factory returns CRLF-terminated bytes built by hand (not by the email package), so the
tests know each part's exact bytes and can check sections, sizes and line counts.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import random
from collections.abc import Sequence

DEFAULT_DATE = "Mon, 07 Feb 2022 10:11:12 +0100"


def crlf(text: str | bytes) -> bytes:
    """Normalise line ends to CRLF."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """Header lines plus the blank line; values are used as given (UTF-8 if 8-bit)."""
    return b"".join(crlf(f"{k}: {v}\n") for k, v in headers) + b"\r\n"


def encoded_word(text: str, mode: str = "B") -> str:
    """An RFC 2047 encoded-word in UTF-8."""
    raw = text.encode("utf-8")
    if mode == "B":
        return "=?UTF-8?B?" + base64.b64encode(raw).decode() + "?="
    quoted = binascii.b2a_qp(raw, header=True).decode().replace("?", "=3F")
    return "=?UTF-8?Q?" + quoted + "?="


def qp(text: str) -> bytes:
    return crlf(quopri.encodestring(crlf(text).replace(b"\r\n", b"\n")))


def b64(data: bytes) -> bytes:
    return crlf(base64.encodebytes(data))


def _envelope_headers(
    subject: str,
    sender: str,
    to: str,
    date: str,
    message_id: str,
    cc: str | None,
    extra: Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    headers = [("Date", date), ("From", sender), ("To", to)]
    if cc:
        headers.append(("Cc", cc))
    headers += [("Subject", subject), ("Message-ID", message_id)]
    return headers + list(extra)


def plain(
    subject: str = "Lunch on Thursday",
    body: str = "Hi Bob,\n\nShall we meet at noon?\n\nAlice\n",
    sender: str = "Alice Example <alice@example.org>",
    to: str = "Bob Example <bob@example.net>",
    date: str = DEFAULT_DATE,
    message_id: str = "<plain.1@example.org>",
    cc: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
    charset: str = "us-ascii",
) -> bytes:
    """A single text/plain part."""
    headers = _envelope_headers(subject, sender, to, date, message_id, cc, extra)
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f"text/plain; charset={charset}"),
        ("Content-Transfer-Encoding", "7bit" if charset == "us-ascii" else "8bit"),
    ]
    return header_block(headers) + crlf(body)


def multipart(
    headers: Sequence[tuple[str, str]],
    subtype: str,
    boundary: str,
    parts: Sequence[bytes],
    preamble: str = "This is a multi-part message in MIME format.\n",
) -> bytes:
    """A multipart entity; each part is its own header block plus body."""
    head = list(headers) + [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/{subtype}; boundary="{boundary}"'),
    ]
    out = header_block(head) + crlf(preamble)
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\n" + part + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def part(content_type: str, body: bytes, *headers: tuple[str, str]) -> bytes:
    """A body part: Content-Type, extra headers, blank line, body (as given)."""
    return header_block([("Content-Type", content_type), *headers]) + body


ALT_TEXT = "Price: 10 \u20ac\nThe quarterly figures are attached below.\nRegards\n"
ALT_HTML = "<html><body><p>Price: 10 &euro;</p><p>The quarterly figures</p></body></html>\n"


def alternative(
    subject: str = "Quarterly figures",
    text: str = ALT_TEXT,
    html: str = ALT_HTML,
    message_id: str = "<alt.1@example.org>",
    date: str = DEFAULT_DATE,
) -> bytes:
    """multipart/alternative: quoted-printable text/plain and text/html."""
    headers = _envelope_headers(
        subject, "Carol <carol@example.com>", "team@example.com", date, message_id, None, ()
    )
    text_part = part(
        "text/plain; charset=utf-8", qp(text), ("Content-Transfer-Encoding", "quoted-printable")
    )
    html_part = part(
        "text/html; charset=utf-8", qp(html), ("Content-Transfer-Encoding", "quoted-printable")
    )
    return multipart(headers, "alternative", "alt-boundary-42", [text_part, html_part])


PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def with_attachment(
    subject: str = "Invoice 2022-001",
    text: str = "Please find the invoice attached.\n",
    attachment: bytes = PDF_BYTES,
    filename: str = "invoice.pdf",
    message_id: str = "<att.1@example.org>",
    date: str = DEFAULT_DATE,
) -> bytes:
    """multipart/mixed: text/plain plus a base64 application/pdf attachment."""
    headers = _envelope_headers(
        subject,
        "Billing <billing@shop.example>",
        "customer@example.net",
        date,
        message_id,
        None,
        (),
    )
    text_part = part("text/plain; charset=us-ascii", crlf(text))
    att_part = part(
        f'application/pdf; name="{filename}"',
        b64(attachment),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", f'attachment; filename="{filename}"'),
        ("Content-Language", "en"),
    )
    return multipart(headers, "mixed", "mixed-boundary-7", [text_part, att_part])


def rfc2047(
    subject: str = "R\u00e9union d'\u00e9quipe \u2014 \u65e5\u672c",
    name: str = "Zo\u00eb M\u00fcller",
    body: str = "Bonjour \u00e0 tous,\n\u00e0 demain.\n",
    message_id: str = "<mime2047.1@example.org>",
    date: str = DEFAULT_DATE,
) -> bytes:
    """Encoded-word Subject and From display name; an 8bit UTF-8 body."""
    return plain(
        subject=encoded_word(subject, "B"),
        sender=f"{encoded_word(name, 'Q')} <zoe@example.de>",
        to="bob@example.net",
        body=body,
        message_id=message_id,
        date=date,
        charset="utf-8",
    )


def nested(
    subject: str = "Fwd: Quarterly figures",
    inner: bytes | None = None,
    message_id: str = "<nested.1@example.org>",
    date: str = DEFAULT_DATE,
) -> bytes:
    """multipart/mixed: a text part and a forwarded message/rfc822 (itself multipart)."""
    headers = _envelope_headers(
        subject, "Dave <dave@example.com>", "erin@example.com", date, message_id, None, ()
    )
    forwarded = inner if inner is not None else alternative()
    text_part = part("text/plain; charset=us-ascii", crlf("See the forwarded message.\n"))
    msg_part = part(
        "message/rfc822", forwarded, ("Content-Disposition", 'inline; filename="fwd.eml"')
    )
    return multipart(headers, "mixed", "outer-boundary-1", [text_part, msg_part])


def eight_bit_headers(
    subject: str = "Gr\u00fc\u00dfe aus K\u00f6ln",
    name: str = "J\u00fcrgen",
    message_id: str = "<8bit.1@example.org>",
    date: str = DEFAULT_DATE,
) -> bytes:
    """Raw UTF-8 in Subject and From (RFC 6532 style)."""
    return plain(
        subject=subject,
        sender=f"{name} <juergen@example.de>",
        body="Sch\u00f6ne Gr\u00fc\u00dfe\n",
        message_id=message_id,
        date=date,
        charset="utf-8",
    )


_WORDS = [
    "meeting",
    "report",
    "budget",
    "travel",
    "invoice",
    "server",
    "backup",
    "release",
    "review",
    "coffee",
    "quarter",
    "design",
    "schedule",
    "migration",
    "holiday",
    "contract",
    "feedback",
    "network",
    "printer",
    "deadline",
    "agenda",
    "customer",
    "project",
    "update",
    "status",
    "weekly",
    "monthly",
    "urgent",
    "notes",
    "draft",
    "proposal",
]


def realistic(i: int, rng: random.Random) -> bytes:
    """Message number ``i`` of a varied mailbox (plain, alternative, attachments, nested)."""
    words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 8))]
    subject = " ".join(words).capitalize() + f" #{i}"
    day = 1 + i % 28
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[
        (i // 28) % 12
    ]
    date = f"Tue, {day:02d} {month} 2021 {i % 24:02d}:{i % 60:02d}:00 +0000"
    msgid = f"<bench.{i}.{rng.randrange(10**9)}@example.org>"
    paragraphs = "\n\n".join(
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 60))) for _ in range(3)
    )
    kind = i % 10
    if kind < 5:
        return plain(
            subject=subject,
            body=paragraphs + "\n",
            sender=f"User {i % 97} <user{i % 97}@example.org>",
            to=f"List <list{i % 7}@example.net>",
            date=date,
            message_id=msgid,
        )
    if kind < 8:
        return alternative(subject=subject, text=paragraphs + "\n", message_id=msgid, date=date)
    if kind == 8:
        blob = rng.randbytes(rng.randint(2000, 20000))
        return with_attachment(subject=subject, attachment=blob, message_id=msgid, date=date)
    return nested(subject="Fwd: " + subject, message_id=msgid, date=date)
