"""The error raised for malformed IMAP input."""

from __future__ import annotations


class ParseError(ValueError):
    """Malformed client input; the engine answers BAD with ``text`` (tagged when ``tag``)."""

    def __init__(self, tag: str | None, text: str) -> None:
        super().__init__(text)
        self.tag = tag
        self.text = text
