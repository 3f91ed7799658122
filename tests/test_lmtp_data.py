"""LMTP's DATA reader (``_Message``) on its own: the same message whatever the reads it
comes in, and each read's work bounded by that read (nothing taken in is looked at again,
so the final dot costs no more than any other read).  No timing: what is kept is checked.

The protocol around it is tested over real sockets in test_delivery_lmtp.py.
"""

from __future__ import annotations

import pytest

from mailserv.delivery.lmtp import _END, _Message

pytestmark = pytest.mark.one_backend

HEAD = b"Received: by test\r\n"
SENT = (
    b"Subject: dots\r\n\r\n"
    b"..stuffed\r\n"
    b".one dot (RFC 5321 4.5.2: the first goes)\r\n"
    b"..\r\n"
    b".\rnot the end\r\n"
    b"\r\n"
    b"last line\r\n"
    b".\r\n"
    b"NOOP\r\n"
)
TEXT = (
    b"Subject: dots\r\n\r\n"
    b".stuffed\r\n"
    b"one dot (RFC 5321 4.5.2: the first goes)\r\n"
    b".\r\n"
    b"\rnot the end\r\n"
    b"\r\n"
    b"last line\r\n"
)


def _read(reads: list[bytes], limit: int = 1 << 20) -> tuple[_Message, bytes]:
    """The message the reads carry, and what came after its final dot."""
    message = _Message(HEAD, limit)
    for n, data in enumerate(reads, 1):
        if message.take(data):
            return message, message.rest + b"".join(reads[n:])
    raise AssertionError("no final dot seen")


def test_every_split_in_two_and_byte_by_byte() -> None:
    splits = [[SENT[:at], SENT[at:]] for at in range(1, len(SENT))]
    for reads in [*splits, [SENT[i : i + 1] for i in range(len(SENT))]]:
        message, after = _read(reads)
        assert b"".join(message.pieces) == HEAD + TEXT, reads
        assert (message.size, after) == (len(TEXT), b"NOOP\r\n")


def test_an_empty_message() -> None:
    empty, after = _read([b".\r\nQUIT\r\n"])
    assert (empty.size, after, b"".join(empty.pieces)) == (0, b"QUIT\r\n", HEAD)


def test_each_read_is_done_with_when_it_is_taken() -> None:
    """Reads of 64 KiB: after each, at most the start of a possible final dot is held back
    (under 5 octets) and the read's text is kept unstuffed: the final read's take has its
    own octets to look at, not the whole message."""
    line = b"..a stuffed line, as an MTA sends it\r\n"
    sent = line * (4 * 65536 // len(line)) + b".\r\n"
    message = _Message(HEAD, 1 << 30)
    reads = [sent[i : i + 65536] for i in range(0, len(sent), 65536)]
    for data in reads[:-1]:
        assert not message.take(data)
        assert len(message._carry) < len(_END)
        assert len(message.pieces[-1]) <= len(data) + len(_END)
        assert b"\r\n.." not in message.pieces[-1]
    assert message.take(reads[-1])
    unstuffed = (b"\r\n" + sent[: -len(b".\r\n")]).replace(b"\r\n..", b"\r\n.")
    assert b"".join(message.pieces) == HEAD[:-2] + unstuffed


def test_over_the_limit_drops_the_text_and_still_finds_the_end() -> None:
    reads = [b"x" * 60 + b"\r\n", b"y" * 60 + b"\r\n", b".\r\nQUIT\r\n"]
    message, after = _read(reads, limit=100)
    assert message.oversize and message.pieces == [HEAD[:-2]]
    assert after == b"QUIT\r\n"
