"""FETCH data items (RFC 3501 6.4.5): the argument → item objects.

The parser keeps ``BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>`` as one atom; this module
gives it structure once per command, and says what the items need (content or metadata
only, whether they set ``\\Seen``) so FETCH can plan its backend calls.  Items of
extensions (``FetchAttribute``, registered by an extension module) are parsed by their
own ``parse`` and rendered by their own ``render``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailserv.imap.arguments import astring
from mailserv.interfaces import MessageMeta
from mailserv.syntax import encode
from mailserv.syntax.errors import ParseError
from mailserv.syntax.lexer import parse_tokens
from mailserv.syntax.tokens import Atom, ParenList, String, Token

if TYPE_CHECKING:
    from mailserv.imap.view import SelectedView

MAX_ITEMS = 100
MAX_PART_DEPTH = 64
MAX_FIELDS = 1000
_MAX_NUMBER = 0xFFFFFFFF

SIMPLE_ITEMS = frozenset(
    {
        "UID",
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
        "BODY",
        "BODYSTRUCTURE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
    }
)
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
RESERVED = SIMPLE_ITEMS | {"BODY.PEEK", *MACROS}
"""RFC 3501's item names: an extension cannot register these."""
SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})
_CONTENT_SIMPLE = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_SEEN_SIMPLE = frozenset({"RFC822", "RFC822.TEXT"})

_ITEM = re.compile(
    r"([A-Za-z0-9.]+)(?:\[(.*)\](?:<([0-9]+)\.([0-9]+)>)?)?",
    re.DOTALL,
)
_PART = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_TEXT_AND_LIST = re.compile(r"([A-Za-z.]*)(?: (.*))?", re.DOTALL)
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ":"


@dataclass(frozen=True, slots=True)
class Simple:
    """An item without section: ``UID``, ``FLAGS``, ``ENVELOPE``, ``RFC822`` ..."""

    name: str

    def label(self) -> bytes:
        return self.name.encode("ascii")


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[...]``/``BODY.PEEK[...]``.

    ``text`` is HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or None (the whole
    part); ``fields`` are the header names as sent (compare them case-insensitively);
    ``partial`` is ``(origin, count)``.
    """

    peek: bool
    part: tuple[int, ...]
    text: str | None
    fields: tuple[str, ...]
    partial: tuple[int, int] | None

    def section(self) -> bytes:
        """The section spec between the brackets, as the response writes it."""
        spec = ".".join(map(str, self.part))
        if self.text:
            spec = f"{spec}.{self.text}" if spec else self.text
        out = spec.encode("ascii")
        if self.fields:
            names = b" ".join(encode.astring(name.encode("ascii")) for name in self.fields)
            out += b" (" + names + b")"
        return out

    def label(self) -> bytes:
        """The name the response gives the item: no ``.PEEK``, partial origin only."""
        label = b"BODY[" + self.section() + b"]"
        if self.partial is not None:
            label += b"<%d>" % self.partial[0]
        return label


Renderer = Callable[[MessageMeta, bytes], bytes]
"""One item of one ``* n FETCH`` response, from the message's metadata and its bytes
(empty unless an item of the command needs content)."""
LateRenderer = Callable[[MessageMeta, bytes], bytes | Awaitable[bytes]]
"""A renderer that may answer later (an awaitable): BINARY decoding a large part in slices."""


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """A FETCH item an extension adds: its name, how its atom is read, how it is written."""

    name: str
    parse: Callable[[str | None, tuple[int, int] | None], Hashable]
    """``(section or None, partial or None)`` → the item's argument; raises ParseError."""
    render: Callable[[SelectedView, Hashable], LateRenderer]
    """Compiled once per command from the argument."""
    needs_content: bool = False
    sets_seen: bool = False
    options: Callable[[Hashable, Sequence[str]], Hashable] | None = None
    """Reads the parenthesised words that may follow the item (RFC 8970's ``PREVIEW
    (LAZY)``) into its argument; None: the item takes none."""
    content_for: Callable[[Hashable, MessageMeta], bool] | None = None
    """For an item that does not always need the message's bytes: whether it needs them
    for this message (they are then read for that message only)."""
    reads_info: bool = True
    """Whether rendering it reads the message's parsed ``info`` (MODSEQ, SAVEDATE: no)."""


