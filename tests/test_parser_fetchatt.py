"""FETCH data items: parsing, response labels, content/\\Seen planning."""

from __future__ import annotations

import pytest

from mailserv.imap.fetchatt import (
    MAX_ITEMS,
    BodySection,
    ExtensionItem,
    FetchAttribute,
    FetchItem,
    Simple,
    needs_content,
    needs_info,
    parse_fetch_item,
    parse_fetch_items,
    sets_seen,
)
from mailserv.syntax.errors import ParseError
from mailserv.syntax.lexer import parse_command
from mailserv.syntax.tokens import Atom, ParenList, String


def items_of(argument: bytes) -> list[FetchItem]:
    return parse_fetch_items(parse_command(b"a FETCH 1 " + argument).args[1])


def section(
    part: tuple[int, ...] = (),
    text: str | None = None,
    fields: tuple[str, ...] = (),
    partial: tuple[int, int] | None = None,
    peek: bool = False,
) -> BodySection:
    return BodySection(peek, part, text, fields, partial)


def test_macros() -> None:
    assert items_of(b"ALL") == [
        Simple("FLAGS"),
        Simple("INTERNALDATE"),
        Simple("RFC822.SIZE"),
        Simple("ENVELOPE"),
    ]
    assert items_of(b"fast") == [Simple("FLAGS"), Simple("INTERNALDATE"), Simple("RFC822.SIZE")]
    assert items_of(b"Full")[-1] == Simple("BODY")


def test_simple_items() -> None:
    names = (
        "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER "
        "RFC822.TEXT"
    )
    assert items_of(b"(" + names.lower().encode() + b")") == [Simple(n) for n in names.split()]
    assert items_of(b"uid") == [Simple("UID")]


def test_duplicates_dropped_order_kept() -> None:
    assert items_of(b"(FLAGS UID flags)") == [Simple("FLAGS"), Simple("UID")]


def test_body_sections() -> None:
    assert items_of(b"BODY[]") == [section()]
    assert items_of(b"body.peek[TEXT]") == [section(text="TEXT", peek=True)]
    assert items_of(b"BODY[1.2.3]") == [section(part=(1, 2, 3))]
    assert items_of(b"BODY[1.HEADER]") == [section(part=(1,), text="HEADER")]
    assert items_of(b"BODY[2.mime]") == [section(part=(2,), text="MIME")]
    assert items_of(b"BODY[]<0.100>") == [section(partial=(0, 100))]
    assert items_of(b'BODY.PEEK[HEADER.FIELDS (From "To" x-spam)]<5.10>') == [
        section(text="HEADER.FIELDS", fields=("From", "To", "x-spam"), partial=(5, 10), peek=True)
    ]
    assert items_of(b"BODY[1.HEADER.FIELDS.NOT (Received)]") == [
        section(part=(1,), text="HEADER.FIELDS.NOT", fields=("Received",))
    ]


@pytest.mark.parametrize(
    ("argument", "text"),
    [
        (b"BINARY[1]", "Unknown FETCH item BINARY[1]"),
        (b"BINARY.PEEK[]<0.5>", "Unknown FETCH item BINARY.PEEK[]"),
        (b"BINARY.SIZE[1.2]", "Unknown FETCH item BINARY.SIZE[1.2]"),
        (b"BINARY", "Unknown FETCH item BINARY"),
        (b"(FLAGS MODSEQ)", "Unknown FETCH item MODSEQ"),
    ],
)
def test_binary_and_modseq_are_not_items(argument: bytes, text: str) -> None:
    """RFC 3516 BINARY is not offered; MODSEQ is an item only where the CONDSTORE module
    registers it (not for the bare parser)."""
    with pytest.raises(ParseError) as caught:
        items_of(argument)
    assert caught.value.text == text


def _halves(section: str | None, partial: tuple[int, int] | None) -> int:
    if section is None or not section.isdigit():
        raise ParseError(None, "XHALF needs a number")
    return int(section)


