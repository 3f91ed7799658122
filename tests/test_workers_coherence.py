"""``--workers 2``: a change answered in one child is reported by the very next command of a
session in the other child (NOOP, IDLE's start, STATUS, SELECT), as one process per
connection would report it.  Many rounds, since the failures this guards against are races
(a file event or a NOTIFY still on its way when the command ends)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from imapserver import new_user
from test_service_workers import (
    SPECS,
    STARTUP,
    accepting,
    children,
    logged_in,
    serving_pid,
    wait_for,
)

from bench.harness import RawClient, Response, ServerProcess

ROUNDS = 200


@pytest.fixture(params=["maildir", "sql-postgresql"], scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for the module; each test has a user of its own."""
    data = tmp_path_factory.mktemp("coherence") / "data"
    proc = ServerProcess(data, SPECS[request.param], extra_args=["--workers", "2"])
    proc.start()
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, STARTUP)
        wait_for(lambda: accepting(proc) == 2, STARTUP)
        yield proc
    finally:
        proc.stop()


def in_worker(server: ServerProcess, user: str, password: str, pid: int) -> RawClient:
    """A logged-in session served by child ``pid``."""
    pids = children(server.pid)
    for _ in range(80):
        client = logged_in(server, user, password)
        if serving_pid(client, pids) == pid:
            return client
        client.close()
    raise AssertionError(f"no connection reached worker {pid}")


class Sessions:
    """``actor`` in one child; ``watcher`` (INBOX selected) and ``other`` in the second."""

    def __init__(self, server: ServerProcess) -> None:
        self.user = user = new_user()
        server.add_user(user.name, user.password)
        pids = sorted(children(server.pid))
        self.actor = in_worker(server, user.name, user.password, pids[0])
        self.watcher = in_worker(server, user.name, user.password, pids[1])
        self.other = in_worker(server, user.name, user.password, pids[1])
        assert self.actor.command("CREATE Side").ok
        assert self.actor.command("SELECT INBOX").ok
        selected = self.watcher.command("SELECT INBOX")
        assert selected.numbers("EXISTS") == [0]
        self.seen = 0  # messages the watcher was told of
        self.count = 0  # messages the actor knows INBOX has
        self.uidnext = 1

    def append(self, mailbox: str = "INBOX") -> int:
        response = self.actor.command(f"APPEND {mailbox} {{12+}}\r\nSubject: x\r\n\r\n")
        assert response.ok, response.line
        uid = int(response.code.split()[2])  # type: ignore[union-attr]
        if mailbox == "INBOX":
            self.count += 1
            self.uidnext = uid + 1
        return uid

    def track(self, response: Response) -> None:
        for n in response.numbers("EXISTS"):
            self.seen = n
        self.seen -= len(response.numbers("EXPUNGE"))

    def noop(self, what: str) -> Response:
        response = self.watcher.command("NOOP")
        assert response.ok, response.line
        self.track(response)
        assert self.seen == self.count, f"{what}: NOOP tells {self.seen}, there are {self.count}"
        return response


def status(client: RawClient, mailbox: str) -> dict[str, int]:
    response = client.command(f"STATUS {mailbox} (MESSAGES UIDNEXT)")
    assert response.ok, response.line
    found = re.findall(rb"(MESSAGES|UIDNEXT) (\d+)", response.data("STATUS")[0])
    return {key.decode(): int(value) for key, value in found}


def test_the_next_command_in_the_other_worker_reports_each_change(server: ServerProcess) -> None:
    s = Sessions(server)
    for i in range(ROUNDS):
        kind = i % 5
        if kind == 0:
            s.append()
            s.noop(f"round {i}: APPEND")
        elif kind == 1:
            s.append("Side")
            assert s.actor.command("SELECT Side").ok
            assert s.actor.command("COPY 1 INBOX").ok
            s.count += 1
            s.noop(f"round {i}: COPY")
            assert s.actor.command("MOVE 1 INBOX").ok
            s.count += 1
            s.noop(f"round {i}: MOVE")
            assert s.actor.command("SELECT INBOX").ok
        elif kind == 2:
            uid = s.append()
            s.noop(f"round {i}: APPEND")
            assert s.actor.command(f"UID STORE {uid} +FLAGS (\\Flagged)").ok
            answer = s.noop(f"round {i}: STORE")
            assert any(b"\\Flagged" in line for line in answer.data("FETCH")), (
                f"round {i}: NOOP did not report the flag of UID {uid}: {answer.untagged!r}"
            )
        elif kind == 3:
            s.append()
            assert s.actor.command("STORE 1:* +FLAGS.SILENT (\\Deleted)").ok
            expunged = s.actor.command("EXPUNGE")
            assert expunged.ok
            s.count -= len(expunged.numbers("EXPUNGE"))
            seen = status(s.other, "INBOX")
            assert seen == {"MESSAGES": s.count, "UIDNEXT": s.uidnext}, f"round {i}: STATUS"
            s.noop(f"round {i}: EXPUNGE")
        else:
            uid = s.append()
            seen = status(s.other, "INBOX")
            assert seen == {"MESSAGES": s.count, "UIDNEXT": uid + 1}, f"round {i}: STATUS"
            selected = s.other.command("EXAMINE INBOX")
            assert selected.numbers("EXISTS") == [s.count], f"round {i}: EXAMINE"
            assert s.other.command("CLOSE").ok
            s.noop(f"round {i}: APPEND (then STATUS)")


