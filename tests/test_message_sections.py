"""section_bytes: BODY[section] per RFC 3501 6.4.5, cut from the raw message by offsets."""

from __future__ import annotations

import pytest
import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message
from mailserv.message.sections import (
    FieldPicker,
    find_part,
    header_block,
    header_fields,
    section_bytes,
)


def section(raw: bytes, part: tuple[int, ...], text: str | None, *fields: str) -> bytes:
    return section_bytes(raw, parse_message(raw), part, text, tuple(fields))


def header_of(raw: bytes) -> bytes:
    return raw[: raw.index(b"\r\n\r\n") + 4]


def test_whole_message_header_and_text() -> None:
    raw = s.PLAIN
    assert section(raw, (), None) == raw
    assert section(raw, (), "HEADER") == header_of(raw)
    assert section(raw, (), "TEXT") == raw[len(header_of(raw)) :]
    assert section(raw, (), "header") == header_of(raw)  # any case


def test_non_multipart_message_has_part_one_only() -> None:
    raw = s.PLAIN
    body = raw[len(header_of(raw)) :]
    assert section(raw, (1,), None) == body
    assert section(raw, (1,), "MIME") == header_of(raw)
    assert section(raw, (2,), None) == b""
    assert section(raw, (1, 1), None) == b""
    assert section(raw, (1,), "HEADER") == b""  # part 1 is text, not a message
    assert section(raw, (0,), None) == b""


def test_header_fields() -> None:
    raw = s.PLAIN
    assert section(raw, (), "HEADER.FIELDS", "subject", "FROM") == (
        b"From: Alice Example <alice@example.org>\r\nSubject: Lunch on\r\n Friday?\r\n\r\n"
    )
    assert section(raw, (), "HEADER.FIELDS", "X-Absent") == b"\r\n"
    received = section(raw, (), "HEADER.FIELDS", "Received")
    assert received.startswith(b"Received: from mx.example.org") and received.count(b"\r\n\t") == 2


def test_header_fields_not() -> None:
    raw = s.PLAIN
    out = section(raw, (), "HEADER.FIELDS.NOT", "received", "dkim-signature", "return-path")
    assert out.startswith(b"From: Alice")
    assert b"Received" not in out and b"DKIM" not in out and b"bh=" not in out
    assert out.endswith(b"In-Reply-To: <plan-0@example.net>\r\n\r\n")
    assert section(raw, (), "HEADER.FIELDS.NOT") == header_of(raw)


def test_mime_is_only_for_parts() -> None:
    assert section(s.PLAIN, (), "MIME") == b""
    assert section(s.PLAIN, (), "UNKNOWN") == b""


def test_multipart_parts() -> None:
    raw = s.ATTACHMENT
    alternative = raw[raw.index(b"--inner\r\n") : raw.index(b"--inner--") + len(b"--inner--")]
    assert section(raw, (1,), None) == alternative
    assert section(raw, (1,), "MIME") == (
        b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    )
    assert section(raw, (1, 1), None) == b"See the attached report."
    assert section(raw, (1, 2), None) == b"<p>See the attached report.</p>"
    assert section(raw, (1, 2), "MIME") == b"Content-Type: text/html\r\n\r\n"
    assert s.base64.b64decode(section(raw, (2,), None)) == s.PDF
    mime = section(raw, (2,), "MIME")
    assert mime.startswith(b'Content-Type: application/pdf; name="report.pdf"\r\n')
    assert mime.endswith(b" report.pdf\r\n\r\n")
    assert section(raw, (3,), None) == b""
    assert section(raw, (1, 3), None) == b""
    assert section(raw, (2, 1), None) == b""
    assert section(raw, (1,), "TEXT") == b""  # multipart, not a message


