"""dumps/loads of MessageInfo: exact round trips, versioned format, fast loads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)

from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message
from mailserv.message.store import MARKER, UnknownFormat, dumps, loads


@pytest.mark.parametrize("name", sorted(s.SAMPLES))
def test_round_trip_samples(name: str) -> None:
    info = parse_message(s.SAMPLES[name])
    data = dumps(info)
    assert data.startswith(MARKER)
    assert loads(data) == info


def test_round_trip_realistic_and_odd_values() -> None:
    for seed in range(30):
        info = parse_message(s.realistic(seed))
        assert loads(dumps(info)) == info
    odd = MessageInfo(
        envelope=bytes(range(256)),
        body=b"{3}\r\n\x00\xff\x80",
        bodystructure=b"",
        root=parse_message(s.NESTED).root,
        subject="\ud800 lone surrogate, \u2028 and \x00",
        from_="日本語",
        to="",
        cc="",
        bcc="",
        sent=datetime(1901, 1, 1, tzinfo=UTC),
    )
    assert loads(dumps(odd)) == odd


def test_sent_keeps_its_offset() -> None:
    info = parse_message(s.ENCODED_WORDS)
    sent = loads(dumps(info)).sent
    assert info.sent is not None and sent is not None
    assert sent == info.sent and sent.utcoffset() == info.sent.utcoffset()


@pytest.mark.parametrize(
    "data", [b"", b"MI0\n[]", b"MI1\n", b"MI1\n[1,2]", b"MI1\n{}", b"MI1\n\xff", b"MI1\n[null]"]
)
def test_unknown_or_corrupt_data(data: bytes) -> None:
    with pytest.raises(UnknownFormat):
        loads(data)


def test_corrupt_part_record() -> None:
    data = dumps(parse_message(s.PLAIN)).replace(b'"text/plain"', b"7")
    with pytest.raises(UnknownFormat):
        loads(data.replace(b',"7bit",', b","))
