"""Sequence sets: parsing, resolving ``*``, picking UIDs by bisection, formatting."""

from __future__ import annotations

import pytest

from mailserv.syntax.errors import ParseError
from mailserv.syntax.sequences import (
    MAX_RANGES,
    STAR,
    InvalidSequenceNumber,
    SequenceSet,
    format_set,
    merge,
    parse_sequence_set,
    seqs_in,
    uids_for_seqs,
    uids_in,
)


def test_parse_forms() -> None:
    assert parse_sequence_set("1").ranges == ((1, 1),)
    assert parse_sequence_set("1:4,7,10:*,*").ranges == ((1, 4), (7, 7), (10, STAR), (STAR, STAR))
    assert parse_sequence_set("4:1").ranges == ((4, 1),)
    assert parse_sequence_set("*:3").ranges == ((STAR, 3),)
    assert parse_sequence_set("4294967295").ranges == ((4294967295, 4294967295),)
    assert parse_sequence_set("007").ranges == ((7, 7),)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "1:0",
        "0:*",
        "4294967296",
        "1" + "0" * 40,
        "1,",
        ",1",
        "1::2",
        "1:2:3",
        "a",
        "1 2",
        "-1",
        "1.5",
        "**",
        "1,,2",
        "$",
        "\u0661",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(text)
    with pytest.raises(ValueError):
        parse_sequence_set(text)


def test_range_limit() -> None:
    assert len(parse_sequence_set(",".join(["1"] * MAX_RANGES)).ranges) == MAX_RANGES
    with pytest.raises(ParseError, match="more than"):
        parse_sequence_set(",".join(["1"] * (MAX_RANGES + 1)))


def test_resolve_merges_and_swaps() -> None:
    assert parse_sequence_set("7,1:4,3:5,10:*,*").resolve(12) == [(1, 5), (7, 7), (10, 12)]
    assert parse_sequence_set("9:2").resolve(20) == [(2, 9)]
    assert parse_sequence_set("5,6,4").resolve(20) == [(4, 6)]


def test_resolve_star_beyond_largest() -> None:
    # RFC 3501 6.4.8: 559:* includes the largest UID even when it is below 559.
    assert parse_sequence_set("559:*").resolve(500) == [(500, 559)]
    assert parse_sequence_set("*").resolve(500) == [(500, 500)]


def test_resolve_empty_mailbox() -> None:
    assert parse_sequence_set("1:*").resolve(0) == []
    assert parse_sequence_set("*,3").resolve(0) == [(3, 3)]


def test_has_star_and_str() -> None:
    assert parse_sequence_set("1:*").has_star
    assert not parse_sequence_set("1:4").has_star
    assert str(parse_sequence_set("1:4,7,*:9,*")) == "1:4,7,*:9,*"


def test_merge() -> None:
    assert merge([(5, 6), (1, 2), (3, 4), (10, 20), (12, 15)]) == [(1, 6), (10, 20)]
    assert merge([(1, 3), (5, 6)]) == [(1, 3), (5, 6)]
    assert merge([]) == []


def test_uids_in() -> None:
    uids = [2, 4, 6, 8, 10, 100]
    assert uids_in(parse_sequence_set("1:5,8:9,50:*").resolve(uids[-1]), uids) == [2, 4, 8, 100]
    assert uids_in(parse_sequence_set("7").resolve(100), uids) == []
    assert uids_in(parse_sequence_set("*").resolve(100), uids) == [100]
    assert uids_in(parse_sequence_set("1:*").resolve(0), []) == []


def test_uids_in_full_range_is_instant() -> None:
    uids = list(range(1, 300_000, 3))
    ranges = parse_sequence_set("1:4294967295").resolve(uids[-1])
    assert uids_in(ranges, uids) == uids
    assert uids_in(parse_sequence_set("4000000000:4294967295").resolve(uids[-1]), uids) == []


def test_uids_for_seqs() -> None:
    uids = [3, 5, 9, 11, 20]
    assert uids_for_seqs(parse_sequence_set("1,3:4").resolve(5), uids) == [3, 9, 11]
    assert uids_for_seqs(parse_sequence_set("2:*").resolve(5), uids) == [5, 9, 11, 20]
    assert uids_for_seqs(parse_sequence_set("*").resolve(5), uids) == [20]
    with pytest.raises(InvalidSequenceNumber) as info:
        uids_for_seqs(parse_sequence_set("4:6").resolve(5), uids)
    assert (info.value.number, info.value.count) == (6, 5)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidSequenceNumber):
        uids_for_seqs(parse_sequence_set("1").resolve(0), [])
    assert uids_for_seqs(parse_sequence_set("1:*").resolve(0), []) == []


def test_huge_invalid_seq_range_fails_fast() -> None:
    with pytest.raises(InvalidSequenceNumber):
        uids_for_seqs(parse_sequence_set("1:4294967295").resolve(3), [1, 2, 3])
    with pytest.raises(InvalidSequenceNumber):
        seqs_in(parse_sequence_set("1:4294967295").resolve(3), 3)


def test_seqs_in() -> None:
    assert seqs_in(parse_sequence_set("2:3,5,*").resolve(7), 7) == [2, 3, 5, 7]
    with pytest.raises(InvalidSequenceNumber):
        seqs_in(parse_sequence_set("8").resolve(7), 7)


def test_format_set() -> None:
    assert format_set([1, 2, 3, 4, 5, 7, 9, 10]) == "1:5,7,9:10"
    assert format_set([]) == ""
    assert format_set([42]) == "42"
    assert format_set(iter([3, 4, 1, 2])) == "3:4,1:2"  # order kept (COPYUID pairing)
    assert format_set([5, 5]) == "5,5"


def test_sequence_set_is_frozen_and_hashable() -> None:
    s = parse_sequence_set("1:2")
    assert s == SequenceSet(((1, 2),))
    assert hash(s) == hash(SequenceSet(((1, 2),)))
    with pytest.raises(AttributeError):
        s.ranges = ()  # type: ignore[misc]