def test_encapsulated_message_parts() -> None:
    raw = s.NESTED
    inner = s.INNER[:-2]
    inner_header = header_of(s.INNER)
    assert section(raw, (2,), None) == inner
    assert section(raw, (2,), "MIME") == (
        b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    )
    assert section(raw, (2,), "HEADER") == inner_header
    assert section(raw, (2,), "TEXT") == inner[len(inner_header) :]
    assert section(raw, (2,), "HEADER.FIELDS", "Subject") == b"Subject: Original\r\n\r\n"
    assert section(raw, (2,), "HEADER.FIELDS.NOT", "Subject").startswith(b"From: Carol")
    assert section(raw, (2, 1), None) == b"Original text."
    assert section(raw, (2, 1), "MIME") == b"\r\n"  # a part with an empty header
    assert section(raw, (2, 2), None) == b"iVBORw0KGgo="
    assert section(raw, (2, 2), "MIME") == (
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert section(raw, (2, 3), None) == b""
    assert section(raw, (2, 1), "HEADER") == b""
    assert section(raw, (1,), "HEADER") == b""


def test_message_whose_body_is_a_message() -> None:
    inner = b"Subject: inner\r\n\r\ninner body\r\n"
    raw = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    assert section(raw, (1,), None) == inner
    assert section(raw, (1,), "HEADER") == b"Subject: inner\r\n\r\n"
    assert section(raw, (1,), "TEXT") == b"inner body\r\n"
    assert section(raw, (1, 1), None) == b"inner body\r\n"
    assert section(raw, (1, 1), "MIME") == b"Subject: inner\r\n\r\n"
    assert section(raw, (1, 2), None) == b""
    assert section(raw, (), "HEADER.FIELDS", "subject") == b"Subject: outer\r\n\r\n"


def test_message_inside_digest() -> None:
    raw = s.DIGEST
    assert section(raw, (1,), "HEADER") == b"Subject: one\r\n\r\n"
    assert section(raw, (1, 1), None) == b"first message"
    assert section(raw, (2,), None) == b"not a message"


def test_lf_only_sections() -> None:
    raw = s.LF_ONLY
    assert section(raw, (), "HEADER.FIELDS", "subject") == b"Subject: unix\n\r\n"
    assert section(raw, (2,), None) == b"second"
    assert section(raw, (2,), "MIME") == b"Content-Type: text/plain\n\n"


def test_header_field_at_end_of_message_gets_a_line_end() -> None:
    raw = b"From: a@b.c\r\nSubject: last"
    assert section(raw, (), "HEADER.FIELDS", "subject") == b"Subject: last\r\n\r\n"
    assert section(raw, (), "TEXT") == b""


def test_header_block_and_find_part() -> None:
    raw = s.NESTED
    info = parse_message(raw)
    assert header_block(raw, info) == header_of(raw)
    assert header_block(raw, info, (2,)) == header_of(s.INNER)
    assert header_block(raw, info, (1,)) == b""
    found = find_part(info, (2, 2))
    assert found is not None and found[0].content_type == "image/png" and not found[1]
    assert find_part(info, ()) == (info.root, True)
    assert find_part(info, (9,)) is None


@pytest.mark.parametrize("name", sorted(s.SAMPLES))
def test_every_part_of_every_sample(name: str) -> None:
    raw = s.SAMPLES[name]
    info = parse_message(raw)
    for path in [(), (1,), (2,), (1, 1), (2, 1), (2, 2), (1, 2), (3,), (1, 1, 1)]:
        for text in (None, "MIME", "HEADER", "TEXT"):
            data = section_bytes(raw, info, path, text)
            assert data == b"" or data in raw
        fields = section_bytes(raw, info, path, "HEADER.FIELDS", ("subject", "content-type"))
        assert fields == b"" or fields.endswith(b"\r\n")


_NAMES = st.sampled_from(["From", "to", "SUBJECT", "Date", "X-A", "x-a.b", "Received", "Re+"])
_LINE = st.tuples(
    _NAMES,
    st.sampled_from(["", " ", "\t "]),
    st.text(alphabet="ab :\t\u00e9", max_size=12),
    st.lists(st.text(alphabet="xy :", max_size=8), max_size=2),
    st.sampled_from(["\r\n", "\n"]),
)


@given(
    st.lists(_LINE, max_size=12),
    st.lists(_NAMES, min_size=0, max_size=4),
    st.sampled_from([b"", b"body\r\n", b"\r\nbody\r\n"]),
)
@settings(max_examples=300, deadline=None)
def test_field_picker_agrees_with_header_fields(
    lines: list[tuple[str, str, str, list[str], str]], names: list[str], tail: bytes
) -> None:
    header = "".join(
        f"{name}{space}:{value}" + "".join(f"{eol} {more}" for more in folds) + eol
        for name, space, value, folds, eol in lines
    )
    raw = header.encode("utf-8") + tail
    info = parse_message(raw)
    wanted = tuple(names)
    expected = field_by_field(raw, info, (), wanted)
    assert section_bytes(raw, info, (), "HEADER.FIELDS", wanted, FieldPicker(wanted)) == expected
    assert section_bytes(raw, info, (), "HEADER.FIELDS", wanted) == expected


def test_field_picker_in_a_nested_message() -> None:
    for raw in (s.NESTED, s.DIGEST, s.LF_ONLY, s.NO_BODY, s.EIGHT_BIT):
        _check_every_part(raw)


def _check_every_part(raw: bytes) -> None:
    info = parse_message(raw)
    for part in [(), (1,), (2,), (2, 1), (3,)]:
        for names in [("From", "subject"), ("Content-Type",), ()]:
            expected = field_by_field(raw, info, part, names)
            got = section_bytes(raw, info, part, "HEADER.FIELDS", names, FieldPicker(names))
            assert got == expected, (part, names)


def field_by_field(
    raw: bytes, info: MessageInfo, part: tuple[int, ...], names: tuple[str, ...]
) -> bytes:
    """The reference: every field of the section's header matched and compared by name."""
    found = find_part(info, part)
    if found is None:
        return b""
    entity, is_message = found
    if not is_message:
        if entity.message is None:
            return b""
        entity = entity.message
    return header_fields(raw, entity, names, exclude=False)
