"""SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) and ``$``, over raw sockets and imaplib.

What reaches a backend (the search with ``$`` in it, COPY, another session's EXPUNGE) runs
on every backend; what the engine decides alone (what is saved, resets, refusals) on one.
"""

from __future__ import annotations

import pytest
from imapserver import Connector, uid_set

from bench import messages
from bench.harness import RawClient, Response, fetches, search_numbers
from mailserv.syntax.errors import ParseError
from mailserv.syntax.sequences import parse_sequence_set


def ok(client: RawClient, command: str) -> Response:
    response = client.command(command)
    assert response.ok, (command, response.line)
    return response


def fetched(client: RawClient, command: str) -> list[int]:
    """The sequence numbers a FETCH answered, ascending."""
    return sorted(fetches(ok(client, command)))


def saved_uids(client: RawClient) -> list[int]:
    return search_numbers(ok(client, "UID SEARCH $"))


@pytest.fixture
def six(connect: Connector) -> RawClient:
    """Six messages (UIDs 1-6), 2, 4 and 5 flagged; the first deleted and expunged, so
    sequence numbers are UIDs - 1."""
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 7)])
    client = connect.selected()
    ok(client, "STORE 2,4:5 +FLAGS (\\Flagged)")
    ok(client, "STORE 1 +FLAGS (\\Deleted)")
    ok(client, "EXPUNGE")
    return client


def test_save_then_use_everywhere(six: RawClient) -> None:
    """RFC 5182 examples 1-4: saved without an answer, then FETCH, SEARCH and STORE on it."""
    response = ok(six, "SEARCH RETURN (SAVE) FLAGGED")
    assert not response.data("ESEARCH") and not response.data("SEARCH"), response.untagged
    assert fetched(six, "FETCH $ (FLAGS)") == [1, 3, 4]
    assert [int(v["UID"]) for _, v in sorted(fetches(ok(six, "UID FETCH $ (UID)")).items())] == [
        2,
        4,
        5,
    ]
    assert search_numbers(ok(six, "SEARCH $ SMALLER 100000")) == [1, 3, 4]
    assert search_numbers(ok(six, "UID SEARCH OR $ 2")) == [2, 3, 4, 5]
    assert search_numbers(ok(six, "SEARCH UID $")) == [1, 3, 4]
    assert search_numbers(ok(six, "SEARCH NOT $")) == [2, 5]
    ok(six, "STORE $ +FLAGS.SILENT (\\Seen)")
    assert search_numbers(ok(six, "SEARCH SEEN")) == [1, 3, 4]
    # SAVE with ALL answers and saves every match; a later SAVE replaces the result
    response = ok(six, "UID SEARCH RETURN (SAVE ALL) UNFLAGGED")
    assert response.data("ESEARCH") == [b'(TAG "' + response.tag + b'") UID ALL 3,6']
    assert saved_uids(six) == [3, 6]


def test_pipelined_search_and_fetch(six: RawClient) -> None:
    """RFC 5182 2.3: the FETCH sent right behind the SEARCH uses its result."""
    six.send(b"p1 UID SEARCH RETURN (SAVE) UID 4:*\r\np2 UID FETCH $ (FLAGS)\r\n")
    assert six.read_until_tagged("p1").ok
    response = six.read_until_tagged("p2")
    assert response.ok and sorted(fetches(response)) == [3, 4, 5], response.untagged


def test_expunged_by_another_session_leaves(connect: Connector, six: RawClient) -> None:
    ok(six, "SEARCH RETURN (SAVE) FLAGGED")  # UIDs 2 4 5
    other = connect.selected()
    ok(other, "UID STORE 4 +FLAGS (\\Deleted)")
    ok(other, "EXPUNGE")
    assert ok(six, "NOOP").numbers("EXPUNGE") == [3]
    assert fetched(six, "FETCH $ (UID)") == [1, 3]  # UIDs 2 and 5, renumbered
    assert saved_uids(six) == [2, 5]


def test_uid_copy_and_own_expunge(six: RawClient) -> None:
    ok(six, 'CREATE "Saved"')
    ok(six, "UID SEARCH RETURN (SAVE) FLAGGED")
    code = ok(six, 'UID COPY $ "Saved"').code or ""
    assert code.startswith("COPYUID ") and uid_set(code.split()[2]) == [2, 4, 5], code
    ok(six, "UID STORE $ +FLAGS.SILENT (\\Deleted)")
    assert ok(six, "UID EXPUNGE $").numbers("EXPUNGE") == [4, 3, 1]
    assert ok(six, "FETCH $ (UID)").untagged == []  # what was saved is gone
    assert search_numbers(ok(six, "SEARCH ALL")) == [1, 2]