def test_idle_starts_with_what_the_other_worker_did(server: ServerProcess) -> None:
    s = Sessions(server)
    for i in range(ROUNDS // 4):
        s.append()
        s.watcher.send(b"i IDLE\r\n")
        lines = []
        while not (line := s.watcher.read_line()).startswith(b"+"):
            lines.append(line)
        s.watcher.send(b"DONE\r\n")
        done = s.watcher.read_until_tagged("i")
        assert done.ok
        told = [int(m.group(1)) for m in map(re.compile(rb"^\* (\d+) EXISTS").match, lines) if m]
        assert told == [s.count], f"round {i}: before IDLE's + came {lines!r}"


def test_mailboxes_made_in_one_worker_are_there_in_the_other(server: ServerProcess) -> None:
    s = Sessions(server)
    for i in range(ROUNDS // 4):
        assert s.actor.command(f"CREATE New{i}").ok
        assert status(s.other, f"New{i}") == {"MESSAGES": 0, "UIDNEXT": 1}, f"round {i}"
        s.append(f"New{i}")
        assert status(s.other, f"New{i}")["MESSAGES"] == 1, f"round {i}: APPEND"
        assert s.actor.command(f"RENAME New{i} Renamed{i}").ok
        assert status(s.other, f"Renamed{i}")["MESSAGES"] == 1, f"round {i}: RENAME"
        assert not s.other.command(f"STATUS New{i} (MESSAGES)").ok, f"round {i}: old name"
        selected = s.other.command(f"SELECT Renamed{i}")
        assert selected.numbers("EXISTS") == [1], f"round {i}: SELECT after RENAME"
        assert s.other.command("CLOSE").ok


def test_concurrent_appends_in_both_workers_all_reach_a_watcher(server: ServerProcess) -> None:
    """Appends racing in the two children (UIDs taken in one order, answered in another):
    an IDLE watcher, and sessions that SELECT while they go on, are told of every message
    (none skipped for arriving after a higher UID, or below the UIDNEXT SELECT gave)."""
    s = Sessions(server)
    pids = sorted(children(server.pid))
    user, password = s.user.name, s.user.password
    second = in_worker(server, user, password, pids[1])
    per_actor = ROUNDS // 2

    def appends(client: RawClient) -> None:
        for _ in range(per_actor):
            assert client.command("APPEND INBOX {12+}\r\nSubject: x\r\n\r\n").ok

    actors = [threading.Thread(target=appends, args=(c,)) for c in (s.actor, second)]
    s.watcher.send(b"i IDLE\r\n")
    assert s.watcher.read_line().startswith(b"+")
    for actor in actors:
        actor.start()
    late: list[tuple[RawClient, int]] = []  # sessions that selected during the appends
    while any(actor.is_alive() for actor in actors):
        client = logged_in(server, user, password)  # in either child
        # (the last EXISTS: what arrived meanwhile follows the snapshot's count)
        late.append((client, client.command("SELECT INBOX").numbers("EXISTS")[-1]))
    for actor in actors:
        actor.join()
    s.watcher.send(b"DONE\r\n")
    s.track(s.watcher.read_until_tagged("i"))
    s.count = 2 * per_actor
    s.noop("IDLE during the appends, then NOOP")
    for i, (client, exists) in enumerate(late):
        told = client.command("NOOP").numbers("EXISTS")
        if (told or [exists])[-1] != s.count:
            listed = client.command("UID SEARCH ALL").data("SEARCH")[0].split()
            missing = sorted(set(range(1, s.count + 1)) - {int(u) for u in listed})
            raise AssertionError(f"session {i} (selected with {exists}) misses UIDs {missing}")
        client.close()


def test_select_in_either_worker_shows_what_the_other_did(server: ServerProcess) -> None:
    """SELECT right after a change answered in the other child: the messages, the first
    unseen (``[UNSEEN n]``) and \\Recent as they are (a store may keep what it read of a
    mailbox for all its sessions: the other child's change must show all the same), each
    new message recent to the first SELECT only, in whichever child that was."""
    s = Sessions(server)
    pids = sorted(children(server.pid))
    user, password = s.user.name, s.user.password
    assert s.actor.command("CLOSE").ok  # appends claim nothing: the actor has none selected
    storer = in_worker(server, user, password, pids[0])
    assert storer.command("SELECT INBOX").ok
    readers = [in_worker(server, user, password, pid) for pid in pids]
    uids: list[int] = []
    seen: set[int] = set()
    for i in range(ROUNDS // 4):
        new = i % 3 != 2
        if new:
            uids.append(s.append())
        else:
            uid = uids[i % len(uids)]
            sign = "-" if uid in seen else "+"
            assert storer.command("NOOP").ok  # the new messages are known to it first
            assert storer.command(f"UID STORE {uid} {sign}FLAGS.SILENT (\\Seen)").ok
            seen ^= {uid}
        unseen = [n for n, uid in enumerate(uids, 1) if uid not in seen]
        first, second = readers if i % 2 else readers[::-1]
        for client, recent in ((first, int(new)), (second, 0)):
            answer = client.command("SELECT INBOX")
            assert answer.ok, answer.line
            codes = dict(code.partition(" ")[::2] for code in answer.codes())
            assert answer.numbers("EXISTS") == [len(uids)], f"round {i}"
            assert answer.numbers("RECENT") == [recent], f"round {i}"
            assert codes.get("UNSEEN") == (str(unseen[0]) if unseen else None), f"round {i}"
