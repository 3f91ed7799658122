"""Text helpers of the state checker: sequence sets, clipping, the fast response parser."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bench.harness import ParseError, Value, parse_values

_TAGGED = re.compile(rb"^([^\s*+]\S*) (OK|NO|BAD)\b ?(.*)$", re.S | re.I)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")


def clip(data: bytes | str, limit: int = 240) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def uid_set(text: str) -> list[int]:
    """``1:3,7`` → [1, 2, 3, 7] (no ``*``)."""
    out: list[int] = []
    for item in text.split(","):
        if ":" in item:
            a, b = sorted(int(x) for x in item.split(":"))
            out += range(a, b + 1)
        elif item:
            out.append(int(item))
    return out


def seq_numbers(text: str, count: int) -> list[int]:
    """A sequence set (``*`` is ``count``) → its numbers."""
    return uid_set(text.replace("*", str(count)))


def compact(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7] → ``1:3,7``."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


_SIMPLE_TOKEN = re.compile(rb"[()]|[^\s()]+")


def parse_simple(data: bytes) -> list[Value]:
    """:func:`parse_values` for the common case of no strings and no literals, faster."""
    if b'"' in data or b"{" in data or b"[" in data:
        return parse_values(data)[0]
    stack: list[list[Value]] = [[]]
    for token in _SIMPLE_TOKEN.findall(data):
        if token == b"(":
            stack.append([])
        elif token == b")":
            if len(stack) == 1:
                raise ParseError("unbalanced parenthesis")
            inner = stack.pop()
            stack[-1].append(inner)
        elif token.isdigit():
            stack[-1].append(int(token))
        elif token.upper() == b"NIL":
            stack[-1].append(None)
        else:
            stack[-1].append(token.decode("utf-8", "replace"))
    if len(stack) != 1:
        raise ParseError("unbalanced parenthesis")
    return stack[0]


def flag_names(value: Value) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(f) if not isinstance(f, bytes) else f.decode("utf-8", "replace") for f in value]
