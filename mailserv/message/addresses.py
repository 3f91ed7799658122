"""Address lists as RFC 3501 ENVELOPE address structures, groups included, and as the
text SEARCH FROM/TO/CC/BCC look in.

``email.utils.getaddresses`` parses mailboxes but flattens groups and trips over source
routes, so the list is first split at its top level here (quotes, comments and angle
brackets respected) and each mailbox is then handed to the stdlib parser.

A field is parsed once, when the message enters the store: :func:`parse_field` gives the
items, :func:`encode_items` their ENVELOPE form and :func:`search_field` the searchable
text: the unfolded, RFC 2047-decoded header value, then, one per line, the normalised
forms of each address (display name, ``local@domain`` without comments or folding
whitespace, ``Name <local@domain>``; for a group its name and its members).  A substring
test on that text is a test on each line, since no form holds a line break
(:data:`SEPARATOR`).
"""

from __future__ import annotations

import re
from email.utils import getaddresses, unquote

from twisted.logger import Logger

from mailserv.message.headers import decode_words, search_text, to_text, unfold
from mailserv.syntax.encode import nstring, string

MAX_ADDRESS_FIELD = 64 * 1024
"""Octets of one address field that are parsed (a bound against absurd headers)."""
MAX_COMMENTS = 64
"""Beyond this many comments in one mailbox they are dropped before the stdlib parser
sees them (it recurses once per nesting level)."""

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^>]*>?|\(|[,:;]|[^",:;<(]+', re.S)
_ROUTE = re.compile(r"<\s*(@[^<>:\"]*):")
_GROUP_END = b"(NIL NIL NIL NIL)"
_SPACE = re.compile(r"\s+")

SEPARATOR = "\n"
"""Between the forms of :func:`search_field`; never inside one."""

_log = Logger()

Mailbox = tuple[str | None, str | None, str, str | None]
"""(name, adl, mailbox, host) as text; ``None`` fields become NIL."""

Item = Mailbox | tuple[str, list[Mailbox]]
"""A mailbox, or a group: (group name, its mailboxes)."""


def parse_list(value: str) -> list[Item]:
    """The mailboxes and groups of an address-list header value (unfolded)."""
    items: list[Item] = []
    group: tuple[str, list[Mailbox]] | None = None
    piece: list[str] = []
    pos, size = 0, len(value)
    while pos < size:
        match = _TOKEN.match(value, pos)
        assert match is not None  # the alternatives cover every character
        token = match.group()
        if token == "(":
            stop = _comment_end(value, pos)
            piece.append(value[pos:stop])
            pos = stop
            continue
        pos = match.end()
        if token == ",":
            _flush(piece, items if group is None else group[1])
        elif token == ":" and group is None:
            group = (unquote("".join(piece).strip()), [])
            piece = []
        elif token == ";" and group is not None:
            _flush(piece, group[1])
            items.append(group)
            group = None
        else:
            piece.append(token)
    _flush(piece, items if group is None else group[1])
    if group is not None:
        items.append(group)
    return items


def _flush(piece: list[str], into: list[Item] | list[Mailbox]) -> None:
    """Parse the tokens of one mailbox (comments are whole tokens starting with ``(``).

    With an angle address the display name is the phrase before it: comments, also those
    inside the brackets, are not part of it (RFC 5322 3.4).  Without one, a comment is the
    name (the old ``addr (Real Name)`` form).
    """
    if not piece:
        return
    tokens = piece
    if any(token.startswith("<") for token in piece):
        tokens = [
            _drop_comments(token) if token.startswith("<") and '"' not in token else token
            for token in piece
            if not token.startswith("(")
        ]
    into.extend(_mailboxes("".join(tokens)))  # type: ignore[arg-type]
    piece.clear()


def _comment_end(value: str, pos: int) -> int:
    """Index after the (possibly nested) comment opening at ``pos``."""
    depth = 0
    size = len(value)
    while pos < size:
        char = value[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return size


def _mailboxes(text: str) -> list[Item]:
    """Mailboxes of a group-free list, via the stdlib parser (source routes kept as adl)."""
    adl = None
    route = _ROUTE.search(text) if "<" in text else None
    if route is not None:
        adl = "".join(route.group(1).split())
        text = text[: route.start()] + "<" + text[route.end() :]
    if text.count("(") > MAX_COMMENTS:
        text = _drop_comments(text)
    try:
        pairs = getaddresses([text])
    except Exception:  # the stdlib parser on hostile input: keep the other addresses
        return []
    found: list[Item] = []
    for name, address in pairs:
        if not name and not address:
            continue
        local, at, host = address.rpartition("@")
        if not at:
            local, host = address, ""
        found.append((name or None, adl, local, host or None))
    return found


def _drop_comments(text: str) -> str:
    out: list[str] = []
    pos = 0
    while (start := text.find("(", pos)) >= 0:
        out.append(text[pos:start])
        pos = _comment_end(text, start)
    out.append(text[pos:])
    return " ".join(out)


def parse_field(value: bytes, limit: int = MAX_ADDRESS_FIELD) -> list[Item]:
    """The mailboxes and groups of a raw (folded) address header value.

    Only the first ``limit`` octets are parsed.
    """
    return parse_list(unfold(value[:limit]).decode("utf-8", "surrogateescape"))


def encode_list(value: bytes | None, limit: int = MAX_ADDRESS_FIELD) -> bytes:
    """The ENVELOPE form of an address header: ``((name adl mailbox host) ...)`` or NIL.

    Only the first ``limit`` octets are parsed.
    """
    if value is None:
        return b"NIL"
    return encode_items(parse_field(value, limit))


def encode_items(items: list[Item]) -> bytes:
    """The ENVELOPE form of parsed address items (NIL for none)."""
    out: list[bytes] = []
    for item in items:
        if isinstance(item[1], list):
            out.append(b"(NIL NIL " + string(_octets(item[0])) + b" NIL)")
            out.extend(_address(member) for member in item[1])
            out.append(_GROUP_END)
        else:
            out.append(_address(item))  # type: ignore[arg-type]
    return b"(" + b"".join(out) + b")" if out else b"NIL"


def search_field(value: bytes | None, items: list[Item] | None = None) -> str:
    """What SEARCH FROM/TO/CC/BCC look in: the decoded value, then each address normalised.

    ``items`` are the field's parsed addresses (parsed here when None).  Lines are joined
    with :data:`SEPARATOR`; the first is the whole value (unfolded, RFC 2047-decoded), so a
    value that does not parse is still searched as it is.  '' when the field is absent.
    """
    if value is None:
        return ""
    lines = [search_text(value).replace(SEPARATOR, " ")]
    try:
        if items is None:
            items = parse_field(value)
        for item in items:
            if isinstance(item[1], list):
                _add(lines, display_name(item[0]))
                for member in item[1]:
                    _mailbox_forms(member, lines)
            else:
                _mailbox_forms(item, lines)  # type: ignore[arg-type]
    except Exception:  # a bug here must not lose the raw text; log it and keep that
        _log.failure("Cannot normalise an address field for SEARCH")
        del lines[1:]
    return SEPARATOR.join(dict.fromkeys(lines))  # each form once, the value first


def raw_search_line(text: str) -> str:
    """The first line of a :func:`search_field` text: the value as HEADER searches see it."""
    return text.partition(SEPARATOR)[0]


def _mailbox_forms(mailbox: Mailbox, lines: list[str]) -> None:
    name, _adl, local, host = mailbox
    address = plain_text(local + "@" + host if host else local)
    address = "".join(address.split()) if '"' not in address else address
    names = [display_name(name)]
    if names[0].endswith(")"):
        # The stdlib appends a mailbox's comments to its phrase ("Name (c)" for
        # 'Name <a (c)@b>'): the phrase alone is a form too.
        names.append(display_name(_without_last_comment(names[0])))
    _add(lines, names[0])
    _add(lines, address)
    for display in names:
        if display and address:
            _add(lines, display)
            _add(lines, f"{display} <{address}>")


def _without_last_comment(text: str) -> str:
    """``text`` without the parenthesised group (nesting respected) that ends it."""
    depth = 0
    for pos in range(len(text) - 1, -1, -1):
        char = text[pos]
        if char == ")":
            depth += 1
        elif char == "(":
            depth -= 1
            if depth == 0:
                return text[:pos]
    return text


def display_name(name: str | None) -> str:
    """A display or group name as people read it: decoded, unquoted, spaces collapsed."""
    if not name:
        return ""
    text = decode_words(plain_text(name))
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return _SPACE.sub(" ", text).strip()


def plain_text(text: str) -> str:
    """Parser text (8-bit octets as surrogates) as real text, like ``to_text`` does."""
    if text.isascii():
        return text
    return to_text(text.encode("utf-8", "surrogateescape"))


def _add(lines: list[str], form: str) -> None:
    if form:
        lines.append(form.replace(SEPARATOR, " "))


def _address(mailbox: Mailbox) -> bytes:
    name, adl, local, host = mailbox
    return b"(%s %s %s %s)" % (
        nstring(None if name is None else _octets(name)),
        nstring(None if adl is None else _octets(adl)),
        string(_octets(local)),
        nstring(None if host is None else _octets(host)),
    )


def _octets(text: str | None) -> bytes:
    return (text or "").encode("utf-8", "surrogateescape")
