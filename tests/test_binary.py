"""BINARY (RFC 3516): FETCH BINARY/BINARY.PEEK/BINARY.SIZE over raw sockets, APPEND of
literal8 content; the decoders of :mod:`mailserv.message.decode` by themselves."""

from __future__ import annotations

import base64
import binascii
import os
import quopri

import pytest
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, ServerProcess, Value, fetches
from mailserv.message import decode
from mailserv.message.parse import parse_message

PDF = messages.PDF_BYTES
B64 = ("Content-Transfer-Encoding", "base64")
QP = ("Content-Transfer-Encoding", "quoted-printable")
NUL_BODY = b"head\x00\x01\x02\r\n\xff\xfe\x00tail"


def binary_message(body: bytes, encoding: str = "binary") -> bytes:
    return (
        b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body
    )


def mixed_with_alternative() -> bytes:
    """multipart/mixed whose part 1 is a multipart/alternative (1.1 its text part)."""
    inner = b"--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n--in--\r\n"
    alternative = messages.part('multipart/alternative; boundary="in"', inner)
    text = messages.part("text/plain", b"x")
    return messages.multipart([("From", "a@example.org")], "mixed", "out", [alternative, text])


def fetch_one(client: RawClient, command: str) -> dict[str, Value]:
    response = client.command(command)
    assert response.ok, (command, response.line)
    found = fetches(response)
    assert len(found) == 1, response.untagged
    return dict(next(iter(found.values())))


def append8(client: RawClient, data: bytes, plus: bool = False) -> Response:
    """APPEND INBOX with ``data`` as a literal8 (``~{n}``, or ``~{n+}``)."""
    tag = client.next_tag()
    if plus:
        client.send(b"%s APPEND INBOX ~{%d+}\r\n%s\r\n" % (tag.encode(), len(data), data))
        return client.read_until_tagged(tag)
    client.send(b"%s APPEND INBOX ~{%d}\r\n" % (tag.encode(), len(data)))
    assert client.read_line().startswith(b"+")
    client.send(data + b"\r\n")
    return client.read_until_tagged(tag)


# -- every backend: decoding what the store gives back -------------------------------------


def test_decoded_parts(connect: Connector) -> None:
    connect.append([messages.with_attachment(), messages.alternative(), messages.nested()])
    client = connect.selected()
    att = client.command("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1])")
    assert att.ok, att.line
    assert b"BINARY[2] ~{%d}\r\n" % len(PDF) in att.untagged[0]  # NULs: literal8
    items = fetches(att)[1]
    assert items["BINARY[2]"] == PDF
    assert items["BINARY.SIZE[2]"] == len(PDF)
    assert items["BINARY[1]"] == messages.crlf("Please find the invoice attached.\n")
    text = messages.crlf(messages.ALT_TEXT).decode().encode("utf-8")
    html = messages.crlf(messages.ALT_HTML)
    alt = fetch_one(client, "FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2])")
    assert alt == {"BINARY[1]": text, "BINARY.SIZE[1]": len(text), "BINARY[2]": html}
    # a part inside the message/rfc822 part 2 of message 3: 2.1 is its quoted-printable text
    nested = fetch_one(client, "FETCH 3 (BINARY.PEEK[2.1] BINARY.SIZE[2.2] BINARY.PEEK[1])")
    assert nested == {
        "BINARY[2.1]": text,
        "BINARY.SIZE[2.2]": len(html),
        "BINARY[1]": messages.crlf("See the forwarded message.\n"),
    }


@pytest.mark.one_backend
def test_text_parts_decoded_octets_as_they_are(connect: Connector) -> None:
    """RFC 3516 4: a text part's decoded octets are returned as they are (base64 of bare
    LF gives bare LF, QP's =0D=0A gives CRLF, a soft break joins); BINARY.SIZE counts
    exactly those octets, of the whole part and of a partial range alike."""
    lines = b"line1\nline2\r\nline3\n\n"
    parts = [
        messages.part("text/plain", base64.encodebytes(lines).replace(b"\n", b"\r\n"), B64),
        messages.part("text/plain", b"a=0Ab=\r\nc\r\nd=0D=0A", QP),
    ]
    connect.append([messages.multipart([("From", "a@example.org")], "mixed", "b", parts)])
    client = connect.selected()
    items = fetch_one(client, "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2])")
    assert items["BINARY[1]"] == lines and items["BINARY.SIZE[1]"] == len(lines), items
    items2 = fetch_one(client, "FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[1]<2.5>)")
    assert items2["BINARY[2]"] == b"a\nbc\r\nd\r\n" and items2["BINARY.SIZE[2]"] == 9, items2
    assert items2["BINARY[1]<2>"] == lines[2:7]


