"""The text SEARCH FROM/TO/CC/BCC look in (``addresses.search_field``), and how it reaches
every store: parse_message fills it once, the stored record format changed with it.

Generated address lists (hypothesis) mix quoted, plain and RFC 2047 display names,
``addr (Name)`` forms, comments where RFC 5322 allows CFWS, folding and groups; each
mailbox must come out as ``local@domain``, its name and ``Name <local@domain>``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserv.message import parse
from mailserv.message.addresses import SEPARATOR, encode_list, raw_search_line, search_field
from mailserv.message.headers import search_text
from mailserv.message.parse import parse_message
from mailserv.message.store import MARKER, UnknownFormat, dumps, loads


def lines(value: bytes) -> list[str]:
    return search_field(value).split(SEPARATOR)


# -- examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (b"<user-from (comment)@ (comment) domain.org>", ["user-from@domain.org"]),
        (b"user-from(c1) @(c2)domain.org(c3)", ["user-from@domain.org"]),
        (b'"Real Name" <a@b.org>', ["Real Name", "a@b.org", "Real Name <a@b.org>"]),
        (b"a@b.org (Real Name)", ["Real Name", "a@b.org", "Real Name <a@b.org>"]),
        (b"Real\r\n  Name <a@\r\n b.org>", ["Real Name", "a@b.org", "Real Name <a@b.org>"]),
        (b"Friends: a@b.org, c@d.org;", ["Friends", "a@b.org", "c@d.org"]),
        (b"Undisclosed recipients:;", ["Undisclosed recipients"]),
        (b"=?utf-8?q?J=C3=B6rg?= <j@x.de>", ["J\u00f6rg", "j@x.de", "J\u00f6rg <j@x.de>"]),
        (b'"=?utf-8?q?J=C3=B6rg?=" <j@x.de>', ["J\u00f6rg", "J\u00f6rg <j@x.de>"]),
        (b"J\xf6rg <j@x.de>", ["J\u00f6rg <j@x.de>"]),  # 8-bit Latin-1 as to_text reads it
        (b"<@hop.example:route@x.org>", ["route@x.org"]),
    ],
)
def test_forms(value: bytes, expected: list[str]) -> None:
    found = lines(value)
    assert found[0] == search_text(value)
    for form in expected:
        assert form in found, (form, found)


def test_absent_empty_and_unparsable_values() -> None:
    assert search_field(None) == ""
    assert search_field(b"") == ""
    for value in (b'"unterminated <broken@@@ (((', b"<<@>>, ,,;:", b"(((", b"\\"):
        assert raw_search_line(search_field(value)) == search_text(value)


def test_each_form_once_and_no_line_breaks_inside() -> None:
    text = search_field(b"a@b.org, a@b.org, =?utf-8?q?x=0Ay?= <c@d.org>")
    found = text.split(SEPARATOR)
    assert len(found) == len(set(found))
    assert "x y" in found and "x y <c@d.org>" in found


def test_parse_message_fills_the_fields_and_keeps_header_text_first() -> None:
    raw = (
        b"From: <user-from (comment)@ (comment) domain.org>\r\n"
        b'To: "Real Name" <a@b.org>\r\nCc: a@b.org (Real Name)\r\n'
        b"Bcc: Friends: a@b.org,\r\n c@d.org;\r\nSubject: s\r\n\r\nbody\r\n"
    )
    info = parse_message(raw)
    assert raw_search_line(info.from_) == "<user-from (comment)@ (comment) domain.org>"
    assert "user-from@domain.org" in info.from_.split(SEPARATOR)
    assert "Real Name <a@b.org>" in info.to.split(SEPARATOR)
    assert "Real Name <a@b.org>" in info.cc.split(SEPARATOR)
    assert {"Friends", "a@b.org", "c@d.org"} <= set(info.bcc.split(SEPARATOR))
    assert raw_search_line(info.bcc) == "Friends: a@b.org, c@d.org;"


def test_a_message_the_parser_gives_up_on_keeps_its_header_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """parse_message stores a message it fails on as opaque text; SEARCH FROM/TO/... and
    SUBJECT still see the raw header values."""

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the MIME scanner")

    monkeypatch.setattr(parse, "_entity", broken)
    raw = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: a@b.org (Real\r\n Name)\r\n\r\nx\r\n"
    info = parse_message(raw)
    assert info.envelope.startswith(b"(NIL NIL NIL")
    assert info.subject == "Gr\u00fc\u00dfe"
    assert info.from_ == "a@b.org (Real Name)"
    assert info.to == info.cc == info.bcc == ""


def test_records_of_the_previous_format_are_parsed_again() -> None:
    """Stores hold MI1 records whose address fields lack the forms: loads refuses them,
    and every persistent backend then parses the message again."""
    record = dumps(parse_message(b"From: a@b.org (Name)\r\n\r\nx\r\n"))
    assert record.startswith(MARKER)
    with pytest.raises(UnknownFormat):
        loads(b"MI1\n" + record[4:])


# -- generated address lists ----------------------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LOWER + "0123456789"


def _text(first: str, rest: str, most: int) -> st.SearchStrategy[str]:
    """A character of ``first``, then up to ``most`` of ``rest`` (as ``from_regex`` would
    give, drawn many times faster)."""
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=most))


_ATOM = _text(_ALNUM, _ALNUM + "_+=-", 7)
_LOCAL = st.lists(_ATOM, min_size=1, max_size=3).map(".".join)
_DOMAIN = st.lists(_text(_ALNUM, _ALNUM, 7), min_size=1, max_size=3).map(".".join)
_WORD = _text(_LOWER + _LOWER.upper(), _ALNUM + _LOWER.upper(), 7)
_WIDE_WORD = st.text(
    st.characters(codec="utf-8", categories=["L"], exclude_characters="=?_"),
    min_size=1,
    max_size=6,
)
_COMMENT = st.text(_ALNUM + _LOWER.upper() + " .,", max_size=10).map(lambda t: f"({t})")


@dataclass
class Box:
    local: str
    domain: str
    name: str  # as people read it ('' for none)
    text: str  # as written in the header


def _fold(text: str, draw: st.DrawFn) -> str:
    """Some of the spaces become folding (CRLF + WSP)."""
    out = []
    for char in text:
        if char == " " and draw(st.booleans()):
            out.append(draw(st.sampled_from(["\r\n ", "\r\n\t", " \r\n  "])))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def mailbox(draw: st.DrawFn) -> Box:
    local, domain = draw(_LOCAL), draw(_DOMAIN)

    def cfws() -> str:
        if not draw(st.booleans()):
            return draw(st.sampled_from(["", " "]))
        return " " + draw(_COMMENT) + " "

    spec = f"{local}{cfws()}@{cfws()}{domain}"
    kind = draw(st.sampled_from(["bare", "angle", "phrase", "quoted", "encoded", "comment"]))
    if kind in ("bare", "angle"):
        text = spec if kind == "bare" else f"<{spec}>"
        return Box(local, domain, "", _fold(text, draw))
    if kind == "encoded":
        name = " ".join(draw(st.lists(_WIDE_WORD, min_size=1, max_size=3)))
        if draw(st.booleans()):
            word = "=?utf-8?b?" + base64.b64encode(name.encode()).decode() + "?="
        else:
            octets = name.encode()
            word = "=?UTF-8?Q?" + "".join(f"={b:02X}" for b in octets) + "?="
        return Box(local, domain, name, _fold(f"{word} <{spec}>", draw))
    name = " ".join(draw(st.lists(_WORD, min_size=1, max_size=3)))
    if kind == "phrase":
        return Box(local, domain, name, _fold(f"{name} <{spec}>", draw))
    if kind == "quoted":
        return Box(local, domain, name, _fold(f'"{name}" <{spec}>', draw))
    return Box(local, domain, name, _fold(f"{local}@{domain} ({name})", draw))


@st.composite
def address_list(draw: st.DrawFn) -> tuple[str, list[Box], list[str]]:
    items: list[str] = []
    boxes: list[Box] = []
    groups: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 4)) == 0:
            members = draw(st.lists(mailbox(), max_size=3))
            group = " ".join(draw(st.lists(_WORD, min_size=1, max_size=2)))
            items.append(f"{group}: " + ", ".join(m.text for m in members) + ";")
            boxes += members
            groups.append(group)
        else:
            box = draw(mailbox())
            items.append(box.text)
            boxes.append(box)
    return draw(st.sampled_from([", ", ",\r\n ", " ,\r\n\t"])).join(items), boxes, groups


@settings(max_examples=300, deadline=None)
@given(address_list())
def test_every_mailbox_is_found_by_its_forms(case: tuple[str, list[Box], list[str]]) -> None:
    text, boxes, groups = case
    value = text.encode()
    found = lines(value)
    assert found[0] == search_text(value)
    forms = set(found)
    for box in boxes:
        address = f"{box.local}@{box.domain}"
        assert address in forms, (text, address, found)
        if box.name:
            assert box.name in forms, (text, box.name, found)
            assert f"{box.name} <{address}>" in forms, (text, found)
    for group in groups:
        assert group in forms, (text, group, found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_value_keeps_its_text_and_never_raises(value: bytes) -> None:
    text = search_field(value)
    assert raw_search_line(text) == search_text(value).replace(SEPARATOR, " ")
    found = text.split(SEPARATOR)
    assert len(found) == len(set(found))


@pytest.mark.parametrize(
    ("value", "envelope"),
    [
        # Comments beside or inside an angle address are not its display name.
        (b"<user-from (comment)@ (comment) domain.org>", b'((NIL NIL "user-from" "domain.org"))'),
        (b"(c) Real Name <a@b.org>", b'(("Real Name" NIL "a" "b.org"))'),
        (b'"Real (kept)" <a@b.org> (dropped)', b'(("Real (kept)" NIL "a" "b.org"))'),
        # Without one, the comment is the name (the old form).
        (b"a@b.org (Real Name)", b'(("Real Name" NIL "a" "b.org"))'),
        (b"G: (x) B <c@d.org>;", b'((NIL NIL "G" NIL)("B" NIL "c" "d.org")(NIL NIL NIL NIL))'),
    ],
)
def test_envelope_names_leave_comments_out(value: bytes, envelope: bytes) -> None:
    assert encode_list(value) == envelope
