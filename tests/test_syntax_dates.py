"""mailserv.syntax.dates: the one reader and writer of IMAP dates and date-times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mailserv.syntax.dates import (
    format_date,
    format_date_time,
    month_number,
    parse_date,
    parse_date_time,
)


def test_date_time_round_trip() -> None:
    zone = timezone(-timedelta(hours=7))
    when = datetime(1996, 7, 7, 2, 44, 25, tzinfo=zone)
    assert format_date_time(when) == b'" 7-Jul-1996 02:44:25 -0700"'
    assert parse_date_time(format_date_time(when).decode("ascii")[1:-1]) == when


def test_date_time_naive_is_utc_and_odd_offsets() -> None:
    assert format_date_time(datetime(2024, 12, 31, 23, 59, 59)) == b'"31-Dec-2024 23:59:59 +0000"'
    when = parse_date_time("05-jan-2024 10:00:00 +0530")
    assert when.utcoffset() == timedelta(hours=5, minutes=30)
    for zero in ("+0000", "-0000"):  # the first, the usual one, is read by a shorter path
        when = parse_date_time(f" 5-JAN-2024 10:00:00 {zero}")
        assert when == datetime(2024, 1, 5, 10, tzinfo=UTC)
        assert when.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "17-Jul-1996 02:44:25",
        "17-Foo-1996 02:44:25 -0700",
        "30-Feb-2024 00:00:00 +0000",
        "17-Jul-1996 02:44:25 +2400",
        "17-Jul-1996  2:44:25 +0000",
    ],
)
def test_date_time_refused(text: str) -> None:
    with pytest.raises(ValueError, match="date-time"):
        parse_date_time(text)


def test_date_round_trip() -> None:
    assert format_date(date(1994, 2, 1)) == b"1-Feb-1994"
    assert parse_date("01-feb-1994") == date(1994, 2, 1)
    assert parse_date(format_date(date(2024, 2, 29)).decode()) == date(2024, 2, 29)
    for bad in ("1-Feb-94", "31-Apr-2024", "1-Fev-2024", "1 Feb 2024"):
        with pytest.raises(ValueError, match="Invalid date"):
            parse_date(bad)


def test_month_number() -> None:
    assert [month_number(m) for m in ("jan", "DEC", "Jun")] == [1, 12, 6]
    with pytest.raises(ValueError):
        month_number("Juk")
