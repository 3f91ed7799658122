"""dumps/loads of MessageInfo: exact round trips, versioned format, fast loads."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
import test_message_samples as s  # tests/ is on sys.path (pytest rootdir insertion, conftest)

from mailserv.message.info import MessageInfo
from mailserv.message.parse import parse_message
from mailserv.message.store import MARKER, UnknownFormat, dumps, envelope_of, loads


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


SORT_SAMPLE = (
    b'From: "Joe =?utf-8?q?Caf=C3=A9?=" <joe@x.org>\r\n'
    b"To: grp: a@b, c@d;\r\n"
    b"Cc: <carol@x.org>, dave@y.org\r\n"
    b"Subject: Re: [list] Fwd: Hello (fwd)\r\n"
    b'Message-ID: <"a.b"@c>\r\n'
    b"References: <1@x> <2@x>\r\n"
    b"In-Reply-To: <3@x>\r\n\r\nbody\r\n"
)


def test_sort_fields_round_trip() -> None:
    info = parse_message(SORT_SAMPLE)
    assert (info.message_id, info.references) == ("a.b@c", ("1@x", "2@x"))
    assert (info.base_subject, info.reply) == ("HELLO", True)
    assert (info.sort_from, info.sort_to, info.sort_cc) == ("JOE", "GRP", "CAROL")
    assert (info.display_from, info.display_to) == ("JOE CAFé", "GRP")
    assert loads(dumps(info)) == info


def test_mi2_records_still_load() -> None:
    """A record of the previous layout (no SORT/THREAD fields) loads without a new parse:
    the fields come from its ENVELOPE and subject, the In-Reply-To id standing in for the
    References the ENVELOPE lacks."""
    info = parse_message(SORT_SAMPLE)
    record = json.loads(dumps(info)[len(MARKER) :])
    old = b"MI2\n" + json.dumps(record[:10]).encode()
    loaded = loads(old)
    assert loaded.envelope == info.envelope
    assert loaded.references == ("3@x",)
    # none kept then: neither a preview nor an EMAILID
    expected = dataclasses.replace(info, references=("3@x",), preview=None, emailid=None)
    assert loaded == expected
    bare = parse_message(b"Subject: x\r\n\r\n")
    mi2 = b"MI2\n" + json.dumps(json.loads(dumps(bare)[4:])[:10]).encode()
    assert loads(mi2) == dataclasses.replace(bare, preview=None, emailid=None)


def test_envelope_read_alone() -> None:
    """``envelope_of`` reads the first field of any record ``loads`` reads (all 256 octets,
    an MI2 record); what ``loads`` refuses as a whole it refuses too, when the ENVELOPE
    itself is not there."""
    for seed in range(30):
        info = parse_message(s.realistic(seed))
        assert envelope_of(dumps(info)) == info.envelope
    odd = dataclasses.replace(parse_message(s.PLAIN), envelope=bytes(range(256)) + b'"\\')
    assert envelope_of(dumps(odd)) == odd.envelope
    record = json.loads(dumps(odd)[len(MARKER) :])
    assert envelope_of(b"MI2\n" + json.dumps(record[:10]).encode()) == odd.envelope
    for data in (b"", b"MI0\n[]", b"MI6\n", b"MI6\n[1,2]", b"MI6\n{}", b"MI6\n\xff", b'MI6\n["x'):
        with pytest.raises(UnknownFormat):
            envelope_of(data)


def test_lazy_info_reads_the_envelope_alone() -> None:
    """The sql backend's records: the ENVELOPE is read without decoding the rest; any
    other field decodes it all, and the two agree."""
    from mailserv.message.lazyinfo import LazyInfo

    info = parse_message(SORT_SAMPLE)
    lazy = LazyInfo(dumps(info))
    assert lazy.envelope == info.envelope
    assert (lazy.body, lazy.bodystructure) == (info.body, info.bodystructure)
    assert lazy._decoded is None
    assert lazy.subject == info.subject and lazy.envelope == info.envelope
    assert lazy._decoded is not None and lazy == info
    broken = LazyInfo(b"MI6\n[1,2]")
    with pytest.raises(UnknownFormat):
        _ = broken.envelope  # as any other field of a corrupt record


def test_a_lazy_infos_record_is_written_back_as_read() -> None:
    """A COPY of a message whose info was never decoded writes the record it read; once
    decoded (or of another layout), the info is encoded again."""
    from mailserv.message.lazyinfo import LazyInfo, record_of

    info = parse_message(SORT_SAMPLE)
    record = dumps(info)
    lazy = LazyInfo(record)
    assert record_of(lazy) is record and lazy._decoded is None
    assert record_of(info) == record
    _ = lazy.subject
    assert record_of(lazy) == record


def test_whole_message_sections_need_no_part_tree() -> None:
    """BODY[], [HEADER], [TEXT] and [HEADER.FIELDS ...] of a record kept as read come from
    its offsets alone (no part tree decoded), equal to the parsed message's."""
    from mailserv.message.lazyinfo import LazyInfo
    from mailserv.message.sections import section_bytes

    raw = SORT_SAMPLE
    info = parse_message(raw)
    lazy = LazyInfo(dumps(info))
    for text, fields in [
        (None, ()),
        ("HEADER", ()),
        ("TEXT", ()),
        ("MIME", ()),
        ("HEADER.FIELDS", ("SUBJECT", "FROM")),
        ("header.fields.not", ("Subject",)),
    ]:
        assert section_bytes(raw, lazy, (), text, fields) == section_bytes(
            raw, info, (), text, fields
        ), text
    assert lazy._decoded is None
    assert section_bytes(raw, lazy, (1,), None) == section_bytes(raw, info, (1,), None)
