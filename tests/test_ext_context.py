"""CONTEXT=SEARCH (RFC 5267 section 4): UPDATE contexts, ADDTO/REMOVEFROM, CANCELUPDATE,
NOUPDATE, over raw sockets.  Two sessions on one mailbox: one changes it (APPEND, STORE,
EXPUNGE), the other is told how its search result changes; that depends on the backend's
events and runs on every backend, what the engine refuses by itself on one."""

from __future__ import annotations

import pytest
from imapserver import Connector, all_bad, ok

from bench import messages
from bench.harness import RawClient, Response


def updates(response: Response | list[bytes], tag: str) -> list[str]:
    """The data of the ``* ESEARCH (TAG "tag")`` lines among ``response``'s."""
    lines = response.untagged if isinstance(response, Response) else response
    prefix = f'* ESEARCH (TAG "{tag}")'
    texts = [line.decode().rstrip("\r\n") for line in lines]
    return [text[len(prefix) :].strip() for text in texts if text.startswith(prefix)]


def tagged_ok(client: RawClient, command: str, tag: str) -> Response:
    """Run ``command`` under ``tag`` (the context's name); it must answer OK."""
    response = client.command(command, tag=tag)
    assert response.ok, (command, response.line)
    return response


def kinds(response: Response) -> list[str]:
    """The untagged lines as ``EXISTS``/``EXPUNGE``/``ESEARCH``/``FETCH`` in order."""
    out = []
    for line in response.untagged:
        words = line.split()
        out.append((words[2] if words[1].isdigit() else words[1]).decode().upper())
    return out


def expunge_seen(watcher: RawClient, other: RawClient, seq: int, tag: str) -> list[str]:
    """``other`` expunges message ``seq``: what the watcher's NOOP tells the context ``tag``
    (its REMOVEFROM before the EXPUNGE, RFC 5267 4.3.4)."""
    ok(other, f"STORE {seq} +FLAGS (\\Deleted)")
    ok(other, "EXPUNGE")
    noop = ok(watcher, "NOOP")
    assert kinds(noop).index("ESEARCH") < kinds(noop).index("EXPUNGE")
    return updates(noop, tag)


@pytest.fixture
def pair(connect: Connector) -> tuple[RawClient, RawClient]:
    """Five messages, 2 and 4 flagged; the watching session and the changing one."""
    connect.append([messages.plain(subject=f"m{n}") for n in range(1, 6)])
    other = connect.selected()
    ok(other, "STORE 2,4 +FLAGS (\\Flagged)")
    return connect.selected(), other


def test_other_session_changes(connect: Connector, pair: tuple[RawClient, RawClient]) -> None:
    watcher, other = pair
    first = tagged_ok(watcher, "UID SEARCH RETURN (UPDATE COUNT ALL) FLAGGED", "B01")
    assert updates(first, "B01") == ["UID COUNT 2 ALL 2,4"]
    # arrival: ADDTO after the EXISTS that numbers it (RFC 5267 4.3.3)
    (uid,) = connect.append([messages.plain(subject="new")], flags="\\Flagged")
    noop = ok(watcher, "NOOP")
    assert updates(noop, "B01") == [f"UID ADDTO (0 {uid})"]
    assert kinds(noop).index("EXISTS") < kinds(noop).index("ESEARCH")
    # flags: in and out of the result
    ok(other, "STORE 1 +FLAGS (\\Flagged)")
    ok(other, "STORE 2 -FLAGS (\\Flagged)")
    assert updates(ok(watcher, "NOOP"), "B01") == ["UID REMOVEFROM (0 2) ADDTO (0 1)"]
    # a change the result does not see sends nothing
    ok(other, "STORE 3 +FLAGS (\\Seen)")
    assert updates(ok(watcher, "NOOP"), "B01") == []
    # expunge: REMOVEFROM first, then the EXPUNGE (RFC 5267 4.3.4)
    assert expunge_seen(watcher, other, 4, "B01") == ["UID REMOVEFROM (0 4)"]
    # the result was kept right all along
    again = tagged_ok(watcher, "UID SEARCH RETURN (ALL) FLAGGED", "B02")
    assert updates(again, "B02") == [f"UID ALL 1,{uid}"]


