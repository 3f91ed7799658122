"""A keyword named ``NIL`` (RFC 3501: a flag keyword is an atom; in a flag list the atom
``NIL`` is a keyword, not the NIL token) survives STORE, FETCH FLAGS, SEARCH KEYWORD,
APPEND and COPY on every backend."""

from __future__ import annotations

import re

from imapserver import Connector

from bench import messages
from bench.harness import RawClient, Response, search_numbers


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def flag_words(response: Response) -> dict[int, list[str]]:
    """The FLAGS of each FETCH response as sent (atoms, case kept)."""
    out: dict[int, list[str]] = {}
    for line in response.untagged:
        match = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", line)
        if match is not None:
            out[int(match.group(1))] = match.group(2).decode().split()
    return out


def test_store_fetch_search_keyword_nil(connect: Connector) -> None:
    connect.append([messages.plain(subject=f"m{i}") for i in range(2)])
    client = connect.selected()
    stored = ok(client, "STORE 1 +FLAGS (NIL)")
    assert "NIL" in flag_words(stored)[1], stored.untagged
    fetched = ok(client, "FETCH 1:2 FLAGS")
    words = flag_words(fetched)
    assert "NIL" in words[1] and "NIL" not in words[2], fetched.untagged
    assert search_numbers(ok(client, "SEARCH KEYWORD NIL")) == [1]
    assert search_numbers(ok(client, "SEARCH UNKEYWORD NIL")) == [2]
    # a second session (and the backend's stored state) sees it too
    other = connect.selected()
    assert "NIL" in flag_words(ok(other, "FETCH 1 FLAGS"))[1]
    ok(client, "STORE 1 -FLAGS NIL")
    assert "NIL" not in flag_words(ok(client, "FETCH 1 FLAGS"))[1]


def test_append_and_copy_keep_keyword_nil(connect: Connector) -> None:
    client = connect.raw()
    ok(client, "CREATE nilcopy")
    connect.append([messages.plain(subject="n")], flags="NIL $Label")
    ok(client, "SELECT INBOX")
    words = flag_words(ok(client, "FETCH 1 FLAGS"))[1]
    assert {"NIL", "$Label"} <= set(words), words
    ok(client, "COPY 1 nilcopy")
    ok(client, "SELECT nilcopy")
    assert "NIL" in flag_words(ok(client, "FETCH 1 FLAGS"))[1]
    assert search_numbers(ok(client, "SEARCH KEYWORD NIL")) == [1]
