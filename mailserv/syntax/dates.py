"""IMAP dates: ``date`` (``d-Mon-yyyy``, SEARCH) and ``date-time``
(``"dd-Mon-yyyy hh:mm:ss +zzzz"``, INTERNALDATE and APPEND), read and written
(RFC 3501 section 9).

The readers raise ValueError whose text is fit to show a client.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    r"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


_MONTH_NUMBERS = {name.lower(): number for number, name in enumerate(MONTHS, 1)}
_NO_OFFSET = ("+", "00", "00")


def month_number(name: str) -> int:
    """1..12 for an English month abbreviation (any case); ValueError otherwise."""
    number = _MONTH_NUMBERS.get(name[:3].lower())
    if number is None:
        raise ValueError(f"Invalid month {name[:12]!r}")
    return number


def parse_date(text: str) -> date:
    """``d-Mon-yyyy`` (the month in any case) as a date."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"Invalid date {text[:40]!r} (expected d-Mon-yyyy)")
    day, month, year = match.groups()
    try:
        return date(int(year), month_number(month), int(day))
    except ValueError:
        raise ValueError(f"Invalid date {text!r}") from None


def parse_date_time(text: str) -> datetime:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` (no quotes; the day may be space-padded) as an aware
    datetime."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"Invalid date-time {text[:40]!r} (expected dd-Mon-yyyy hh:mm:ss +zzzz)")
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    if (sign, zh, zm) == _NO_OFFSET:  # the usual zone of a server's INTERNALDATE
        zone = UTC
    else:
        if int(zh) > 23 or int(zm) > 59:
            raise ValueError(f"Invalid time zone in date-time {text!r}")
        offset = timedelta(hours=int(zh), minutes=int(zm))
        zone = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(
            int(year),
            month_number(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=zone,
        )
    except ValueError:
        raise ValueError(f"Invalid date-time {text!r}") from None


def format_date(day: date) -> bytes:
    """``d-Mon-yyyy``, as SEARCH takes it."""
    return b"%d-%s-%04d" % (day.day, MONTHS[day.month - 1].encode("ascii"), day.year)


def format_date_time(value: datetime) -> bytes:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` with the day space-padded, quotes included, as
    date-time requires (a naive datetime is taken as UTC)."""
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f'"{value.day:2d}-{MONTHS[value.month - 1]}-{value.year:04d} '
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode("ascii")
