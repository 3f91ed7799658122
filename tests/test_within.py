"""WITHIN (RFC 5032): SEARCH OLDER n / YOUNGER n against internal dates given to APPEND.

Every backend answers these keys in its own way (the evaluator, the Maildir index, SQL, the
proxy's mirror), so the searches run on each; bad arguments are the parser's (one backend).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapserver import Connector

from bench import messages
from bench.harness import RawClient, search_numbers

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def date_time(moment: datetime) -> str:
    """An APPEND date-time (RFC 3501 ``date-time``), in the moment's own offset."""
    offset = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    sign, minutes = ("-", -offset) if offset < 0 else ("+", offset)
    return (
        f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year} "
        f"{moment:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


@pytest.fixture
def aged(connect: Connector) -> RawClient:
    """Messages 1-4 with internal dates 3 days, 2 hours and 100 seconds ago (each in
    another offset), and now (APPEND without a date)."""
    now = datetime.now(UTC)
    ages = [
        (timedelta(days=3), UTC),
        (timedelta(hours=2), timezone(timedelta(hours=9))),
        (timedelta(seconds=100), timezone(timedelta(hours=-7))),
    ]
    client = connect.raw()
    for n, (age, zone) in enumerate(ages, 1):
        when = date_time((now - age).astimezone(zone))
        message = messages.plain(subject=f"m{n}")
        response = client.command_with_literal(f'APPEND INBOX "{when}" ', message)
        assert response.ok, response.line
    assert client.command_with_literal("APPEND INBOX ", messages.plain(subject="m4")).ok
    assert client.command("SELECT INBOX").ok
    return client


def test_older_and_younger(aged: RawClient) -> None:
    expected = {
        "YOUNGER 60": [4],
        "YOUNGER 1000": [3, 4],
        "YOUNGER 86400": [2, 3, 4],
        "OLDER 60": [1, 2, 3],
        "OLDER 1000": [1, 2],
        "OLDER 86400": [1],
        "OLDER 4294967295": [],
        "YOUNGER 1000 UNSEEN": [3, 4],
        "OR OLDER 86400 YOUNGER 60": [1, 4],
        "NOT YOUNGER 86400": [1],
        "OLDER 1000 YOUNGER 86400": [2],
    }
    for criteria, numbers in expected.items():
        response = aged.command(f"SEARCH {criteria}")
        assert response.ok, (criteria, response.line)
        assert search_numbers(response) == numbers, criteria


def test_imapclient_searches_within(connect: Connector, aged: RawClient) -> None:
    client: IMAPClient = connect.imapclient()
    assert b"WITHIN" in client.capabilities()
    client.select_folder("INBOX")
    assert client.search(["YOUNGER", 1000]) == [3, 4]
    assert client.search(["OLDER", 1000]) == [1, 2]


@pytest.mark.one_backend
def test_bad_intervals(aged: RawClient) -> None:
    for criteria in (
        "OLDER",
        "YOUNGER 0",
        "OLDER -5",
        "YOUNGER abc",
        "OLDER 4294967296",
        "YOUNGER (10)",
        'OLDER "10"',
        "UNSEEN OLDER",
    ):
        response = aged.command(f"SEARCH {criteria}")
        assert response.status == "BAD", (criteria, response.line)
        assert b"needs a number of seconds" in response.text, response.line
    assert aged.command("SEARCH YOUNGER 10 OLDER 1").ok
