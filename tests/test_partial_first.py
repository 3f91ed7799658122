"""SEARCH RETURN (PARTIAL low:high) counted from the start, where the engine evaluates the
search itself (here a BODY search, which the memory store leaves to the engine): it may stop
once it has the first ``high`` matches (1,000 messages looked at first, then twice as many
each step).  The pages, MIN and SAVE must be the whole search's, across those steps.  The
engine's work: one backend."""

from __future__ import annotations

import pytest
from imapserver import Connector, ok

from bench.harness import RawClient

NEEDLES = [3, 999, 1000, 1001, 1050]
TOTAL = 1100


@pytest.fixture
def haystack(connect: Connector) -> RawClient:
    bodies = [b"needle" if n in NEEDLES else b"hay" for n in range(1, TOTAL + 1)]
    connect.append([b"Subject: s\r\n\r\n" + body + b"\r\n" for body in bodies])
    return connect.selected()


def esearch(client: RawClient, command: str) -> str:
    response = ok(client, command)
    (line,) = response.data("ESEARCH")
    return line.decode().split(")", 1)[1].strip()


@pytest.mark.one_backend
def test_first_pages_across_the_steps(haystack: RawClient) -> None:
    client = haystack
    cases = {
        "PARTIAL 1:2": "PARTIAL (1:2 3,999)",
        "PARTIAL 3:4": "PARTIAL (3:4 1000:1001)",
        "PARTIAL 5:9": "PARTIAL (5:9 1050)",
        "PARTIAL 6:9": "PARTIAL (6:9 NIL)",
        "MIN PARTIAL 2:3": "MIN 3 PARTIAL (2:3 999:1000)",
        "PARTIAL -1:-2": "PARTIAL (-1:-2 1001,1050)",
        "COUNT PARTIAL 1:1": "COUNT 5 PARTIAL (1:1 3)",
    }
    for options, answer in cases.items():
        assert esearch(client, f"SEARCH RETURN ({options}) BODY needle") == answer, options
    assert (
        esearch(client, "UID SEARCH RETURN (PARTIAL 2:3) BODY needle")
        == "UID PARTIAL (2:3 999:1000)"
    )
    answer = esearch(client, "SEARCH RETURN (SAVE PARTIAL 3:4) BODY needle")
    assert answer == "PARTIAL (3:4 1000:1001)"
    assert esearch(client, "SEARCH RETURN (ALL) $") == "ALL 1000:1001"