def test_sequence_numbers_and_own_changes(pair: tuple[RawClient, RawClient]) -> None:
    watcher, other = pair
    assert updates(tagged_ok(watcher, "SEARCH RETURN (UPDATE) FLAGGED", "C01"), "C01") == [""]
    # the session's own STORE: after its FETCH responses
    store = ok(watcher, "STORE 5 +FLAGS (\\Flagged)")
    assert updates(store, "C01") == ["ADDTO (0 5)"]
    assert kinds(store).index("FETCH") < kinds(store).index("ESEARCH")
    # another session expunges message 1: numbers in REMOVEFROM are those before EXPUNGE
    ok(other, "STORE 2 +FLAGS (\\Deleted)")
    ok(other, "EXPUNGE")
    noop = ok(watcher, "NOOP")
    assert updates(noop, "C01") == ["REMOVEFROM (0 2)"]
    assert noop.numbers("EXPUNGE") == [2]
    # ... and after it, the new numbers
    ok(other, "STORE 1 +FLAGS (\\Flagged)")
    assert updates(ok(watcher, "NOOP"), "C01") == ["ADDTO (0 1)"]
    # the session's own EXPUNGE
    ok(watcher, "STORE 3 +FLAGS (\\Deleted)")
    expunge = ok(watcher, "EXPUNGE")
    assert updates(expunge, "C01") == ["REMOVEFROM (0 3)"]
    assert kinds(expunge) == ["ESEARCH", "EXPUNGE"]


def test_no_removal_while_expunge_is_not_allowed(pair: tuple[RawClient, RawClient]) -> None:
    watcher, other = pair
    tagged_ok(watcher, "UID SEARCH RETURN (UPDATE) FLAGGED", "D01")
    ok(other, "STORE 2 +FLAGS (\\Deleted)")
    ok(other, "EXPUNGE")
    fetch = ok(watcher, "FETCH 1 (FLAGS)")  # no EXPUNGE after FETCH: no REMOVEFROM either
    assert not fetch.data("EXPUNGE") and updates(fetch, "D01") == []
    noop = ok(watcher, "NOOP")
    assert updates(noop, "D01") == ["UID REMOVEFROM (0 2)"]
    assert noop.numbers("EXPUNGE") == [2]


def test_idle_and_cancelupdate(connect: Connector, pair: tuple[RawClient, RawClient]) -> None:
    watcher, other = pair
    tagged_ok(watcher, "UID SEARCH RETURN (UPDATE) FLAGGED", "E01")
    watcher.send(b"E02 IDLE\r\n")
    assert watcher.read_line().startswith(b"+ ")
    ok(other, "STORE 1 +FLAGS (\\Flagged)")
    seen = []
    while not seen or not updates(seen, "E01"):  # bounded by the client's read timeout
        seen.append(watcher.read_response())
    assert updates(seen, "E01") == ["UID ADDTO (0 1)"]
    watcher.send(b"DONE\r\n")
    assert watcher.read_until_tagged("E02").ok
    ok(watcher, 'CANCELUPDATE "E01"')
    ok(other, "STORE 2 -FLAGS (\\Flagged)")
    assert updates(ok(watcher, "NOOP"), "E01") == []


@pytest.mark.one_backend
def test_saved_result_bound_before_save(pair: tuple[RawClient, RawClient]) -> None:
    # RFC 5182: "$" in a SEARCH that also saves is the result saved before it
    watcher, other = pair
    ok(watcher, "SEARCH RETURN (SAVE) FLAGGED")  # $ = 2,4
    tagged_ok(watcher, "SEARCH RETURN (SAVE MIN UPDATE) $", "H01")  # $ = 2 from now
    ok(other, "STORE 4 +FLAGS (\\Seen)")
    assert updates(ok(watcher, "NOOP"), "H01") == []  # 4 is still in the context's $


