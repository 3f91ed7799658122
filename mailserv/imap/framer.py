"""Client input framing: the byte stream cut into complete commands, literals included,
within fixed bounds (RFC 3501 section 9, RFC 7888 literals).

Framing is apart from lexing (:mod:`mailserv.syntax.lexer`) so the server can answer a
synchronizing literal with ``+`` as soon as its header arrives, and switch to raw line mode
(IDLE's ``DONE``, AUTHENTICATE responses) between two events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- events -----------------------------------------------------------------------------------


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

    def take_unread(self) -> bytes:
        """Remove and return the input not read yet (COMPRESS: it is to be inflated first);
        call it between commands only."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        return data

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


__all__ = [
    "CommandFramer",
    "ContinueLiteral",
    "Frame",
    "FrameError",
    "FrameEvent",
    "Line",
]
