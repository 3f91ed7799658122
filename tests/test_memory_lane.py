"""The memory backend over real sockets: a big change of one user leaves the reactor to
the others, and two sessions' big changes of one mailbox take turns (the kit's lane)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from imapserver import User, new_user

from bench.harness import BackendSpec, RawClient, ServerProcess

DOUBLINGS = 16
"""INBOX holds 2**16 messages: a change of all of them takes the backend 100+ ms."""
COUNT = 2**DOUBLINGS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("memlane"), BackendSpec("memory"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def owner(server: ServerProcess) -> User:
    """A user whose INBOX holds ``COUNT`` messages (made by doubling with COPY)."""
    user = new_user()
    server.add_user(user.name, user.password)
    client = login(server, user)
    body = b"Subject: note\r\nMessage-ID: <n@example.org>\r\n\r\nhello\r\n"
    assert all(r.ok for r in client.append_many("INBOX", [body]))
    assert client.command("SELECT INBOX").ok
    for _ in range(DOUBLINGS):
        assert client.command("COPY 1:* INBOX").ok
    client.close()
    return user


def login(server: ServerProcess, user: User) -> RawClient:
    client = RawClient.connect(server.imap_port, timeout=120)
    client.login(user.name, user.password)
    return client


def other_user(server: ServerProcess) -> RawClient:
    user = new_user()
    server.add_user(user.name, user.password)
    return login(server, user)


class Probe:
    """Another user's NOOPs, one after the other in a thread: (sent, answered) of each."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.times: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        time.sleep(0.05)  # under way

    def _run(self) -> None:
        while not self._done.is_set():
            sent = time.perf_counter()
            assert self.client.command("NOOP").ok
            self.times.append((sent, time.perf_counter()))
            time.sleep(0.002)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(60)
        self.client.close()


def timed(client: RawClient, command: str) -> tuple[float, float]:
    start = time.perf_counter()
    assert client.command(command).ok
    return start, time.perf_counter()


def test_noops_sent_during_a_big_copy_are_answered_before_it(
    server: ServerProcess, owner: User
) -> None:
    """Before, the COPY of 65k messages held the reactor to its end: another user's NOOP
    sent while it ran was answered after it."""
    actor = login(server, owner)
    assert actor.command("CREATE Big").ok and actor.command("SELECT INBOX").ok
    probe = Probe(other_user(server))
    start, end = timed(actor, "COPY 1:* Big")
    probe.stop()
    inside = [(a, b) for a, b in probe.times if a > start + 0.01 and b < end]
    assert inside, (end - start, [(a - start, b - start) for a, b in probe.times[-5:]])
    assert actor.command("STATUS Big (MESSAGES)").data("STATUS") == [b"Big (MESSAGES %d)" % COUNT]
    actor.close()


def test_a_big_store_holds_up_nobody(server: ServerProcess, owner: User) -> None:
    """Another user's NOOP sent while ``STORE 1:*`` over 65k messages runs is answered
    before the STORE ends (before: after it).  How long it may wait is issue 10's probe
    target, measured by ``bench.storeprof --watch``: on a loaded machine one turn of the
    scheduler is longer than the server's slices."""
    actor = login(server, owner)
    assert actor.command("SELECT INBOX").ok
    probe = Probe(other_user(server))
    start, end = timed(actor, "STORE 1:* +FLAGS.SILENT (\\Flagged)")
    probe.stop()
    inside = [(a, b) for a, b in probe.times if a > start + 0.005 and b < end]
    assert inside, (end - start, [(a - start, b - start) for a, b in probe.times[-5:]])
    actor.close()


def test_overlapping_stores_of_two_sessions_take_turns(server: ServerProcess, owner: User) -> None:
    """One session sets \\Seen on every message while another clears it: whichever runs
    second wins on every message (before the lane, slices of both could interleave and
    leave some messages seen and others not)."""
    first, second = login(server, owner), login(server, owner)
    assert first.command("SELECT INBOX").ok and second.command("SELECT INBOX").ok
    first.send(b"a1 STORE 1:* +FLAGS.SILENT (\\Seen)\r\n")
    time.sleep(0.01)
    second.send(b"b1 STORE 1:* -FLAGS.SILENT (\\Seen)\r\n")
    assert first.read_until_tagged("a1").ok and second.read_until_tagged("b1").ok
    seen = first.command("SEARCH SEEN").data("SEARCH")
    count = len(seen[0].split()) if seen and seen[0] else 0
    assert count in (0, COUNT), count
    status = first.command("STATUS INBOX (UNSEEN)").data("STATUS")
    assert status == [b"INBOX (UNSEEN %d)" % (COUNT - count)]
    first.close()
    second.close()


def test_long_commands_of_four_sessions_at_once_share_the_turns(
    server: ServerProcess, owner: User
) -> None:
    """Four sessions' long commands run at once (two SEARCHes, a FETCH of every message, a
    STORE of all of them) in the turns they share, while another user's NOOPs are answered
    between their slices; every answer is whole and right.  (No SEARCH TEXT: indexing 65k
    texts would load the machine for seconds.)"""
    clients = [login(server, owner) for _ in range(4)]
    for client in clients:
        assert client.command("SELECT INBOX").ok
    commands = [
        "SEARCH LARGER 100000",
        "FETCH 1:* (UID FLAGS)",
        "UID SEARCH SINCE 1-Jan-2000",
        "STORE 1:* +FLAGS.SILENT ($Turns)",
    ]
    probe = Probe(other_user(server))
    start = time.perf_counter()
    for n, (client, command) in enumerate(zip(clients, commands, strict=True)):
        client.send(f"k{n} {command}\r\n".encode())
    answers = [client.read_until_tagged(f"k{n}") for n, client in enumerate(clients)]
    first_done = time.perf_counter()  # no earlier than the first of them ended
    probe.stop()
    assert all(answer.ok for answer in answers), [a.line for a in answers]
    searched, fetched, since, _stored = answers
    assert searched.data("SEARCH") in ([b""], [])
    assert set(fetched.numbers("FETCH")) == set(range(1, COUNT + 1))  # some twice: $Turns
    assert len(since.data("SEARCH")[0].split()) == COUNT
    found = clients[0].command("SEARCH KEYWORD $Turns").data("SEARCH")
    assert len(found[0].split()) == COUNT
    answered = [b for a, b in probe.times if start < b and a < first_done]
    assert answered, "the probe's NOOPs were answered while the commands ran"
    for client in clients:
        client.close()
