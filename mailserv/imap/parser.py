"""Client input: framing the byte stream into commands, parsing a command into tokens, and the
token helpers handlers use to read typed arguments (RFC 3501 section 9, RFC 7888 literals).

Framing and parsing are separate so the server can answer a synchronizing literal with ``+``
as soon as its header arrives, and switch to raw line mode (IDLE's ``DONE``, AUTHENTICATE
responses) between two events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from mailserv import errors
from mailserv.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, INBOX, RECENT, SEEN
from mailserv.syntax import utf7
from mailserv.syntax.dates import parse_date, parse_date_time
from mailserv.syntax.errors import ParseError
from mailserv.syntax.tokens import Atom, Command, ParenList, String, Token

# -- errors and events ------------------------------------------------------------------------


class UndecodableName(ParseError):
    """A mailbox name or pattern that is a valid astring but not modified UTF-7 or UTF-8."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete command: its lines with literal headers (``{n}\\r\\n``) and data inline,
    the final line ending removed."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class ContinueLiteral:
    """A synchronizing literal was accepted: send ``+ Ready for literal data`` now."""


@dataclass(frozen=True, slots=True)
class FrameError:
    """Input the framer refused.  Non-fatal errors already skipped the offending command;
    fatal ones leave the stream unreadable (send BYE and close)."""

    tag: str | None
    text: str
    code: str | None
    fatal: bool


@dataclass(frozen=True, slots=True)
class Line:
    """A raw line in line mode, line ending removed."""

    raw: bytes


FrameEvent = Frame | ContinueLiteral | FrameError | Line

# -- framing ----------------------------------------------------------------------------------

_HEAD = 256
"""Bytes kept from the start of a command to name its tag in errors."""
_TAIL = 96
"""Bytes kept from the end of a skipped line to spot a literal header there."""
_HUGE = 1 << 80
"""Size given to a literal whose length has too many digits to be real."""
_FRAME_TAG = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ')


def _literal_at_end(content: bytes, truncated: bool = False) -> tuple[int, bool] | None:
    """``(size, non_synchronizing)`` when the line announces a literal, else None.

    ``truncated`` means only the tail of the line is known: a digit run reaching its start is
    taken as a literal of unbounded size, so its data can never be read as commands.
    """
    if not content.endswith(b"}"):
        return None
    start = content.rfind(b"{")
    body = content[start + 1 : -1]
    nonsync = body.endswith(b"+")
    digits = body[:-1] if nonsync else body
    if not digits or not digits.isdigit():
        return None
    if start < 0 and not truncated:
        return None
    significant = digits.lstrip(b"0")
    if start < 0 or len(significant) > 20:
        return _HUGE, nonsync
    return int(significant or b"0"), nonsync


def _tag_of(head: bytes | None) -> str | None:
    match = _FRAME_TAG.match(head) if head else None
    return match.group(1).decode("ascii") if match else None


