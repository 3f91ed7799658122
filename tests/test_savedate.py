"""SAVEDATE (RFC 8514) over real sockets on every backend: FETCH SAVEDATE is when the message
was saved in this mailbox (APPEND, COPY; not the internal date, which COPY keeps), SEARCH
SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED; the proxy keeps none (NIL, and the
internal date stands in for searches).  Bad input refused with BAD."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from imapserver import Connector, all_bad, ok

from bench import messages
from bench.harness import RawClient, fetches, search_numbers
from mailserv.syntax.dates import parse_date_time

OLD = '"01-Feb-2001 10:00:00 +0100"'


def saved(client: RawClient, command: str) -> datetime | None:
    response = client.command(command)
    assert response.ok, response.line
    ((_, items),) = fetches(response).items()
    value = items["SAVEDATE"]
    assert value is None or isinstance(value, bytes), value
    return None if value is None else parse_date_time(value.decode())


def test_savedate_fetch_search_and_copy(connect: Connector) -> None:
    keeps = connect.server.backend.name != "proxy"
    client = connect.raw()
    before = datetime.now(UTC).replace(microsecond=0)
    assert client.command_with_literal(f"APPEND INBOX () {OLD} ", messages.plain()).ok
    assert client.command("CREATE Other").ok
    assert client.command("SELECT INBOX").ok
    first = saved(client, "FETCH 1 (SAVEDATE INTERNALDATE)")
    assert client.command("COPY 1 Other").ok
    if not keeps:
        assert first is None
        assert search_numbers(client.command("SEARCH SAVEDATESUPPORTED")) == []
        assert search_numbers(client.command("SEARCH SAVEDBEFORE 2-Feb-2001")) == [1]
        return
    assert first is not None and before <= first <= datetime.now(UTC)
    day = first.strftime("%d-%b-%Y")
    assert search_numbers(client.command("SEARCH SAVEDATESUPPORTED")) == [1]
    assert search_numbers(client.command(f"SEARCH SAVEDON {day}")) == [1]
    assert search_numbers(client.command(f"SEARCH SAVEDSINCE {day}")) == [1]
    assert search_numbers(client.command(f"SEARCH SAVEDBEFORE {day}")) == []
    assert search_numbers(client.command(f"SEARCH SINCE {day}")) == []  # internal: 2001
    assert search_numbers(client.command("SEARCH OR SAVEDBEFORE 1-Jan-2000 ON 1-Feb-2001")) == [1]
    assert client.command("SELECT Other").ok
    copied = saved(client, "FETCH 1 SAVEDATE")
    assert copied is not None and first <= copied <= datetime.now(UTC)
    internal = fetches(client.command("FETCH 1 INTERNALDATE"))[1]["INTERNALDATE"]
    assert isinstance(internal, bytes)
    assert parse_date_time(internal.decode()) == parse_date_time(OLD.strip('"'))


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
def test_bad_savedate_requests(connect: Connector) -> None:
    client = connect.raw()
    assert client.command_with_literal("APPEND INBOX ", messages.plain()).ok
    assert client.command("SELECT INBOX").ok
    ok(client, "SEARCH SAVEDON 1-Jan-2001 SAVEDATESUPPORTED")  # known: the BADs were arguments
    all_bad(
        client,
        [
            "SEARCH SAVEDON",
            "SEARCH SAVEDSINCE 2001-01-01",
            "SEARCH SAVEDBEFORE (1-Jan-2001)",
            "SEARCH SAVEDATESUPPORTED 1-Jan-2001",
            "FETCH 1 SAVEDATE[1]",
            "FETCH 1 SAVEDATE<0.4>",
        ],
    )
