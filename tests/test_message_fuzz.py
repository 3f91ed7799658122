"""Hypothesis: parsing and section extraction never fail, whatever the bytes."""

from __future__ import annotations

from typing import cast

import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import ILogObserver, globalLogPublisher

from mailserv.message.info import MessageInfo, Part
from mailserv.message.parse import parse_message
from mailserv.message.sections import section_bytes
from mailserv.message.store import dumps, loads
from mailserv.message.text import body_text, header_text, header_values

SEEDS = [raw for raw in s.SAMPLES.values() if raw] + [s.realistic(1)[:6000]]
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--",
    b":",
    b";",
    b" ",
    b"\t",
    b'"',
    b"(",
    b")",
    b"<",
    b">",
    b",",
    b"@",
    b"=?",
    b"?=",
    b"\xff",
    b"\x00",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/digest; boundary=b\r\n",
    b"\r\n--b\r\n",
    b"\r\n--b--\r\n",
    b"--=_alt_42\r\n",
    b"--outer\r\n",
    b"--fwd--",
    b"Content-Transfer-Encoding: base64\r\n",
    b"=?utf-8?b?",
    b"=?bogus?q?",
    b"charset*0*=utf-8''%E2;",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "splice"]))
        if action == "insert":
            raw[pos:pos] = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=8)))
        elif action == "delete":
            del raw[pos : pos + draw(st.integers(1, 64))]
        elif action == "replace":
            raw[pos : pos + 1] = draw(st.binary(min_size=1, max_size=1))
        else:
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other)))
            raw[pos:pos] = other[start : start + draw(st.integers(1, 400))]
    return bytes(raw)


def check_part(part: Part, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.body_start <= part.end <= hi
    last = part.body_start
    for child in part.parts:
        assert child.header_start >= last
        check_part(child, part.body_start, part.end)
        last = child.end
    if part.message is not None:
        check_part(part.message, part.body_start, part.end)
    assert part.content_type == part.content_type.lower() and "/" in part.content_type
    assert part.encoding == part.encoding.lower()


def paths(part: Part, prefix: tuple[int, ...] = (), depth: int = 0) -> list[tuple[int, ...]]:
    out = [prefix + (1,), prefix + (99,)]
    children = part.parts or (part.message.parts if part.message else ())
    for number, child in enumerate(children[:4], 1):
        out.append(prefix + (number,))
        if depth < 3:
            out.extend(paths(child, prefix + (number,), depth + 1))
    if part.message is not None and depth < 3:
        out.extend(paths(part.message, prefix + (1,), depth + 1))
    return out


def check(raw: bytes) -> MessageInfo:
    events: list[dict[str, object]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        info = parse_message(raw)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert not [e for e in events if "log_failure" in e], "parse_message fell back"
    check_part(info.root, 0, len(raw))
    assert info.root.header_start == 0 and info.root.end == len(raw)
    # the IMAP bytes must be well-formed: imapclient parses them
    envelope = s.imap_parse(info.envelope)
    assert len(envelope) == 10
    s.imap_parse(info.body)
    s.imap_parse(info.bodystructure)
    assert loads(dumps(info)) == info
    for path in [(), *paths(info.root)]:
        for text in (None, "MIME", "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            data = section_bytes(raw, info, path, text, ("subject", "content-type"))
            if text is None or text in ("MIME", "HEADER", "TEXT"):
                assert data == b"" or data in raw
    body_text(raw, info)
    header_text(raw, info)
    header_values(raw, info, "subject")
    return info


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(mutated())
def test_mutated_messages(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(
    st.lists(
        st.sampled_from(TOKENS + [b"Subject: x", b"From: a@b", b"To: g: a@b;", b"body"]),
        max_size=60,
    )
)
def test_token_soup(tokens: list[bytes]) -> None:
    check(b"".join(tokens))


@FUZZ
@given(mutated(), st.lists(st.integers(-2, 5), max_size=5), st.text(max_size=20))
def test_section_bytes_never_raises(raw: bytes, path: list[int], text: str) -> None:
    info = parse_message(raw)
    for kind in (text, text.upper(), None):
        section_bytes(raw, info, tuple(path), kind, (text,))


def test_an_eight_bit_transfer_encoding() -> None:
    """Found by test_mutated_messages: ``Content-Transfer-Encoding:\\xff`` upper-cased as
    text gave "Ÿ", which latin-1 cannot encode, and the parser fell back."""
    info = check(b"Content-Transfer-Encoding:\xff base64\r\nSubject: x\r\n\r\nbody\r\n")
    assert b"{1}\r\n\xff" in info.bodystructure
