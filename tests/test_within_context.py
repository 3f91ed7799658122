"""CONTEXT=SEARCH with WITHIN (RFC 5267 4, RFC 5032): a context whose criteria hold OLDER or
YOUNGER changes with time alone, and is told so (REMOVEFROM/ADDTO) after the recheck
interval, at once while IDLE, with the next command otherwise.  The timer and the search
again are the engine's: one backend, with a server whose recheck runs every half second."""

from __future__ import annotations

import time

import pytest
from imapserver import Connector, ServerFactory, ok

from bench import messages
from bench.harness import RawClient, ServerProcess


def connector(server_factory: ServerFactory, recheck: float) -> Connector:
    server: ServerProcess = server_factory(limits={"within_recheck": recheck})
    return Connector(server, server_factory.user(server))


def esearch_lines(lines: list[bytes], tag: str) -> list[str]:
    prefix = f'* ESEARCH (TAG "{tag}") UID'
    texts = [line.decode().rstrip("\r\n") for line in lines]
    return [text[len(prefix) :].strip() for text in texts if text.startswith(prefix)]


def idle_until(client: RawClient, wanted: int, bound: float = 20.0) -> list[bytes]:
    """IDLE until ``wanted`` ESEARCH lines came (or ``bound`` seconds: a hang), then DONE."""
    client.send(b"I1 IDLE\r\n")
    assert client.read_line().startswith(b"+")
    lines: list[bytes] = []
    deadline = time.monotonic() + bound
    while sum(b"ESEARCH" in line for line in lines) < wanted and time.monotonic() < deadline:
        lines.append(client.read_line())
    client.send(b"DONE\r\n")
    while not (line := client.read_line()).startswith(b"I1 "):
        lines.append(line)
    assert line.startswith(b"I1 OK"), line
    return lines


@pytest.mark.one_backend
def test_time_moves_messages_in_and_out(server_factory: ServerFactory) -> None:
    """Session 1 IDLEs and is told at once; session 2 is told with its next command."""
    connect = connector(server_factory, 0.5)
    (uid,) = connect.append([messages.plain(subject="now")])
    client, other = connect.selected(), connect.selected()
    young = client.command("UID SEARCH RETURN (UPDATE ALL) YOUNGER 1", tag="Y1")
    old = client.command("UID SEARCH RETURN (UPDATE ALL) OLDER 1", tag="O1")
    plain = client.command("UID SEARCH RETURN (UPDATE ALL) ALL", tag="A1")
    assert young.ok and old.ok and plain.ok
    assert esearch_lines(young.untagged, "Y1") == [f"ALL {uid}"], young.untagged
    assert esearch_lines(old.untagged, "O1") == [""], old.untagged
    assert other.command("UID SEARCH RETURN (UPDATE) YOUNGER 1", tag="Y2").ok
    lines = idle_until(client, 2)
    assert esearch_lines(lines, "Y1") == [f"REMOVEFROM (0 {uid})"], lines
    assert esearch_lines(lines, "O1") == [f"ADDTO (0 {uid})"], lines
    assert not esearch_lines(lines, "A1"), lines
    ok(client, "CANCELUPDATE Y1 O1")
    deadline = time.monotonic() + 20
    told: list[str] = []
    while not told and time.monotonic() < deadline:  # told already, unless very slow
        told = esearch_lines(ok(other, "NOOP").untagged, "Y2")
        time.sleep(0 if told else 0.2)
    assert told == [f"REMOVEFROM (0 {uid})"]
