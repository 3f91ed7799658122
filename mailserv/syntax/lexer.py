"""The lexer: a framed command (or a run of arguments) cut into tokens, i.e. atoms,
quoted strings, literals and parenthesised lists (RFC 3501 section 9).

It knows the grammar of tokens, not what a command's arguments mean: the server's argument
readers give tokens their types.
"""

from __future__ import annotations

import re

from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, Command, ParenList, String, Token

MAX_DEPTH = 16
"""Nesting of parenthesised lists."""
MAX_TOKENS = 100_000
"""Tokens (atoms, strings, lists) in one command."""
_UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD"})

_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*")

# One lexeme at a time; the group that matched says which (see ``_tokens``).
_LEX = re.compile(
    # 1: a run of plain ASCII atoms, each after its space (the common case, split in bulk)
    rb'((?: [^\x00-\x20\x7f-\xff(){"\[]++)+)(?=[ )]|\Z)'
    rb"|( ?)(?:"  # 2: the separating space, if any, then one of:
    rb"(~?)\{([0-9]+)(\+?)\}\r?\n"  # 3-5 literal header
    rb'|((?:[^\x00-\x20\x7f(){"\[]++'  # 6 atom: plain characters,
    rb'|\[(?:[^\]\["\r\n\x00]++|"(?:[^"\\\r\n\x00]|\\[^\r\n\x00])*+")*+\]'  # [section],
    rb"|\[)++)"  # or a lone "["
    rb'|"((?:[^"\\\r\n\x00]++|\\["\\])*+)"'  # 7 quoted string
    rb'|\(((?:[^\x00-\x20\x7f-\xff(){"\[]++(?: [^\x00-\x20\x7f-\xff(){"\[]++)*+)?+)\)'  # 8 flat
    rb"|(\()"  # 9
    rb"|(\))"  # 10
    rb"|(.))",  # 11 anything else is an error
    re.DOTALL,
)
_QUOTED_PREFIX = re.compile(rb'"(?:[^"\\\r\n\x00]++|\\["\\])*+')
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def parse_command(raw: bytes) -> Command:
    """A framed command line → ``Command``; ``ParseError`` for anything malformed."""
    if not raw.strip(b" "):
        raise ParseError(None, "Empty command line")
    match = _TAG.match(raw)
    if match is None or (match.end() < len(raw) and raw[match.end()] != 0x20):
        raise ParseError(None, "Invalid tag")
    tag = match.group().decode("ascii")
    pos = match.end() + 1
    name, pos = _command_name(raw, pos, tag)
    uid = False
    if name == "UID":
        if pos >= len(raw) or not raw[pos:].strip(b" "):
            raise ParseError(tag, "UID needs a command")
        name, pos = _command_name(raw, pos + 1, tag)
        if name not in _UID_COMMANDS:
            raise ParseError(tag, f"UID {name[:40]} is not a command")
        uid = True
    return Command(tag, name, _tokens(raw, pos, tag), uid)


def _command_name(raw: bytes, pos: int, tag: str) -> tuple[str, int]:
    match = _NAME.match(raw, pos)
    if match is None:
        if pos >= len(raw) or not raw[pos:].strip(b" "):
            raise ParseError(tag, "Missing command name")
        raise ParseError(tag, "Invalid command name")
    end = match.end()
    if end < len(raw) and raw[end] != 0x20:
        raise ParseError(tag, "Invalid command name")
    return match.group().decode("ascii").upper(), end


def parse_tokens(data: bytes) -> tuple[Token, ...]:
    """Arguments alone (no tag, no command name), separated by single spaces."""
    if not data:
        return ()
    return _tokens(b" " + data, 0, None)