@dataclass(frozen=True, slots=True)
class ExtensionItem:
    """An item of a registered ``FetchAttribute``, with its parsed argument."""

    attribute: FetchAttribute
    argument: Hashable

    @property
    def name(self) -> str:
        return self.attribute.name


FetchItem = Simple | BodySection | ExtensionItem
FetchAttributes = Mapping[str, FetchAttribute]
_NONE: FetchAttributes = {}


def parse_fetch_items(tok: Token, extra: FetchAttributes = _NONE) -> list[FetchItem]:
    """The FETCH argument (an item, a macro, or a list of items) → items, duplicates dropped."""
    if isinstance(tok, Atom):
        macro = MACROS.get(tok.value.upper())
        if macro is not None:
            return [Simple(name) for name in macro]
        return [parse_fetch_item(tok.value, extra)]
    if isinstance(tok, ParenList):
        if not tok.items:
            raise ParseError(None, "Empty FETCH item list")
        if len(tok.items) > MAX_ITEMS:
            raise ParseError(None, f"Too many FETCH items (limit {MAX_ITEMS})")
        items: list[FetchItem] = []
        for item in tok.items:
            if isinstance(item, ParenList) and items:
                items[-1] = _with_options(items[-1], item)
                continue
            if not isinstance(item, Atom):
                raise ParseError(None, "Expected a FETCH item name")
            if item.value.upper() in MACROS:
                raise ParseError(None, f"{item.value.upper()} cannot be combined with other items")
            items.append(parse_fetch_item(item.value, extra))
        return list(dict.fromkeys(items))
    raise ParseError(None, "Expected FETCH items, got a string")


def takes_options(tok: Token, extra: FetchAttributes) -> bool:
    """Whether ``tok`` is a single item that a parenthesised list of options may follow
    (``FETCH 1 PREVIEW (LAZY)``, not a modifier list)."""
    if not isinstance(tok, Atom):
        return False
    attribute = extra.get(tok.value.upper())
    return attribute is not None and attribute.options is not None


def _with_options(item: FetchItem, options: ParenList) -> FetchItem:
    if not isinstance(item, ExtensionItem) or item.attribute.options is None:
        raise ParseError(None, "Expected a FETCH item name")
    words = [word.value for word in options.items if isinstance(word, Atom)]
    if len(words) != len(options.items):
        raise ParseError(None, f"Expected {item.name} options")
    return ExtensionItem(item.attribute, item.attribute.options(item.argument, words))


def parse_fetch_item(text: str, extra: FetchAttributes = _NONE) -> FetchItem:
    """One item atom, e.g. ``BODY.PEEK[1.HEADER.FIELDS (FROM)]<0.100>``."""
    match = _ITEM.fullmatch(text)
    if match is None:
        raise ParseError(None, f"Invalid FETCH item {text[:60]!r}")
    name, section, origin, count = match.groups()
    name = name.upper()
    partial = _partial(origin, count) if origin is not None else None
    attribute = extra.get(name)
    if attribute is not None:
        return ExtensionItem(attribute, attribute.parse(section, partial))
    if section is None:
        if name in SIMPLE_ITEMS:
            return Simple(name)
        if name == "BODY.PEEK":
            raise ParseError(None, f"{name} needs a section in brackets")
    elif name in ("BODY", "BODY.PEEK"):
        part, section_text, fields = _body_section(section)
        return BodySection(name == "BODY.PEEK", part, section_text, fields, partial)
    elif name in SIMPLE_ITEMS:
        raise ParseError(None, f"{name[:40]} takes no section")
    shown = name[:40] if section is None else f"{name[:40]}[{section[:40]}]"
    raise ParseError(None, f"Unknown FETCH item {shown}")


def _number(text: str, what: str) -> int:
    digits = text.lstrip("0")
    if len(digits) > 10 or int(digits or "0") > _MAX_NUMBER:
        raise ParseError(None, f"{what} out of range")
    return int(digits or "0")


