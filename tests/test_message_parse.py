"""parse_message: ENVELOPE, BODY, BODYSTRUCTURE, part offsets and search fields."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)

from mailserv.message.addresses import raw_search_line
from mailserv.message.info import MessageInfo, Part
from mailserv.message.parse import MAX_DEPTH, MAX_PARTS, parse_message

SAMPLES, imap_parse, realistic = s.SAMPLES, s.imap_parse, s.realistic


def parsed(raw: bytes) -> tuple[MessageInfo, Any, Any, Any]:
    info = parse_message(raw)
    return info, imap_parse(info.envelope), imap_parse(info.body), imap_parse(info.bodystructure)


def check_offsets(raw: bytes, part: Part, lo: int, hi: int) -> int:
    """Every entity lies inside its parent, in order; returns the number of entities."""
    assert lo <= part.header_start <= part.body_start <= part.end <= hi
    count = 1
    last = part.body_start
    for child in part.parts:
        assert child.header_start >= last
        count += check_offsets(raw, child, part.body_start, part.end)
        last = child.end
    if part.message is not None:
        assert part.message.header_start == part.body_start
        count += check_offsets(raw, part.message, part.body_start, part.end)
    return count


def body_of(raw: bytes, part: Part) -> bytes:
    return raw[part.body_start : part.end]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_is_well_formed(name: str) -> None:
    raw = SAMPLES[name]
    info, envelope, _, _ = parsed(raw)
    assert len(envelope) == 10
    check_offsets(raw, info.root, 0, len(raw))
    assert info.root.header_start == 0 and info.root.end == len(raw)
    assert info.body.startswith(b"(") and info.bodystructure.startswith(b"(")


def test_plain_envelope() -> None:
    info, env, body, structure = parsed(s.PLAIN)
    alice = ((b"Alice Example", None, b"alice", b"example.org"),)
    assert env == (
        b"Mon, 3 Jun 2024 10:11:12 +0200",
        b"Lunch on Friday?",
        alice,
        alice,
        alice,
        ((b"Bob", None, b"bob", b"example.net"), (None, None, b"carol", b"example.com")),
        ((b"Dave, the Boss", None, b"dave", b"example.com"),),
        None,
        b"<plan-0@example.net>",
        b"<lunch-1@example.org>",
    )
    text = b"Hi Bob,\r\n\r\nlunch on Friday at noon?\r\n-- \r\nAlice\r\n"
    assert body == (b"TEXT", b"PLAIN", (b"CHARSET", b"US-ASCII"), None, None, b"7BIT", len(text), 5)
    assert structure == body + (None, None, None, None)
    assert body_of(s.PLAIN, info.root) == text
    assert info.root.content_type == "text/plain" and info.root.charset == "us-ascii"


def test_plain_search_fields() -> None:
    info = parse_message(s.PLAIN)
    assert info.subject == "Lunch on Friday?"
    # The header's text first, then each address normalised (one form a line).
    assert info.from_.split("\n") == [
        "Alice Example <alice@example.org>",
        "Alice Example",
        "alice@example.org",
    ]
    assert info.to.split("\n") == [
        "Bob <bob@example.net>, carol@example.com",
        "Bob",
        "bob@example.net",
        "Bob <bob@example.net>",
        "carol@example.com",
    ]
    assert info.cc.split("\n") == [
        '"Dave, the Boss" <dave@example.com>',
        "Dave, the Boss",
        "dave@example.com",
        "Dave, the Boss <dave@example.com>",
    ]
    assert info.bcc == ""
    assert info.sent == datetime(2024, 6, 3, 10, 11, 12, tzinfo=timezone(timedelta(hours=2)))


def test_alternative() -> None:
    info, _, body, structure = parsed(s.ALTERNATIVE)
    plain, html, subtype = body
    assert subtype == b"ALTERNATIVE"
    assert plain[:6] == (b"TEXT", b"PLAIN", (b"CHARSET", b"iso-8859-1"), None, None)[:5] + (
        b"QUOTED-PRINTABLE",
    )
    assert html[:3] == (b"TEXT", b"HTML", (b"CHARSET", b"utf-8"))
    root = info.root
    assert [p.content_type for p in root.parts] == ["text/plain", "text/html"]
    assert [p.encoding for p in root.parts] == ["quoted-printable"] * 2
    assert [p.charset for p in root.parts] == ["iso-8859-1", "utf-8"]
    assert body_of(s.ALTERNATIVE, root.parts[0]) == b"Caf=E9 cr=E8me, only today!"
    assert plain[6] == len(b"Caf=E9 cr=E8me, only today!") and plain[7] == 1
    assert structure[2:] == (b"ALTERNATIVE", (b"BOUNDARY", b"=_alt_42"), None, None, None)
    assert structure[0] == plain + (None, None, None, None)
    # the preamble and epilogue belong to the multipart body, not to a part
    assert body_of(s.ALTERNATIVE, root).startswith(b"This is a multi-part")


def test_attachment_nested_multipart_and_extension_data() -> None:
    info, _, body, structure = parsed(s.ATTACHMENT)
    alternative, pdf = info.root.parts
    assert alternative.content_type == "multipart/alternative"
    assert [p.content_type for p in alternative.parts] == ["text/plain", "text/html"]
    assert body_of(s.ATTACHMENT, alternative.parts[0]) == b"See the attached report."
    assert body_of(s.ATTACHMENT, alternative.parts[1]) == b"<p>See the attached report.</p>"
    assert alternative.parts[1].charset == "us-ascii"
    encoded = body_of(s.ATTACHMENT, pdf)
    assert s.base64.b64decode(encoded) == s.PDF
    assert pdf.encoding == "base64" and pdf.charset is None
    (b_alt, b_pdf, b_sub), (_, s_pdf, s_sub, params, dsp, lang, loc) = body, structure
    assert b_sub == s_sub == b"MIXED" and params == (b"BOUNDARY", b"outer")
    assert (dsp, lang, loc) == (None, None, None)
    assert b_alt[-1] == b"ALTERNATIVE" and b_alt[1][:2] == (b"TEXT", b"HTML")
    assert b_alt[1][2] == (b"CHARSET", b"US-ASCII")
    assert b_pdf == (
        b"APPLICATION",
        b"PDF",
        (b"NAME", b"report.pdf"),
        b"<report@example.org>",
        b"Quarterly report",
        b"BASE64",
        len(encoded),
    )
    assert s_pdf == b_pdf + (
        None,
        (b"ATTACHMENT", (b"FILENAME", b"report.pdf", b"SIZE", b"1033")),
        (b"en", b"de"),
        b"http://example.org/report.pdf",
    )


def test_encapsulated_message() -> None:
    info, _, body, structure = parsed(s.NESTED)
    text, forwarded = info.root.parts
    assert body_of(s.NESTED, text) == b"Forwarding this."
    assert forwarded.content_type == "message/rfc822"
    assert body_of(s.NESTED, forwarded) == s.INNER[:-2]  # CRLF before "--fwd--" is the boundary's
    inner = forwarded.message
    assert inner is not None and inner.content_type == "multipart/mixed"
    assert [p.content_type for p in inner.parts] == ["text/plain", "image/png"]
    assert body_of(s.NESTED, inner.parts[0]) == b"Original text."
    b_msg = body[1]
    assert b_msg[:7] == (b"MESSAGE", b"RFC822", None, None, None, b"7BIT", len(s.INNER) - 2)
    envelope, inner_body, lines = b_msg[7:]
    assert envelope[1] == b"Original"
    assert envelope[2] == ((b"Carol", None, b"carol", b"example.com"),)
    assert inner_body[0] == (
        b"TEXT",
        b"PLAIN",
        (b"CHARSET", b"US-ASCII"),
        None,
        None,
        b"7BIT",
        14,
        1,
    )
    assert inner_body[1] == (b"IMAGE", b"PNG", None, None, None, b"BASE64", 12)
    assert inner_body[2] == b"MIXED"
    assert lines == s.INNER.count(b"\n")
    s_msg = structure[1]
    assert s_msg[7] == envelope
    assert s_msg[8][2:] == (b"MIXED", (b"BOUNDARY", b"in"), None, None, None)
    assert s_msg[9:] == (lines, None, (b"INLINE", None), None, None)


def test_message_global_is_encapsulated_too() -> None:
    raw = b"Content-Type: message/global\r\n\r\nSubject: inner\r\n\r\nbody\r\n"
    info, _, body, _ = parsed(raw)
    assert info.root.message is not None
    assert body[:2] == (b"MESSAGE", b"GLOBAL") and body[7][1] == b"inner"


def test_rfc2047_headers_raw_in_envelope_decoded_for_search() -> None:
    info, env, _, _ = parsed(s.ENCODED_WORDS)
    assert env[1].startswith(b"=?utf-8?b?w4ltw6lsaWU=?= and")
    assert env[2] == ((b"=?utf-8?q?J=C3=B6rg_M=C3=BCller?=", None, b"joerg", b"example.de"),)
    assert env[5][1] == (b"=?koi8-r?b?8NLJ18XU?=", None, b"ivan", b"example.ru")
    assert info.subject == "Émélie and Zoë again"
    assert raw_search_line(info.from_) == "Jörg Müller <joerg@example.de>"
    assert raw_search_line(info.to) == "François <francois@example.fr>, Привет <ivan@example.ru>"
    assert "\n\u041f\u0440\u0438\u0432\u0435\u0442\nivan@example.ru\n" in info.to
    assert raw_search_line(info.cc) == "日本語 <taro@example.jp>"
    # unknown charset: bytes kept, no error
    assert raw_search_line(info.bcc) == "abc <x@example.com>"
    assert info.sent is not None and info.sent.utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
        (b"=?utf-8?q?caf=E9?=", "caf\ufffd"),
        (b"=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        (b"=?iso-8859-1*fr?q?caf=E9?=", "café"),
        (b"plain =?us-ascii?q?x?= \\u1234", "plain x \\u1234"),
        (b"=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=", "€"),
    ],
)
def test_bad_encoded_words_do_not_raise(value: bytes, expected: str) -> None:
    info = parse_message(b"Subject: " + value + b"\r\n\r\n")
    assert info.subject == expected


def test_groups_routes_and_defaults() -> None:
    info, env, _, _ = parsed(s.GROUPS)
    alice = ((b"Alice", None, b"alice", b"example.org"),)
    assert env[0] is None  # no Date:
    assert env[2] == alice
    assert env[3] == ((b"Secretary", None, b"sec", b"example.org"),)
    assert env[4] == alice  # Reply-To present but empty: defaults to From
    assert env[5] == ((None, None, b"undisclosed-recipients", None), (None, None, None, None))
    assert env[6] == (
        (None, None, b"Team", None),
        (None, None, b"bob", b"example.net"),
        (b"Carol C.", None, b"carol", b"example.com"),
        (None, None, None, None),
        (None, None, b"dave", b"example.com"),
    )
    assert env[7] == (
        (None, b"@relay1.example,@relay2.example", b"eve", b"example.com"),
        (None, None, b"local-only", None),
    )
    assert info.sent is None


def test_quoted_group_name_and_unterminated_group() -> None:
    _, env, _, _ = parsed(b'To: "My Team": a@b.c, d@e.f\r\n\r\n')
    assert env[5] == (
        (None, None, b"My Team", None),
        (None, None, b"a", b"b.c"),
        (None, None, b"d", b"e.f"),
        (None, None, None, None),
    )


def test_eight_bit_headers_pass_through_as_literals() -> None:
    info, env, body, _ = parsed(s.EIGHT_BIT)
    assert b"{5}\r\nGr\xfc\xdfe" in info.envelope
    assert env[0] == b"not a date at all"
    assert env[1] == b"Gr\xfc\xdfe"
    assert env[2] == ((b"J\xf6rg", None, b"joerg", b"example.de"),)
    assert env[5] == ((b"K\xc3\xb6ln", None, b"koeln", b"example.de"),)
    assert info.subject == "Grüße"
    assert info.from_ == "Jörg <joerg@example.de>\nJörg\njoerg@example.de"
    assert raw_search_line(info.to) == "Köln <koeln@example.de>"
    assert info.sent is None
    assert body[6:] == (6, 1)


def test_lf_only_line_endings() -> None:
    info, env, body, _ = parsed(s.LF_ONLY)
    assert env[1] == b"unix"
    first, second = info.root.parts
    assert body_of(s.LF_ONLY, first) == b"first"
    assert body_of(s.LF_ONLY, second) == b"second"
    assert s.LF_ONLY[first.header_start : first.body_start] == b"Content-Type: text/plain\n\n"
    assert body[0][6:] == (5, 1)


def test_headers_only_and_empty() -> None:
    info, env, body, _ = parsed(s.NO_BODY)
    assert env[1] == b"headers only"
    assert info.root.body_start == info.root.end == len(s.NO_BODY)
    assert body[6:] == (0, 0)
    info, env, body, _ = parsed(b"")
    assert env == (None,) * 10 and body[6:] == (0, 0)
    assert info.root == Part(0, 0, 0, "text/plain", "7bit", "us-ascii")


def test_last_header_line_without_newline() -> None:
    info = parse_message(b"From: a@b.c\r\nSubject: last")
    assert info.subject == "last" and info.root.body_start == info.root.end


def test_missing_blank_line_starts_the_body_at_the_first_non_header_line() -> None:
    raw = b"Subject: x\r\nthis is not a header\r\nmore\r\n"
    info = parse_message(raw)
    assert info.subject == "x"
    assert body_of(raw, info.root) == b"this is not a header\r\nmore\r\n"


def test_body_without_header() -> None:
    info = parse_message(b"\r\njust a body\r\n")
    assert info.root.body_start == 2 and info.envelope == b"(" + b" ".join([b"NIL"] * 10) + b")"


def test_broken_boundary_gets_a_placeholder_part() -> None:
    info, _, body, structure = parsed(s.BROKEN_BOUNDARY)
    assert info.root.parts == ()
    empty = (b"TEXT", b"PLAIN", (b"CHARSET", b"US-ASCII"), None, None, b"7BIT", 0, 0)
    assert body == (empty, b"MIXED")
    assert structure == (
        empty + (None,) * 4,
        b"MIXED",
        (b"BOUNDARY", b"never-used"),
        None,
        None,
        None,
    )


def test_multipart_without_boundary_parameter() -> None:
    info, _, body, _ = parsed(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n")
    assert info.root.parts == () and body[-1] == b"MIXED"


def test_unclosed_multipart_and_transport_padding() -> None:
    info = parse_message(s.UNCLOSED)
    one, two = info.root.parts
    assert body_of(s.UNCLOSED, one) == b"one"
    assert body_of(s.UNCLOSED, two) == b"two\r\n"  # no close delimiter: runs to the end


def test_boundary_prefix_is_not_a_delimiter() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n\r\nx\r\n--bb\r\nstill x\r\n--b--\r\n"
    )
    info = parse_message(raw)
    (only,) = info.root.parts
    assert body_of(raw, only) == b"x\r\n--bb\r\nstill x"


def test_empty_parts_and_adjacent_delimiters() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\nx\r\n--b--"
    info = parse_message(raw)
    empty, x = info.root.parts
    assert empty.header_start == empty.body_start == empty.end
    assert body_of(raw, x) == b"x"


def test_digest_children_default_to_message() -> None:
    info, _, body, _ = parsed(s.DIGEST)
    first, second = info.root.parts
    assert first.content_type == "message/rfc822" and first.message is not None
    assert second.content_type == "text/plain"
    assert body[0][:2] == (b"MESSAGE", b"RFC822") and body[0][7][1] == b"one"
    assert body[2] == b"DIGEST"


def test_rfc2231_parameters_are_merged_and_kept_encoded() -> None:
    _, _, body, structure = parsed(s.RFC2231)
    assert body[2] == (
        b"TITLE*",
        b"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it%21",
    )
    assert structure[8] == (b"ATTACHMENT", (b"FILENAME*", b"utf-8''%E2%82%AC%20rates.txt"))


def test_charset_from_rfc2231_and_invalid_content_type() -> None:
    info = parse_message(b"Content-Type: text/plain; charset*=us-ascii'en'UTF-8\r\n\r\nx")
    assert info.root.charset == "utf-8"
    info, _, body, _ = parsed(b"Content-Type: text\r\n\r\nx")
    assert info.root.content_type == "text/plain" and body[:3] == (
        b"TEXT",
        b"PLAIN",
        (b"CHARSET", b"US-ASCII"),
    )
    info = parse_message(b"Content-Type: Text/HTML\r\nContent-Transfer-Encoding: BASE64\r\n\r\n")
    assert info.root.content_type == "text/html" and info.root.encoding == "base64"
    info = parse_message(b'Content-Transfer-Encoding: "Quoted-Printable" (odd)\r\n\r\n')
    assert info.root.encoding == "quoted-printable"
    assert b'"QUOTED-PRINTABLE"' in info.body


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (b"Tue, 4 Jun 2024 08:00:00 -0000", datetime(2024, 6, 4, 8, 0, tzinfo=UTC)),
        (b"4 Jun 2024 08:00 +0130", datetime(2024, 6, 4, 6, 30, tzinfo=UTC)),
        (b"Tue, 4 Jun 2024 08:00:00 +9999", None),
        (b"Tue, 31 Feb 2024 08:00:00 +0000", None),
        (b"", None),
        (b"yesterday", None),
    ],
)
def test_sent_date(date: bytes, expected: datetime | None) -> None:
    sent = parse_message(b"Date: " + date + b"\r\n\r\n").sent
    assert sent == expected
    if sent is not None:
        assert sent.tzinfo is not None


def test_empty_date_and_subject_are_empty_strings_not_nil() -> None:
    env = imap_parse(parse_message(b"Date:\r\nSubject: \r\nTo:\r\n\r\n").envelope)
    assert env[0] == b"" and env[1] == b"" and env[5] is None


def test_first_occurrence_wins_and_folding_is_removed() -> None:
    raw = b"Subject: one\r\n  two\r\nSUBJECT: three\r\nmessage-id:\r\n <x@y>\r\n\r\n"
    info, env, _, _ = parsed(raw)
    assert env[1] == b"one  two" and env[9] == b"<x@y>" and info.subject == "one  two"


def _nest(depth: int) -> bytes:
    raw = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(depth):
        if level % 2:
            raw = b"Content-Type: message/rfc822\r\n\r\n" + raw
        else:
            b = b"b%d" % level
            raw = (
                b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
                + raw + b"\r\n--" + b + b"--\r\n"
            )  # fmt: skip
    return raw


def test_absurd_nesting_is_bounded() -> None:
    raw = _nest(200)
    info = parse_message(raw)
    depth = 0
    part: Part | None = info.root
    while part is not None:
        depth += 1
        part = part.parts[0] if part.parts else part.message
    assert depth <= MAX_DEPTH + 2
    assert check_offsets(raw, info.root, 0, len(raw)) <= MAX_DEPTH + 2
    assert b'"APPLICATION" "OCTET-STREAM"' in info.body


def test_part_count_is_bounded() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + (
        b"--x\r\n\r\npart\r\n" * (MAX_PARTS * 3)
    )
    info, _, body, _ = parsed(raw)
    assert check_offsets(raw, info.root, 0, len(raw)) == MAX_PARTS
    assert len(body) == MAX_PARTS  # MAX_PARTS - 1 children and the subtype


def test_many_false_boundaries_are_bounded() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--xy\r\n" * 300_000
    info = parse_message(raw)
    assert info.root.parts == ()


def test_hostile_header_values() -> None:
    raw = (
        b"From: " + b"(" * 5000 + b"a@b\r\n"
        b"To: a:" + b"(" * 50_000 + b"\r\n"
        b"Content-Type: multipart/mixed" + b"; a=b" * 20_000 + b"; boundary=z\r\n"
        b"\r\n--z\r\n\r\nx\r\n--z--\r\n"
    )
    info, env, _, _ = parsed(raw)
    assert env[2] is None or isinstance(env[2], tuple)
    assert info.root.content_type == "multipart/mixed"


@pytest.mark.parametrize("seed", range(40))
def test_offsets_agree_with_the_stdlib_parser(seed: int) -> None:
    raw = realistic(seed)
    info = parse_message(raw)
    ours: list[tuple[str, bytes]] = []

    def walk(part: Part) -> None:
        if part.parts:
            for child in part.parts:
                walk(child)
        else:
            ours.append((part.content_type, body_of(raw, part)))

    walk(info.root)
    theirs = [
        (p.get_content_type(), cast(str, p.get_payload()).encode("ascii", "surrogateescape"))
        for p in email.message_from_bytes(raw, policy=email.policy.compat32).walk()
        if not p.is_multipart()
    ]
    assert ours == theirs
    assert info.root.content_type.startswith(("text/", "multipart/"))