XHALF = FetchAttribute(
    "XHALF", _halves, lambda view, n: lambda meta, raw: b"XHALF %d" % (meta.size // 2)
)


def test_an_extension_adds_an_item() -> None:
    argument = parse_command(b"a FETCH 1 (UID xhalf[4])").args[1]
    items = parse_fetch_items(argument, {"XHALF": XHALF})
    assert items == [Simple("UID"), ExtensionItem(XHALF, 4)]
    assert not needs_content(items) and not sets_seen(items)
    with pytest.raises(ParseError, match="Unknown FETCH item XHALF"):
        parse_fetch_items(argument)
    with pytest.raises(ParseError, match="XHALF needs a number"):
        parse_fetch_item("XHALF", {"XHALF": XHALF})


@pytest.mark.parametrize(
    ("item", "label"),
    [
        ("BODY[]", b"BODY[]"),
        ("BODY.PEEK[]<10.20>", b"BODY[]<10>"),
        ("body.peek[header.fields (from TO)]", b"BODY[HEADER.FIELDS (from TO)]"),
        ('BODY[HEADER.FIELDS ("X(Y)" Z)]', b'BODY[HEADER.FIELDS ("X(Y)" Z)]'),
        ("BODY[1.2.TEXT]<0.1>", b"BODY[1.2.TEXT]<0>"),
        ("BODY[3.MIME]", b"BODY[3.MIME]"),
        ("rfc822.size", b"RFC822.SIZE"),
    ],
)
def test_labels(item: str, label: bytes) -> None:
    assert parse_fetch_item(item).label() == label


@pytest.mark.parametrize(
    ("argument", "text"),
    [
        (b"BOGUS", "Unknown FETCH item"),
        (b"BODY.PEEK", "needs a section"),
        (b"FLAGS[]", "takes no section"),
        (b"BODY[HEADER.FIELDS]", "needs a list"),
        (b"BODY[HEADER.FIELDS ()]", "list of header field names"),
        (b"BODY[HEADER (FROM)]", "Invalid section"),
        (b"BODY[MIME]", "MIME needs a part"),
        (b"BODY[0]", "start at 1"),
        (b"BODY[1.0.TEXT]", "start at 1"),
        (b"BODY[1.]", "Invalid section"),
        (b"BODY[.TEXT]", "Invalid section text"),
        (b"BODY[1TEXT]", "Invalid section"),
        (b"BODY[FOO]", "Invalid section text"),
        (b"BODY[1.2.3.HEADER.FIELDS.NOPE (A)]", "Invalid section text"),
        (b"BODY[]<0.0>", "must not be zero"),
        (b"BODY[]<0>", "Invalid FETCH item"),
        (b"BODY[]<1.99999999999>", "out of range"),
        (b"BODY[4294967296]", "out of range"),
        (b"BODY[HEADER.FIELDS (A:B)]", "Invalid header field name"),
        (b'BODY[HEADER.FIELDS ("")]', "Invalid header field name"),
        (b"BODY[HEADER.FIELDS (A (B))]", "Expected a header field name"),
        (b"BODY[HEADER.FIELDS (A) (B)]", "parenthesised list"),
        (b"()", "Empty FETCH item list"),
        (b"(FLAGS ALL)", "cannot be combined"),
        (b'(FLAGS "UID")', "Expected a FETCH item name"),
        (b"(FLAGS (UID))", "Expected a FETCH item name"),
        (b"B@D", "Invalid FETCH item"),
    ],
)
def test_errors(argument: bytes, text: str) -> None:
    with pytest.raises(ParseError, match=text.replace("(", r"\(")):
        items_of(argument)


def test_string_argument_rejected() -> None:
    with pytest.raises(ParseError):
        parse_fetch_items(String(b"FLAGS"))


def test_item_limit() -> None:
    many = ParenList(tuple(Atom(f"BODY[{n}]") for n in range(1, MAX_ITEMS + 2)))
    with pytest.raises(ParseError, match="Too many"):
        parse_fetch_items(many)
    assert len(parse_fetch_items(ParenList(many.items[:MAX_ITEMS]))) == MAX_ITEMS


def test_part_depth_limit() -> None:
    with pytest.raises(ParseError, match="too deeply"):
        parse_fetch_item("BODY[" + ".".join(["1"] * 65) + "]")
    assert parse_fetch_item("BODY[" + ".".join(["1"] * 64) + "]")


def test_sets_seen() -> None:
    assert sets_seen(items_of(b"BODY[]"))
    assert sets_seen(items_of(b"(FLAGS RFC822)"))
    assert sets_seen(items_of(b"RFC822.TEXT"))
    assert not sets_seen(items_of(b"BODY.PEEK[]"))
    assert not sets_seen(items_of(b"RFC822.HEADER"))
    assert not sets_seen(items_of(b"(FLAGS BODY BODYSTRUCTURE ENVELOPE)"))


def test_needs_content() -> None:
    assert not needs_content(items_of(b"FULL"))
    assert not needs_content(items_of(b"(UID FLAGS BODYSTRUCTURE RFC822.SIZE)"))
    for argument in (b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT", b"BODY.PEEK[1]"):
        assert needs_content(items_of(argument))


def test_which_items_read_the_parsed_message() -> None:
    """FLAGS, UID, RFC822.SIZE, INTERNALDATE, MODSEQ and SAVEDATE read no ``info``: a
    mailbox with ``fetch_flags`` (IFlagsMailbox) is asked for those alone."""
    from mailserv.imap.extensions import condstore, objectid, savedate

    extra = {a.name: a for a in (condstore.MODSEQ_ITEM, *savedate.EXTENSION.fetch_items)}
    extra.update({a.name: a for a in objectid.EXTENSION.fetch_items})
    light = b"(FLAGS UID RFC822.SIZE INTERNALDATE MODSEQ SAVEDATE)"
    assert not needs_info(parse_fetch_items(parse_command(b"a FETCH 1 " + light).args[1], extra))
    assert not needs_info(items_of(b"FAST"))
    for heavy in (b"ENVELOPE", b"BODYSTRUCTURE", b"BODY.PEEK[HEADER]", b"RFC822.HEADER", b"ALL"):
        assert needs_info(items_of(heavy)), heavy
    emailid = parse_command(b"a FETCH 1 (FLAGS EMAILID)").args[1]
    assert needs_info(parse_fetch_items(emailid, extra))