def test_partial_with_update(connect: Connector, pair: tuple[RawClient, RawClient]) -> None:
    # RFC 9394 3.1: PARTIAL pages the answer, UPDATE follows the whole result
    watcher, other = pair
    first = tagged_ok(watcher, "UID SEARCH RETURN (UPDATE PARTIAL 1:1) FLAGGED", "F01")
    assert updates(first, "F01") == ["UID PARTIAL (1:1 2)"]
    ok(other, "STORE 5 +FLAGS (\\Flagged)")
    assert updates(ok(watcher, "NOOP"), "F01") == ["UID ADDTO (0 5)"]


@pytest.mark.one_backend  # membership follows the events tested above on every backend
def test_sort_context_positions(connect: Connector, pair: tuple[RawClient, RawClient]) -> None:
    # CONTEXT=SORT: positions in sort order, one pair per message, processed in order
    watcher, other = pair
    first = tagged_ok(
        watcher, "UID SORT RETURN (UPDATE ALL) (REVERSE SUBJECT) UTF-8 FLAGGED", "S01"
    )
    assert updates(first, "S01") == ["UID ALL 4,2"]
    ok(other, "STORE 3 +FLAGS (\\Flagged)")  # m4 m3 m2
    assert updates(ok(watcher, "NOOP"), "S01") == ["UID ADDTO (2 3)"]
    ok(other, "STORE 4 -FLAGS (\\Flagged)")  # m3 m2
    assert updates(ok(watcher, "NOOP"), "S01") == ["UID REMOVEFROM (1 4)"]
    (uid,) = connect.append([messages.plain(subject="m9")], flags="\\Flagged")  # m9 m3 m2
    assert updates(ok(watcher, "NOOP"), "S01") == [f"UID ADDTO (1 {uid})"]
    ok(other, "STORE 1,5 +FLAGS (\\Flagged)")  # m9 m5 m3 m2 m1
    assert updates(ok(watcher, "NOOP"), "S01") == ["UID ADDTO (2 5 5 1)"]
    assert expunge_seen(watcher, other, 2, "S01") == ["UID REMOVEFROM (4 2)"]
    again = tagged_ok(watcher, "UID SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 FLAGGED", "S02")
    assert updates(again, "S02") == [f"UID ALL {uid},5,3,1"]
    # sequence numbers: the message 5 is number 4 now
    tagged_ok(watcher, "SORT RETURN (UPDATE) (SUBJECT) UTF-8 FLAGGED", "S03")
    ok(other, "STORE 4 -FLAGS (\\Flagged)")
    assert updates(ok(watcher, "NOOP"), "S03") == ["REMOVEFROM (3 4)"]


@pytest.mark.one_backend
def test_limit_and_refusals(pair: tuple[RawClient, RawClient]) -> None:
    watcher, _ = pair
    for n in range(8):  # ServerSettings.max_search_contexts
        response = tagged_ok(watcher, "SEARCH RETURN (UPDATE) FLAGGED", f"G{n}")
        assert "NOUPDATE" not in " ".join(response.codes())
    # one more: NOUPDATE, and the search still answers (RFC 5267 4.3.1)
    over = tagged_ok(watcher, "SEARCH RETURN (UPDATE COUNT) FLAGGED", "G9")
    assert over.codes() == ['NOUPDATE "G9"']
    assert updates(over, "G9") == ["COUNT 2"]
    # a tag in use by a context is refused (4.3)
    assert watcher.command("SEARCH RETURN (UPDATE) ALL", tag="G1").status == "BAD"
    ok(watcher, 'CANCELUPDATE "G1" "G2"')
    assert watcher.command('CANCELUPDATE "G1"').status == "NO"
    tagged_ok(watcher, "SEARCH RETURN (UPDATE) FLAGGED", "G1")
    assert watcher.command("UID SORT RETURN (UPDATE) (ARRIVAL) UTF-8 ALL", tag="G1").status == "BAD"
    ok(watcher, "SEARCH RETURN (CONTEXT COUNT) ALL")  # a hint
    all_bad(
        watcher,
        [
            "CANCELUPDATE",
            "CANCELUPDATE (G3)",
            "SEARCH RETURN (UPDATE PARTIAL 1:2 ALL) ALL",
        ],
    )
    # leaving the mailbox ends every context
    ok(watcher, "UNSELECT")
    ok(watcher, "SELECT INBOX")
    assert watcher.command('CANCELUPDATE "G3"').status == "NO"