def _tokens(raw: bytes, pos: int, tag: str | None) -> tuple[Token, ...]:
    """Arguments from ``raw[pos:]``, which is empty or starts with the separating space."""
    stack: list[list[Token]] = [[]]
    current = stack[0]
    after_open = False  # else just after a token (or the command name): a space must follow
    count = 0
    end = len(raw)
    while pos < end:
        for match in _LEX.finditer(raw, pos):
            kind = match.lastindex
            if kind == 1:
                if after_open:
                    raise ParseError(tag, "Unexpected space after '('")
                values = match.group(1).decode("ascii").split(" ")
                count += len(values) - 1
                if count > MAX_TOKENS:
                    raise ParseError(tag, "Too many arguments")
                current.extend(map(Atom, values[1:]))
                continue
            spaced = match.end(2) > match.start(2)
            if kind == 10:
                if spaced:
                    raise ParseError(
                        tag, "Unexpected space " + ("after '('" if after_open else "before ')'")
                    )
                if len(stack) == 1:
                    raise ParseError(tag, "Unexpected ')'")
                items = stack.pop()
                current = stack[-1]
                current.append(ParenList(tuple(items)))
                after_open = False
                continue
            if kind == 11:
                start = match.start(11)
                if raw[start] != 0x20:
                    raise ParseError(tag, _bad_input(raw, start))
                if len(stack) == 1 and not raw[start:].strip(b" "):
                    return tuple(current)  # lenient: trailing spaces
                if after_open and not spaced:
                    raise ParseError(tag, "Unexpected space after '('")
                raise ParseError(tag, "Extra space between arguments")
            if spaced == after_open:
                if after_open:
                    raise ParseError(tag, "Unexpected space after '('")
                raise ParseError(tag, "Missing space between arguments")
            count += 1
            if count > MAX_TOKENS:
                raise ParseError(tag, "Too many arguments")
            after_open = False
            if kind == 6:
                current.append(Atom(_atom_text(match.group(6), tag)))
            elif kind == 7:
                value = match.group(7)
                if b"\\" in value:
                    value = _ESCAPE.sub(rb"\1", value)
                current.append(String(value))
            elif kind == 8:  # a list of plain atoms, in one go
                if len(stack) > MAX_DEPTH:
                    raise ParseError(tag, "Parenthesised lists nested too deeply")
                inner = match.group(8)
                values = inner.decode("ascii").split(" ") if inner else []
                count += len(values)
                if count > MAX_TOKENS:
                    raise ParseError(tag, "Too many arguments")
                current.append(ParenList(tuple(map(Atom, values))))
            elif kind == 9:
                if len(stack) > MAX_DEPTH:
                    raise ParseError(tag, "Parenthesised lists nested too deeply")
                current = []
                stack.append(current)
                after_open = True
            else:  # literal header; its data follows
                digits = match.group(4).lstrip(b"0")
                size = int(digits or b"0") if len(digits) <= 20 else end
                start = match.end()
                if start + size > end:
                    raise ParseError(tag, "Literal data truncated")
                current.append(String(raw[start : start + size], True, bool(match.group(3))))
                pos = start + size
                break  # resume lexing after the data
        else:
            break
    if len(stack) > 1:
        raise ParseError(tag, "Missing ')'")
    return tuple(current)


def _atom_text(value: bytes, tag: str | None) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(tag, "Invalid UTF-8 in atom") from None


def _bad_input(raw: bytes, pos: int) -> str:
    """Why the byte at ``pos`` cannot start an argument."""
    byte = raw[pos]
    if byte == 0x22:
        match = _QUOTED_PREFIX.match(raw, pos)
        stop = match.end() if match else pos + 1
        if stop >= len(raw) or raw[stop] in b"\r\n":
            return "Unterminated quoted string"
        if raw[stop] == 0x5C:
            return 'Invalid escape in quoted string (only \\\\ and \\" are allowed)'
        return "NUL byte in quoted string"
    if byte == 0x7B:
        if re.match(rb"\{[0-9]+\+?\}\Z", raw[pos:]):
            return "Literal header without data"
        return "Invalid literal (a literal header {n} must end the line)"
    if byte in b"\r\n":
        return "Unexpected line break"
    if byte == 0:
        return "NUL byte in command"
    return f"Invalid character 0x{byte:02x}"


__all__ = ["MAX_DEPTH", "MAX_TOKENS", "parse_command", "parse_tokens"]