def _partial(origin: str, count: str) -> tuple[int, int]:
    size = _number(count, "Partial length")
    if size == 0:
        raise ParseError(None, "Partial length must not be zero")
    return _number(origin, "Partial origin"), size


def _part_numbers(text: str) -> tuple[int, ...]:
    if not _PART.fullmatch(text):
        raise ParseError(None, f"Invalid section part {text[:40]!r}")
    numbers = text.split(".")
    if len(numbers) > MAX_PART_DEPTH:
        raise ParseError(None, "Section part nested too deeply")
    part = tuple(_number(n, "Section part number") for n in numbers)
    if 0 in part:
        raise ParseError(None, "Section part numbers start at 1")
    return part


def _body_section(spec: str) -> tuple[tuple[int, ...], str | None, tuple[str, ...]]:
    """``1.2.HEADER.FIELDS (A B)`` → (part, text, fields)."""
    part: tuple[int, ...] = ()
    rest = spec
    match = _PART.match(spec)
    if match is not None:
        part = _part_numbers(match.group())
        rest = spec[match.end() :]
        if rest:
            if not rest.startswith(".") or len(rest) == 1:
                raise ParseError(None, f"Invalid section {spec[:60]!r}")
            rest = rest[1:]
    split = _TEXT_AND_LIST.fullmatch(rest)
    if split is None:
        raise ParseError(None, f"Invalid section {spec[:60]!r}")
    text = split.group(1).upper() or None
    field_list = split.group(2)
    if text is not None and text not in SECTION_TEXTS:
        raise ParseError(None, f"Invalid section text {split.group(1)[:40]}")
    if text == "MIME" and not part:
        raise ParseError(None, "MIME needs a part number")
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if field_list is None:
            raise ParseError(None, f"{text} needs a list of header field names")
        return part, text, _fields(field_list)
    if field_list is not None:
        raise ParseError(None, f"Invalid section {spec[:60]!r}")
    return part, text, ()


def _fields(text: str) -> tuple[str, ...]:
    tokens = parse_tokens(text.encode("utf-8"))
    if len(tokens) != 1 or not isinstance(tokens[0], ParenList) or not tokens[0].items:
        raise ParseError(None, "Expected a parenthesised list of header field names")
    if len(tokens[0].items) > MAX_FIELDS:
        raise ParseError(None, f"Too many header field names (limit {MAX_FIELDS})")
    names = []
    for item in tokens[0].items:
        if not isinstance(item, Atom | String):
            raise ParseError(None, "Expected a header field name")
        raw = astring(item)
        name = raw.decode("ascii", "replace")
        if not raw.isascii() or not _FIELD_NAME.fullmatch(name):
            raise ParseError(None, f"Invalid header field name {name[:40]!r}")
        names.append(name)
    return tuple(names)


def sets_seen(items: Iterable[FetchItem]) -> bool:
    """Whether fetching the items sets ``\\Seen`` (non-peek sections, RFC822, RFC822.TEXT)."""
    return any(_sets_seen(item) for item in items)


def _sets_seen(item: FetchItem) -> bool:
    if isinstance(item, BodySection):
        return not item.peek
    if isinstance(item, ExtensionItem):
        return item.attribute.sets_seen
    return item.name in _SEEN_SIMPLE


def needs_content(items: Iterable[FetchItem]) -> bool:
    """Whether any item needs the message bytes (the rest come from stored metadata)."""
    return any(_needs_content(item) for item in items)


_NO_INFO_SIMPLE = frozenset({"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE"})


def needs_info(items: Iterable[FetchItem]) -> bool:
    """Whether any item reads the messages' parsed ``info`` (else metadata without it
    will do: ``IFlagsMailbox``)."""
    return any(_needs_info(item) for item in items)


def _needs_info(item: FetchItem) -> bool:
    if isinstance(item, ExtensionItem):
        return item.attribute.reads_info
    return not isinstance(item, Simple) or item.name not in _NO_INFO_SIMPLE


def _needs_content(item: FetchItem) -> bool:
    if isinstance(item, BodySection):
        return True
    if isinstance(item, ExtensionItem):
        return item.attribute.needs_content
    return item.name in _CONTENT_SIMPLE