@pytest.mark.parametrize("plus", [False, True], ids=["sync", "literal-plus"])
def test_append_literal8_round_trip(connect: Connector, server: ServerProcess, plus: bool) -> None:
    client = connect.selected()
    message = binary_message(NUL_BODY)
    response = append8(client, message, plus)
    assert response.ok, response.line
    got = fetch_one(client, "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[])")
    assert got["BINARY[1]"] == NUL_BODY
    assert got["BINARY.SIZE[1]"] == len(NUL_BODY)
    if server.backend.name == "proxy":  # Dovecot upstream re-encodes it, as RFC 3516 4.4 allows
        assert b"Content-Transfer-Encoding: base64" in got["BODY[]"]
    else:
        assert got["BODY[]"] == message


# -- what the engine decides alone ------------------------------------------------------------


@pytest.mark.one_backend
def test_peek_keeps_seen_binary_sets_it(connect: Connector) -> None:
    connect.append([messages.with_attachment()])
    client = connect.selected()
    assert "FLAGS" not in fetch_one(client, "FETCH 1 BINARY.PEEK[1]")
    assert fetch_one(client, "FETCH 1 FLAGS")["FLAGS"] == ["\\Recent"]
    size = len(messages.crlf("Please find the invoice attached.\n"))
    assert fetch_one(client, "FETCH 1 BINARY.SIZE[1]") == {"BINARY.SIZE[1]": size}
    assert fetch_one(client, "FETCH 1 FLAGS")["FLAGS"] == ["\\Recent"]
    got = fetch_one(client, "FETCH 1 BINARY[1]")
    assert "\\Seen" in got["FLAGS"]


@pytest.mark.one_backend
def test_partial_ranges_count_decoded_octets(connect: Connector) -> None:
    connect.append([messages.with_attachment()])
    client = connect.selected()
    response = client.command("FETCH 1 (BINARY.PEEK[2]<9.20> BINARY.PEEK[2]<10.20>)")
    assert b"BINARY[2]<9> ~{20}\r\n" + PDF[9:29] in response.untagged[0]  # has the NUL
    assert b"BINARY[2]<10> {20}\r\n" + PDF[10:30] in response.untagged[0]
    assert fetch_one(client, "FETCH 1 BINARY.PEEK[2]<0.9>") == {"BINARY[2]<0>": b"%PDF-1.4\n"}
    beyond = fetch_one(client, f"FETCH 1 BINARY.PEEK[2]<{len(PDF) - 3}.100>")
    assert beyond == {f"BINARY[2]<{len(PDF) - 3}>": PDF[-3:]}
    assert fetch_one(client, "FETCH 1 BINARY.PEEK[2]<99999.5>") == {"BINARY[2]<99999>": b""}


@pytest.mark.one_backend
def test_whole_message_missing_part_and_non_leaf(connect: Connector) -> None:
    nested = messages.nested()
    connect.append([nested, mixed_with_alternative()])
    client = connect.selected()
    assert fetch_one(client, "FETCH 1 BINARY.PEEK[]") == {"BINARY[]": nested}
    assert fetch_one(client, "FETCH 1 BINARY.SIZE[]") == {"BINARY.SIZE[]": len(nested)}
    assert fetch_one(client, "FETCH 1 BINARY.PEEK[7]") == {"BINARY[7]": b""}
    response = client.command("FETCH 1 BINARY.PEEK[2]")  # the message/rfc822 part
    assert response.status == "NO" and b"not a leaf" in response.line, response.line
    response = client.command("FETCH 2 BINARY.SIZE[1]")  # multipart/alternative
    assert response.status == "NO" and b"not a leaf" in response.line, response.line
    assert fetch_one(client, "FETCH 2 BINARY.PEEK[1.1]") == {"BINARY[1.1]": b"hi"}