class CommandFramer:
    """Cuts the client byte stream into commands, literals included, within fixed bounds.

    ``feed`` only stores bytes; ``next_event`` does the work one event at a time, so the
    caller can switch to line mode (or stop reading) between two events.
    """

    def __init__(
        self, max_line: int, max_literal: int, max_command: int, max_literal_plus: int
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_command
        self.max_literal_plus = max_literal_plus
        # Never more than a line can hold, so the tag found does not depend on chunking.
        self._head_size = min(_HEAD, max_line + 1)
        self._buf = bytearray()
        self._scan = 0
        self._line_mode = False
        self._dead = False
        self._reset()

    def _reset(self) -> None:
        """Forget the command in progress (not the unread input)."""
        self._parts: list[bytes] = []
        self._size = 0
        self._head: bytes | None = None
        self._literal = 0
        self._discard = False
        self._skipping = False
        self._skip_command = False
        self._tail = b""

    # -- public -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Store received bytes; nothing is parsed until ``next_event``."""
        if not self._dead:
            self._buf += data

    def set_line_mode(self, on: bool) -> None:
        """In line mode each line is returned as a ``Line`` (no literals); call it between
        commands only."""
        self._line_mode = on

    def discard_buffer(self) -> None:
        """Drop unread input and any partial command (STARTTLS: no plaintext carried over)."""
        self._buf.clear()
        self._scan = 0
        self._reset()

    @property
    def pending(self) -> int:
        """Bytes fed but not yet consumed; lets the caller pause its transport."""
        return len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes held for the command in progress (at most ``max_command``)."""
        return sum(map(len, self._parts))

    @property
    def in_command(self) -> bool:
        """Whether a command has started but is not complete."""
        return bool(self._parts) or self._discard or self._literal > 0

    def next_event(self) -> FrameEvent | None:
        """The next event the input so far allows, or None when more bytes are needed."""
        while not self._dead:
            if self._literal:
                if not self._buf:
                    return None
                take = min(self._literal, len(self._buf))
                if not self._discard:
                    self._parts.append(bytes(self._buf[:take]))
                del self._buf[:take]
                self._literal -= take
                self._scan = 0
                continue
            if self._skipping:
                event, progressed = self._skip()
                if event is not None:
                    return event
                if not progressed:
                    return None
                continue
            end = self._buf.find(b"\n", self._scan)
            if end < 0:
                if len(self._buf) <= self.max_line + 1:
                    self._scan = len(self._buf)
                    return None
                event = self._overlong(len(self._buf))
            elif end - (end > 0 and self._buf[end - 1] == 0x0D) > self.max_line:
                event = self._overlong(end)
            else:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                self._scan = 0
                if line.endswith(b"\r"):
                    line = line[:-1]
                event = self._take_line(line)
            if event is not None:
                return event
        return None

    # -- internals ----------------------------------------------------------------------

    def _error(self, text: str, code: str | None = None, fatal: bool = False) -> FrameError:
        if fatal:
            self._dead = True
            self._buf.clear()
        return FrameError(_tag_of(self._head), text, code, fatal)

    def _take_line(self, line: bytes) -> FrameEvent | None:
        if self._line_mode and not self.in_command:
            return Line(line)
        if self._discard:
            return self._end_discarded_line(line, truncated=False)
        if not self._parts and not line.strip(b" "):
            return None  # stray blank line between commands
        if self._head is None:
            self._head = line[: self._head_size]
        self._size += len(line) + 2
        if self._size > self.max_command:
            error = self._error("Command too large", "TOOBIG")
            self._discard = True
            self._parts = []
            return self._end_discarded_line(line, truncated=False) or error
        literal = _literal_at_end(line)
        if literal is None:
            self._parts.append(line)
            frame = Frame(b"".join(self._parts))
            self._reset()
            return frame
        size, nonsync = literal
        if nonsync:
            if size > self.max_literal_plus:
                return self._error("Non-synchronizing literal too large", "TOOBIG", fatal=True)
            if self._size + size > self.max_command:
                self._discard = True
                self._literal = size
                self._parts = []
                return self._error("Command too large", "TOOBIG")
            self._parts.append(line + b"\r\n")
            self._size += size
            self._literal = size
            return None
        if size > self.max_literal:
            error = self._error(f"Literal too large (limit {self.max_literal} bytes)", "TOOBIG")
            self._reset()
            return error
        if self._size + size > self.max_command:
            error = self._error("Command too large", "TOOBIG")
            self._reset()
            return error
        self._parts.append(line + b"\r\n")
        self._size += size
        self._literal = size
        return ContinueLiteral()

    def _end_discarded_line(self, content: bytes, truncated: bool) -> FrameError | None:
        """A line of a command already answered with an error has ended: read past a
        non-synchronizing literal it announces, else the command is over."""
        literal = _literal_at_end(content, truncated)
        if literal is not None and literal[1]:
            if literal[0] > self.max_literal_plus:
                return self._error("Non-synchronizing literal too large", "TOOBIG", fatal=True)
            self._parts = []
            self._literal = literal[0]
            self._discard = True
            return None
        # No literal, or a synchronizing one the client will not send: no "+" was given.
        self._reset()
        return None

    def _overlong(self, stop: int) -> FrameError | None:
        """The current line exceeds max_line: report it, then skip it up to its line feed
        (``stop`` is where that is, or the end of the input so far)."""
        in_line_mode = self._line_mode and not self.in_command
        error: FrameError | None
        if in_line_mode:
            error = FrameError(None, "Line too long", None, False)
        else:
            if self._head is None:
                self._head = bytes(self._buf[: self._head_size])
            # A command already failing was reported once; its further lines go silently.
            error = None if self._discard else self._error("Command line too long")
            self._discard = True
            self._parts = []
        self._skipping = True
        self._skip_command = not in_line_mode
        self._tail = bytes(self._buf[max(0, stop - _TAIL) : stop])
        del self._buf[:stop]
        self._scan = 0
        return error

    def _skip(self) -> tuple[FrameEvent | None, bool]:
        end = self._buf.find(b"\n")
        if end < 0:
            if self._buf:
                self._tail = (self._tail + bytes(self._buf[-_TAIL:]))[-_TAIL:]
                self._buf.clear()
            return None, False
        content = (self._tail + bytes(self._buf[max(0, end - _TAIL) : end]))[-_TAIL - 1 :]
        del self._buf[: end + 1]
        self._scan = 0
        self._skipping = False
        self._tail = b""
        if not self._skip_command:
            return None, True
        if content.endswith(b"\r"):
            content = content[:-1]
        return self._end_discarded_line(content, truncated=True), True


# -- command parsing --------------------------------------------------------------------------

MAX_DEPTH = 16
"""Nesting of parenthesised lists."""
MAX_TOKENS = 100_000
"""Tokens (atoms, strings, lists) in one command."""
_UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE"})

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


# -- token helpers ----------------------------------------------------------------------------

_NOT_ASTRING = re.compile(r'[\x00-\x20\x7f(){%*"\\]')
_NOT_PATTERN = re.compile(r'[\x00-\x20\x7f(){"\\]')
_NUMBER = re.compile(r"[0-9]{1,20}")
_KEYWORD = re.compile(r"[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+")
SYSTEM_FLAGS = {name.lower(): name for name in (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT, RECENT)}
MAX_MAILBOX_NAME = 1024


def _describe(tok: Token) -> str:
    if isinstance(tok, Atom):
        return "an atom"
    if isinstance(tok, String):
        return "a literal" if tok.literal else "a quoted string"
    return "a parenthesised list"


def astring(tok: Token) -> bytes:
    """An atom or string argument as bytes."""
    if isinstance(tok, String):
        return tok.value
    if isinstance(tok, Atom):
        if _NOT_ASTRING.search(tok.value):
            raise ParseError(None, f"Invalid character in atom {tok.value[:40]!r}; quote it")
        return tok.value.encode("utf-8")
    raise ParseError(None, "Expected an atom or string, got a parenthesised list")


def text_atom(tok: Token) -> str:
    """An atom's text as sent (keywords, command options, sequence sets)."""
    if isinstance(tok, Atom):
        return tok.value
    raise ParseError(None, f"Expected an atom, got {_describe(tok)}")


def nstring(tok: Token) -> bytes | None:
    """A string, or None for NIL."""
    if isinstance(tok, String):
        return tok.value
    if isinstance(tok, Atom) and tok.value.upper() == "NIL":
        return None
    raise ParseError(None, f"Expected a string or NIL, got {_describe(tok)}")


def _number(tok: Token, limit: int, nonzero: bool, what: str) -> int:
    if isinstance(tok, Atom) and _NUMBER.fullmatch(tok.value):
        value = int(tok.value)
        if value > limit:
            raise ParseError(None, f"{what} out of range: {tok.value}")
        if nonzero and value == 0:
            raise ParseError(None, f"Expected a non-zero {what}")
        return value
    shown = tok.value[:40] if isinstance(tok, Atom) else _describe(tok)
    raise ParseError(None, f"Expected a {what}, got {shown!r}")


def number(tok: Token, *, nonzero: bool = False) -> int:
    """An unsigned 32-bit number (``nz-number`` when ``nonzero``)."""
    return _number(tok, 0xFFFFFFFF, nonzero, "number")


def number64(tok: Token, *, nonzero: bool = False) -> int:
    """An unsigned 63-bit number (mod-sequence values, RFC 7162)."""
    return _number(tok, (1 << 63) - 1, nonzero, "mod-sequence number")


def flag(text: str) -> str:
    """One flag: a system flag in canonical case, or a keyword as sent."""
    if text.startswith("\\"):
        canonical = SYSTEM_FLAGS.get(text.lower())
        if canonical is None:
            raise ParseError(None, f"Unknown system flag {text[:40]}")
        return canonical
    if not _KEYWORD.fullmatch(text):
        raise ParseError(None, f"Invalid flag keyword {text[:40]!r}")
    return text


def flags(tok: Token) -> frozenset[str]:
    """A flag list ``(\\Seen foo)`` or a single flag atom.  ``\\Recent`` is accepted here;
    STORE and APPEND must refuse it themselves."""
    if isinstance(tok, ParenList):
        found = []
        for item in tok.items:
            if not isinstance(item, Atom):
                raise ParseError(None, f"Expected a flag, got {_describe(item)}")
            found.append(flag(item.value))
        return frozenset(found)
    if isinstance(tok, Atom):
        return frozenset((flag(tok.value),))
    raise ParseError(None, f"Expected a flag list, got {_describe(tok)}")


def _name_text(raw: bytes, what: str, max_bytes: int) -> str:
    if len(raw) > max_bytes:
        raise ParseError(None, f"{what} too long (limit {max_bytes} bytes)")
    if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
        raise ParseError(None, f"{what} contains NUL, CR or LF")
    try:
        return utf7.decode(raw)
    except ValueError:
        raise UndecodableName(None, f"{what} is not valid modified UTF-7 or UTF-8") from None


def _inbox(name: str) -> str:
    if name.upper() == INBOX:
        return INBOX
    if name[:6].upper() == "INBOX/":
        return "INBOX/" + name[6:]
    return name


def mailbox(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME) -> str:
    """A mailbox name, decoded from modified UTF-7 (raw UTF-8 accepted), INBOX normalised.

    A well-formed astring that does not decode names no mailbox that can exist: that is
    ``MailboxNotFound`` (a tagged NO), not a syntax error.
    """
    try:
        return _inbox(_name_text(astring(tok), "Mailbox name", max_bytes))
    except UndecodableName as exc:
        raise errors.MailboxNotFound(f"No such mailbox: {exc.text}") from None


def new_mailbox(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME) -> str:
    """The name of a mailbox to create: like ``mailbox``, but one that does not decode
    cannot be created (``InvalidMailboxName``, a tagged NO [CANNOT])."""
    try:
        return _inbox(_name_text(astring(tok), "Mailbox name", max_bytes))
    except UndecodableName as exc:
        raise errors.InvalidMailboxName(exc.text) from None


def list_pattern(tok: Token, *, max_bytes: int = MAX_MAILBOX_NAME) -> str:
    """A LIST/LSUB reference or pattern: like ``mailbox`` but ``%`` and ``*`` may be atoms."""
    if isinstance(tok, Atom):
        if _NOT_PATTERN.search(tok.value):
            raise ParseError(None, f"Invalid character in pattern {tok.value[:40]!r}; quote it")
        raw = tok.value.encode("utf-8")
    else:
        raw = astring(tok)
    return _inbox(_name_text(raw, "Mailbox pattern", max_bytes))


def _date_text(tok: Token, what: str) -> str:
    if isinstance(tok, Atom):
        return tok.value
    if isinstance(tok, String):
        try:
            return tok.value.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError(None, f"Invalid {what}") from None
    raise ParseError(None, f"Expected a {what}, got {_describe(tok)}")


def search_date(tok: Token) -> date:
    """A SEARCH date ``d-Mon-yyyy``, bare or quoted."""
    try:
        return parse_date(_date_text(tok, "date"))
    except ParseError:
        raise
    except ValueError as exc:
        raise ParseError(None, str(exc)) from None


def date_time(tok: Token) -> datetime:
    """APPEND's ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` as an aware datetime."""
    if not isinstance(tok, String):
        raise ParseError(None, f"Expected a quoted date-time, got {_describe(tok)}")
    try:
        return parse_date_time(_date_text(tok, "date-time"))
    except ParseError:
        raise
    except ValueError as exc:
        raise ParseError(None, str(exc)) from None


__all__ = [
    "MAX_DEPTH",
    "MAX_TOKENS",
    "CommandFramer",
    "ContinueLiteral",
    "Frame",
    "FrameError",
    "FrameEvent",
    "Line",
    "ParseError",
    "astring",
    "date_time",
    "flag",
    "flags",
    "list_pattern",
    "mailbox",
    "nstring",
    "number",
    "number64",
    "parse_command",
    "parse_tokens",
    "search_date",
    "text_atom",
]