def test_imaplib_uses_dollar(connect: Connector) -> None:
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 4)])
    conn = connect.imaplib()
    conn.select("INBOX")
    typ, _ = conn.uid("SEARCH", "RETURN", "(SAVE)", "SUBJECT", "m2")
    assert typ == "OK"
    typ, data = conn.fetch("$", "(UID)")
    assert typ == "OK" and [d for d in data if d] == [b"2 (UID 2)"], data


@pytest.mark.one_backend
def test_min_max_and_count(six: RawClient) -> None:
    """RFC 5182 2.4: MIN or MAX without ALL and COUNT saves only those."""
    cases = {
        "SAVE MIN": [2],
        "SAVE MAX": [5],
        "SAVE MIN MAX": [2, 5],
        "MAX SAVE COUNT": [2, 4, 5],
        "SAVE MIN ALL": [2, 4, 5],
    }
    for options, uids in cases.items():
        ok(six, f"SEARCH RETURN ({options}) FLAGGED")
        assert saved_uids(six) == uids, options
    response = ok(six, "SEARCH RETURN (SAVE MIN) FLAGGED")
    assert response.data("ESEARCH") == [b'(TAG "' + response.tag + b'") MIN 1']
    ok(six, "SEARCH RETURN (SAVE MIN MAX) KEYWORD nothing")
    assert saved_uids(six) == []


@pytest.mark.one_backend
def test_sort_saves(six: RawClient) -> None:
    """RFC 5267 with SEARCHRES: MIN and MAX in sort order; the result kept as a set.  (By
    subject, m1..m6: the six arrived within a second, and a store keeping arrival times in
    whole seconds rightly ties them, then sorts by sequence number, RFC 5256 3.)"""
    ok(six, "SORT RETURN (SAVE MIN) (REVERSE SUBJECT) US-ASCII FLAGGED")
    assert saved_uids(six) == [5]
    response = ok(six, "UID SORT RETURN (SAVE ALL) (REVERSE SUBJECT) US-ASCII FLAGGED")
    assert response.data("ESEARCH") == [b'(TAG "' + response.tag + b'") UID ALL 5,4,2']
    assert saved_uids(six) == [2, 4, 5]


@pytest.mark.one_backend
def test_empty_until_saved_and_after_reselect(connect: Connector, six: RawClient) -> None:
    assert ok(six, "FETCH $ (FLAGS)").untagged == []
    assert saved_uids(six) == []
    for leave in ("SELECT INBOX", "EXAMINE INBOX", "UNSELECT", "CLOSE"):
        ok(six, "SEARCH RETURN (SAVE) ALL")
        assert saved_uids(six) == [2, 3, 4, 5, 6]
        ok(six, leave)
        if leave in ("UNSELECT", "CLOSE"):
            ok(six, "SELECT INBOX")
        assert saved_uids(six) == [], leave
    assert ok(six, 'COPY $ "INBOX"').text.endswith(b"nothing to do")


@pytest.mark.one_backend
def test_failed_search(six: RawClient) -> None:
    """RFC 5182 2.1: NO with SAVE empties the result; BAD, or NO without SAVE, keeps it."""
    ok(six, "SEARCH RETURN (SAVE) FLAGGED")
    assert six.command("SEARCH CHARSET KOI8-R FLAGGED").status == "NO"
    assert six.command("SEARCH RETURN (SAVE) BOGUS").status == "BAD"
    assert six.command("SEARCH RETURN (SAVE BOGUS) ALL").status == "BAD"
    assert saved_uids(six) == [2, 4, 5]
    response = six.command("SEARCH RETURN (SAVE) CHARSET KOI8-R FLAGGED")
    assert response.status == "NO" and (response.code or "").startswith("BADCHARSET")
    assert saved_uids(six) == []


@pytest.mark.one_backend
def test_dollar_stands_alone(six: RawClient) -> None:
    """RFC 5182 5: ``sequence-set =/ seq-last-command``, so ``$`` is a whole set."""
    ok(six, "FETCH $ (FLAGS)")
    for command in (
        "FETCH $,1 (FLAGS)",
        "FETCH 1:$ (FLAGS)",
        "UID STORE 2,$ +FLAGS (\\Seen)",
        'COPY $:* "INBOX"',
        "SEARCH $,2",
        "SEARCH UID 2,$",
        "SEARCH $$",
    ):
        response = six.command(command)
        assert response.status == "BAD", (command, response.line)
    assert ok(six, "NOOP")


def test_dollar_only_where_allowed() -> None:
    """Without SEARCHRES (or where RFC 5182 does not apply) ``$`` is no sequence set."""
    assert parse_sequence_set("$", saved=True).saved
    assert str(parse_sequence_set("$", saved=True)) == "$"
    with pytest.raises(ParseError):
        parse_sequence_set("$")
