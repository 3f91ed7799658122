"""PARTIAL (RFC 9394): paged SEARCH/UID SEARCH/SORT answers and the UID FETCH modifier,
over raw sockets.  What the backend answers (the search, the messages read) runs on every
backend; what the engine refuses or cuts by itself runs on one."""

from __future__ import annotations

import pytest
from imapserver import Connector, all_bad, ok

from bench import messages
from bench.harness import RawClient, fetches


def esearch(client: RawClient, command: str) -> str:
    """The ESEARCH line's data after ``(TAG "...")``."""
    response = ok(client, command)
    (line,) = response.data("ESEARCH")
    prefix = f'(TAG "{response.tag.decode()}") '
    text = line.decode()
    assert text.startswith(prefix), text
    return text[len(prefix) :]


@pytest.fixture
def ten(connect: Connector) -> RawClient:
    """Ten messages; the first is expunged, so UIDs are 2..11 and numbers 1..10."""
    connect.append([messages.plain(subject=f"m{n}") for n in range(11)])
    client = connect.selected()
    ok(client, "STORE 1 +FLAGS (\\Deleted)")
    ok(client, "EXPUNGE")
    return client


def test_rfc_9394_search_pages(ten: RawClient) -> None:
    # RFC 9394 3.1: 1 is the first result, -1 the last; the range comes back as sent
    assert esearch(ten, "UID SEARCH RETURN (PARTIAL 1:3) ALL") == "UID PARTIAL (1:3 2:4)"
    assert esearch(ten, "SEARCH RETURN (PARTIAL 1:3) ALL") == "PARTIAL (1:3 1:3)"
    assert esearch(ten, "UID SEARCH RETURN (PARTIAL -1:-3) ALL") == "UID PARTIAL (-1:-3 9:11)"
    assert esearch(ten, "SEARCH RETURN (PARTIAL -3:-1) ALL") == "PARTIAL (-3:-1 8:10)"
    assert esearch(ten, "SEARCH RETURN (PARTIAL 5:4) ALL") == "PARTIAL (5:4 4:5)"
    # a range past the results gives what is there, or NIL
    assert esearch(ten, "SEARCH RETURN (PARTIAL 9:500) ALL") == "PARTIAL (9:500 9:10)"
    assert esearch(ten, "SEARCH RETURN (PARTIAL -8:-100) ALL") == "PARTIAL (-8:-100 1:3)"
    assert esearch(ten, "UID SEARCH RETURN (PARTIAL 24000:24500) ALL") == (
        "UID PARTIAL (24000:24500 NIL)"
    )
    assert esearch(ten, "SEARCH RETURN (PARTIAL 1:5) KEYWORD none") == "PARTIAL (1:5 NIL)"
    # MIN, MAX and COUNT describe the whole result (RFC 9394 3.2)
    assert esearch(ten, "UID SEARCH RETURN (MIN MAX COUNT PARTIAL 2:3) ALL") == (
        "UID MIN 2 MAX 11 COUNT 10 PARTIAL (2:3 3:4)"
    )


def test_uid_fetch_partial(ten: RawClient) -> None:
    last = fetches(ok(ten, "UID FETCH 1:* (FLAGS) (PARTIAL -1:-3)"))
    assert sorted(last) == [8, 9, 10]
    first = fetches(ok(ten, "UID FETCH 3:* (UID) (PARTIAL 1:2)"))
    assert sorted(first) == [2, 3]  # among the messages the set names
    assert not fetches(ok(ten, "UID FETCH 1:* (UID) (PARTIAL 20:30)"))


def test_uid_fetch_partial_with_changedsince(ten: RawClient) -> None:
    text = esearch(ten, "SEARCH RETURN (MAX) MODSEQ 1")  # turns CONDSTORE on
    before = int(text.rsplit(" ", 1)[1])
    ok(ten, "STORE 2,5,7,9 +FLAGS (\\Flagged)")
    changed = fetches(ok(ten, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before} PARTIAL -1:-2)"))
    assert sorted(changed) == [7, 9]  # the last two of the changed ones
    changed = fetches(ok(ten, f"UID FETCH 1:* (FLAGS) (PARTIAL 2:2 CHANGEDSINCE {before})"))
    assert sorted(changed) == [5]


@pytest.mark.one_backend  # the page of a sorted result is the engine's cut
def test_sort_pages_in_sort_order(ten: RawClient) -> None:
    # subjects m1..m10 (UID n+1) sort as m1, m10, m2 ... m9
    assert esearch(ten, "UID SORT RETURN (PARTIAL 1:3) (REVERSE SUBJECT) UTF-8 ALL") == (
        "UID PARTIAL (1:3 10,9,8)"
    )
    assert esearch(ten, "SORT RETURN (COUNT PARTIAL -1:-2) (REVERSE SUBJECT) UTF-8 ALL") == (
        "COUNT 10 PARTIAL (-1:-2 10,1)"
    )


@pytest.mark.one_backend
def test_save_keeps_the_page(ten: RawClient) -> None:
    # RFC 9394 3.2: SAVE with PARTIAL keeps the page (and MIN/MAX), with COUNT everything
    ten.command("SEARCH RETURN (SAVE PARTIAL 2:3) ALL")
    assert sorted(fetches(ok(ten, "FETCH $ (UID)"))) == [2, 3]
    ten.command("SEARCH RETURN (SAVE MIN PARTIAL -1:-1) ALL")
    assert sorted(fetches(ok(ten, "FETCH $ (UID)"))) == [1, 10]
    ten.command("SEARCH RETURN (SAVE COUNT PARTIAL 1:1) ALL")
    assert len(fetches(ok(ten, "FETCH $ (UID)"))) == 10


@pytest.mark.one_backend  # refused by the engine before the backend is asked
def test_bad_ranges(ten: RawClient) -> None:
    ok(ten, "SEARCH RETURN (PARTIAL 1:5) ALL")  # PARTIAL itself is known
    all_bad(
        ten,
        [
            "SEARCH RETURN (PARTIAL 1:5 ALL) ALL",  # one PARTIAL or one ALL (RFC 9394 3.1)
            "SEARCH RETURN (ALL PARTIAL 1:5) ALL",
            "SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL",
            "SEARCH RETURN (PARTIAL) ALL",
            "SEARCH RETURN (PARTIAL 0:5) ALL",
            "SEARCH RETURN (PARTIAL 1:*) ALL",
            "SEARCH RETURN (PARTIAL -1:5) ALL",
            "SEARCH RETURN (PARTIAL 1:-5) ALL",
            "SEARCH RETURN (PARTIAL 5) ALL",
            'SEARCH RETURN (PARTIAL "1:5") ALL',
            "SEARCH RETURN (PARTIAL 1:4294967296) ALL",
            "SEARCH RETURN (PARTIAL 01:5) ALL",
            "UID SORT RETURN (PARTIAL 0:1) (ARRIVAL) UTF-8 ALL",
            "UID FETCH 1:* (FLAGS) (PARTIAL 0:1)",
            "UID FETCH 1:* (FLAGS) (PARTIAL)",
            "UID FETCH 1:* (FLAGS) (PARTIAL 1:2 PARTIAL 3:4)",
            "FETCH 1:* (FLAGS) (PARTIAL 1:2)",  # the modifier is UID FETCH's
        ],
    )


@pytest.mark.one_backend
def test_capability(raw: RawClient) -> None:
    (line,) = ok(raw, "CAPABILITY").data("CAPABILITY")
    words = line.decode().upper().split()
    assert "PARTIAL" in words and "CONTEXT=SEARCH" in words and "CONTEXT=SORT" in words