@pytest.mark.one_backend
def test_unknown_encoding_is_no_unknown_cte(connect: Connector) -> None:
    connect.append([binary_message(b"begin 644 x\r\n`\r\nend\r\n", "x-uuencode")])
    client = connect.selected()
    for item in ("BINARY.PEEK[1]", "BINARY.SIZE[1]"):
        response = client.command(f"FETCH 1 {item}")
        assert response.status == "NO" and response.code == "UNKNOWN-CTE", response.line
    assert fetch_one(client, "FETCH 1 FLAGS")["FLAGS"] == ["\\Recent"]  # PEEK: no \Seen


BAD_ITEMS = (
    "BINARY",
    "BINARY.PEEK",
    "BINARY.SIZE",
    "BINARY[1.HEADER]",
    "BINARY[TEXT]",
    "BINARY[0]",
    "BINARY.SIZE[1]<0.10>",
    "BINARY[1]<0.0>",
)


@pytest.mark.one_backend
def test_bad_binary_items(connect: Connector) -> None:
    connect.append([messages.plain()])
    client = connect.selected()
    for items in BAD_ITEMS:
        response = client.command(f"FETCH 1 ({items})")
        assert response.status == "BAD", (items, response.line)
    assert client.command("NOOP").ok


@pytest.mark.one_backend
def test_nul_in_plain_literal_refused(connect: Connector) -> None:
    client = connect.selected()
    response = client.command_with_literal("APPEND INBOX ", binary_message(NUL_BODY))
    assert response.status == "BAD" and b"literal8" in response.line, response.line
    assert client.command("NOOP").ok
    assert client.command("STATUS INBOX (MESSAGES)").untagged[0].endswith(b"(MESSAGES 0)\r\n")


@pytest.mark.one_backend
def test_large_part_decoded_in_slices(connect: Connector) -> None:
    data = os.urandom(3 * decode.STEP)
    quoted = quopri.encodestring(data)
    connect.append(
        [
            binary_message(messages.b64(data), "base64"),
            binary_message(messages.crlf(quoted), "quoted-printable"),
        ]
    )
    client = connect.selected()
    got = fetches(client.command("FETCH 1:2 (BINARY.PEEK[1] BINARY.SIZE[1])"))
    assert got[1] == {"BINARY[1]": data, "BINARY.SIZE[1]": len(data)}
    expected = binascii.a2b_qp(messages.crlf(quoted))
    assert got[2] == {"BINARY[1]": expected, "BINARY.SIZE[1]": len(expected)}


# -- the decoders ---------------------------------------------------------------------------


def _decoded(body: bytes, encoding: str) -> bytes:
    message = binary_message(body, encoding)
    info = parse_message(message)
    found = decode.leaf(message, info, (1,))
    assert found is not None
    return decode.at_once(decode.content(message, *found))


def test_base64_steps_ignore_line_layout() -> None:
    data = bytes(range(256)) * (decode.STEP // 100)
    flat = base64.b64encode(data)
    odd_lines = b"\r\n".join(flat[i : i + 77] for i in range(0, len(flat), 77))
    assert _decoded(flat, "base64") == data
    assert _decoded(odd_lines, "base64") == data
    assert _decoded(b"QUJD\r\nRA", "base64") == b"ABCD"  # padding missing at the end
    assert _decoded(b"QU*JD!\r\nR", "base64") == b"ABC"  # stray bytes, a lone last char


def test_quoted_printable_steps_keep_escapes_whole() -> None:
    data = bytes(range(256)) * (decode.STEP // 80)
    one_line = binascii.b2a_qp(data).replace(b"=\n", b"")  # a line longer than a step
    assert len(one_line) > decode.STEP
    assert _decoded(one_line, "quoted-printable") == data
    lines = messages.crlf(quopri.encodestring(data))
    assert _decoded(lines, "quoted-printable") == binascii.a2b_qp(lines)


def test_leaf_refuses_containers() -> None:
    raw = messages.nested()
    info = parse_message(raw)
    with pytest.raises(decode.NotLeaf):
        decode.leaf(raw, info, (2,))  # message/rfc822
    mixed = mixed_with_alternative()
    with pytest.raises(decode.NotLeaf):
        decode.leaf(mixed, parse_message(mixed), (1,))  # multipart/alternative
    assert decode.leaf(raw, info, (5,)) is None
    assert decode.leaf(raw, info, (2, 1, 9)) is None
