"""The proxy against a real Dovecot: a SELECT of a mailbox that races its RENAME or DELETE.

Dovecot (Maildir) takes a dot-lock, ``dovecot-uidlist.lock``, inside a mailbox's directory
when a SELECT or STATUS first opens it.  A RENAME that runs meanwhile on another connection
moves the directory and the lock file with it: the opener then misses its own lock (it
removes the old path), and the lock, naming a live process, blocks every later opener and
the DELETE of the new name until that process exits (or two minutes pass).  The proxy keeps
its upstream connections open, so a DELETE after such a race hung until its timeout.  The
proxy now lets no SELECT/EXAMINE/STATUS of a name run upstream while a RENAME or DELETE of
it (or of a parent) does, in one process and across ``--workers``.

Also here: APPENDs racing a mailbox's first SELECT upstream, and what one worker stored
counted at once by a SELECT or STATUS in the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot import Dovecot, available
from test_service_workers import children, serving_pid, wait_for

from bench.harness import BackendSpec, RawClient, ServerProcess, quote

pytestmark = [
    pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed"),
    pytest.mark.timeout(180),
]

PASSWORD = "pw"
ROUNDS = 12
DELAYS = (-1.0, 0.0, 0.001, 0.002, 0.004)
"""Seconds after the RENAME that a racing STATUS is sent (negative: before it)."""
ANSWER_WITHIN = 6.0
"""Seconds: well under the proxy's upstream timeout, far over a healthy DELETE."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Dovecot]:
    server = Dovecot()
    server.add_user("racer", PASSWORD)
    server.start()
    time.sleep(1.1)  # passwd-file is re-read at most once a second
    yield server
    server.stop()


def proxy_of(
    upstream: Dovecot, tmp_path_factory: pytest.TempPathFactory, workers: int
) -> Iterator[ServerProcess]:
    spec = BackendSpec("proxy", options=upstream.upstream_options())
    server = ServerProcess(
        tmp_path_factory.mktemp(f"proxy{workers}"),
        spec,
        limits={"auth_failure_delay": 0.05},
        extra_args=["--workers", str(workers)],
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream: Dovecot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from proxy_of(upstream, tmp_path_factory, 1)


def login(server: ServerProcess) -> RawClient:
    client = RawClient.connect(server.imap_port, timeout=ANSWER_WITHIN)
    assert client.command(f"LOGIN racer {quote(PASSWORD)}").ok
    return client


def close(*clients: RawClient) -> None:
    for client in clients:
        try:
            client.close()
        except OSError:
            pass


def race(n: int, opener: RawClient, opening: str, actor: RawClient, renaming: str) -> None:
    """Send ``opening`` and ``renaming`` about together.  The proxy's RENAME asks LIST
    upstream first, so the opening is sent a little before or after it, by turns."""
    delay = DELAYS[n % len(DELAYS)]
    if delay < 0:
        opener.send(opening + "\r\n")
    actor.send(renaming + "\r\n")
    if delay >= 0:
        time.sleep(delay)
        opener.send(opening + "\r\n")


def deleted_at_once(actor: RawClient, name: str, n: int) -> None:
    """DELETE ``name`` answers OK well within the upstream timeout: no lock was left behind."""
    try:
        response = actor.command(f"DELETE {name}")
    except TimeoutError:
        pytest.fail(f"round {n}: DELETE {name} had no answer in {ANSWER_WITHIN} s")
    assert response.ok, (n, response.line)


def test_delete_answers_after_a_select_raced_the_rename(proxy: ServerProcess) -> None:
    actor = login(proxy)
    for n in range(ROUNDS):
        fresh, renamed = f"Fresh{n}", f"Renamed{n}"
        assert actor.command(f"CREATE {fresh}").ok
        watcher, other = login(proxy), login(proxy)
        race(n, watcher, f"s1 SELECT {fresh}", actor, f"r1 RENAME {fresh} {renamed}")
        watcher.read_until_tagged("s1")  # OK, or NO when the RENAME came first
        assert actor.read_until_tagged("r1").ok
        other.send(f"s2 SELECT {renamed}\r\n")
        started = time.monotonic()
        actor.send(f"d1 DELETE {renamed}\r\n")
        try:
            response = actor.read_until_tagged("d1")
        except TimeoutError:
            pytest.fail(f"round {n}: DELETE {renamed} had no answer in {ANSWER_WITHIN} s")
        assert response.ok, (n, response.line)
        assert time.monotonic() - started < ANSWER_WITHIN
        other.read_until_tagged("s2")
        assert actor.command(f"SELECT {renamed}").status == "NO"
        close(watcher, other)
    assert actor.command("LOGOUT").ok


def test_rename_of_a_parent_moves_a_child_being_selected(proxy: ServerProcess) -> None:
    """The lock covers the names inside a renamed mailbox: their directories move too."""
    actor = login(proxy)
    for n in range(ROUNDS):
        parent, child, moved = f"Top{n}", f"Top{n}/Sub", f"Moved{n}"
        assert actor.command(f"CREATE {child}").ok
        watcher = login(proxy)
        race(n, watcher, f"s1 SELECT {child}", actor, f"r1 RENAME {parent} {moved}")
        watcher.read_until_tagged("s1")
        assert actor.read_until_tagged("r1").ok
        deleted_at_once(actor, f"{moved}/Sub", n)
        assert actor.command(f"DELETE {moved}").ok
        close(watcher)
    assert actor.command("LOGOUT").ok


def test_status_racing_rename_then_select(proxy: ServerProcess, tmp_path: Path) -> None:
    """STATUS opens the mailbox upstream as SELECT does."""
    actor = login(proxy)
    for n in range(ROUNDS):
        fresh, renamed = f"Stat{n}", f"StatRenamed{n}"
        assert actor.command(f"CREATE {fresh}").ok
        watcher = login(proxy)
        race(
            n,
            watcher,
            f"t1 STATUS {fresh} (MESSAGES UIDNEXT)",
            actor,
            f"r1 RENAME {fresh} {renamed}",
        )
        watcher.read_until_tagged("t1")
        assert actor.read_until_tagged("r1").ok
        try:
            response = actor.command(f"SELECT {renamed}")
            assert response.ok, (n, response.line)
            assert actor.command("UNSELECT").ok
            response = actor.command(f"DELETE {renamed}")
        except TimeoutError:
            pytest.fail(f"round {n}: {renamed} could not be opened in {ANSWER_WITHIN} s")
        assert response.ok, (n, response.line)
        close(watcher)
    assert actor.command("LOGOUT").ok


APPENDERS = 3
APPEND_ROUNDS = 40
APPEND_DELAYS = (0.0, 0.001, 0.002, 0.003, 0.004, 0.006, 0.008, 0.01)
"""Seconds after the EXAMINE that the APPENDs are sent."""


def test_appends_racing_the_first_select_are_all_counted(proxy: ServerProcess) -> None:
    """APPENDs that go upstream on other connections while the mailbox is first selected
    there: the upstream tells the selecting connection of them during its listing (an EXISTS
    amid the UID FETCH) or not at all until asked.  Once the APPENDs are answered, every
    session counts every message."""
    actor = login(proxy)
    body = b"From: a@example.org\r\nSubject: race\r\n\r\nhello\r\n"
    for n in range(APPEND_ROUNDS):
        box = f"Appended{n}"
        assert actor.command(f"CREATE {box}").ok
        watcher = login(proxy)
        appenders = [login(proxy) for _ in range(APPENDERS)]
        watcher.send(f"e1 EXAMINE {box}\r\n")
        time.sleep(APPEND_DELAYS[n % len(APPEND_DELAYS)])
        for client in appenders:
            client.send(b"a1 APPEND %s {%d+}\r\n%s\r\n" % (box.encode(), len(body), body))
        assert all(client.read_until_tagged("a1").ok for client in appenders)
        examined = watcher.read_until_tagged("e1")
        assert examined.ok
        counted = actor.command(f"STATUS {box} (MESSAGES)").data("STATUS")
        assert counted == [f"{box} (MESSAGES {APPENDERS})".encode()], n
        told = examined.data("EXISTS") + watcher.command("NOOP").data("EXISTS")
        assert told[-1:] == [b"%d" % APPENDERS], n
        close(watcher, *appenders)
    assert actor.command("LOGOUT").ok


LISTED_ROUNDS = 80


def test_a_message_expunged_while_it_is_listed_is_not_kept(
    proxy: ServerProcess, upstream: Dovecot
) -> None:
    """Messages appended and expunged at once by another client of the upstream, while a
    session has the mailbox selected here: the proxy lists each new message when the
    upstream's IDLE tells of it, and the upstream may list one that was expunged meanwhile,
    telling the expunge at the end of that same answer.  None of them stays behind."""
    watcher = login(proxy)
    direct = RawClient.connect(upstream.imap_port, timeout=ANSWER_WITHIN)
    assert direct.command(f"LOGIN racer {quote(PASSWORD)}").ok
    box = "Listed"
    assert direct.command(f"CREATE {box}").ok
    assert watcher.command(f"SELECT {box}").ok
    assert direct.command(f"SELECT {box}").ok
    body = b"From: a@example.org\r\nSubject: gone\r\n\r\nhello\r\n"
    for n in range(LISTED_ROUNDS):
        assert direct.command_with_literal(f"APPEND {box} (\\Deleted) ", body).ok
        time.sleep((n % 40) * 0.0005)  # the expunge lands before, during or after the listing
        assert direct.command("EXPUNGE").ok
    assert watcher.command("NOOP").ok
    assert watcher.command("SEARCH ALL").data("SEARCH") == [b""]
    fresh = login(proxy)
    assert fresh.command(f"EXAMINE {box}").data("EXISTS") == [b"0"]
    close(watcher, direct, fresh)


@pytest.mark.parametrize(("messages", "expunged"), [(3, 2), (2, 1)])
def test_a_move_tells_what_another_client_expunged_meanwhile(
    proxy: ServerProcess, upstream: Dovecot, messages: int, expunged: int
) -> None:
    """Another client of the upstream expunges a message; before the upstream's IDLE tells
    the proxy, a session here moves message 1.  The upstream tells the other client's
    expunge in the MOVE's answer: it is news the session is told like any other session
    (its MOVE tells only what it moved).  When the message moved is the one expunged
    (``expunged`` 1), the upstream refuses the MOVE (Dovecot: "Some of the requested
    messages no longer exist"); the MOVE answers OK, moving nothing, as a UID command of
    vanished messages does."""
    direct = RawClient.connect(upstream.imap_port, timeout=ANSWER_WITHIN)
    assert direct.command(f"LOGIN racer {quote(PASSWORD)}").ok
    mover = login(proxy)
    body = b"From: a@example.org\r\nSubject: moved\r\n\r\nhello\r\n"
    target = f"MovedTo{expunged}"
    assert direct.command(f"CREATE {target}").ok
    for n in range(ROUNDS // 2):
        box = f"MovedFrom{expunged}x{n}"
        assert direct.command(f"CREATE {box}").ok
        for _ in range(messages):
            assert direct.command_with_literal(f"APPEND {box} ", body).ok
        assert mover.command(f"SELECT {box}").data("EXISTS") == [b"%d" % messages]
        assert direct.command(f"SELECT {box}").ok
        assert direct.command(f"UID STORE {expunged} +FLAGS.SILENT (\\Deleted)").ok
        assert direct.command(f"UID EXPUNGE {expunged}").ok
        moved = mover.command(f"UID MOVE 1 {target}")
        assert moved.ok
        told = moved.numbers("EXPUNGE") + mover.command("NOOP").numbers("EXPUNGE")
        assert len(told) == messages - 1, (n, told)
        assert mover.command("FETCH 1 (UID)").data("FETCH") == [b"1 (UID %d)" % messages], n
        assert direct.command("CLOSE").ok
    close(direct, mover)


def test_shutdown_logs_no_error(
    upstream: Dovecot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM with sessions selected: the upstream sessions log out, and the last LOGOUT
    answer (read inside a TLS connection's callback) does not run the reactor's own
    shutdown from there, which made Twisted's TLS log an AttributeError every time."""
    spec = BackendSpec("proxy", options=upstream.upstream_options())
    server = ServerProcess(tmp_path_factory.mktemp("shutdown"), spec)
    server.start()
    clients = [login(server) for _ in range(3)]
    for client in clients:
        assert client.command("SELECT INBOX").ok
    server.stop()
    log = server.log_path.read_text()
    assert "Main loop terminated" in log
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
    close(*clients)


@pytest.fixture(scope="module")
def two_workers(
    upstream: Dovecot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    yield from proxy_of(upstream, tmp_path_factory, 2)


def on_another_worker(server: ServerProcess, first: RawClient) -> RawClient:
    """A logged-in client served by a worker other than ``first``'s."""
    wait_for(lambda: len(children(server.pid)) == 2, 60.0)
    pids = children(server.pid)
    mine = serving_pid(first, pids)
    for _ in range(60):
        other = login(server)
        if serving_pid(other, pids) != mine:
            return other
        close(other)
    raise AssertionError("every connection went to one worker")


def test_rename_and_select_in_two_workers(two_workers: ServerProcess, upstream: Dovecot) -> None:
    """The name locks hold across the workers: a SELECT served by one worker that races a
    RENAME served by the other leaves no lock behind upstream (the DELETE that follows
    answers at once)."""
    actor = login(two_workers)
    for n in range(ROUNDS * 2):
        fresh, renamed = f"Cross{n}", f"CrossRenamed{n}"
        assert actor.command(f"CREATE {fresh}").ok
        watcher = on_another_worker(two_workers, actor)
        race(n, watcher, f"s1 SELECT {fresh}", actor, f"r1 RENAME {fresh} {renamed}")
        watcher.read_until_tagged("s1")
        renaming = actor.read_until_tagged("r1")
        # Once in a full run (not in 300 rounds alone) the upstream's RENAME said NONEXISTENT
        # for a mailbox its LIST had just shown: the logs tell the next reader more.
        assert renaming.ok, (
            n,
            renaming.line,
            upstream.log_text()[-3000:],
            two_workers.log_text()[-3000:],
        )
        deleted_at_once(actor, renamed, n)
        close(watcher)
    assert actor.command("LOGOUT").ok


def test_select_and_status_in_one_worker_count_what_the_other_stored(
    two_workers: ServerProcess,
) -> None:
    """A mailbox one worker has live (a session of it has it selected): a SELECT or STATUS
    there asks the upstream for news first, so a message the other worker has just stored
    is counted at once, not when the upstream's IDLE tells of it."""
    actor = login(two_workers)
    watcher = on_another_worker(two_workers, actor)
    reader = on_another_worker(two_workers, actor)  # the watcher's worker (two in all)
    box = "Coherent"
    assert actor.command(f"CREATE {box}").ok
    assert watcher.command(f"SELECT {box}").ok
    body = b"From: a@example.org\r\nSubject: seen\r\n\r\nhello\r\n"
    for n in range(1, ROUNDS * 2 + 1):
        assert actor.command_with_literal(f"APPEND {box} ", body).ok
        counted = reader.command(f"STATUS {box} (MESSAGES)").data("STATUS")
        assert counted == [f"{box} (MESSAGES {n})".encode()], n
        assert reader.command(f"EXAMINE {box}").data("EXISTS") == [b"%d" % n], n
    close(actor, watcher, reader)


def test_noop_in_one_worker_tells_what_the_other_changed(two_workers: ServerProcess) -> None:
    """NOOP and CHECK (``IRefreshMailbox``) ask the upstream for news: a message the other
    worker stored and a flag it set are told by the selected session's next NOOP or CHECK,
    not when the upstream's IDLE reaches this worker."""
    actor = login(two_workers)
    watcher = on_another_worker(two_workers, actor)
    box = "Told"
    assert actor.command(f"CREATE {box}").ok
    assert watcher.command(f"SELECT {box}").ok
    assert actor.command(f"SELECT {box}").ok
    body = b"From: a@example.org\r\nSubject: told\r\n\r\nhello\r\n"
    for n in range(1, ROUNDS + 1):
        assert actor.command_with_literal(f"APPEND {box} ", body).ok
        verb = "NOOP" if n % 2 else "CHECK"
        assert watcher.command(verb).data("EXISTS") == [b"%d" % n], (n, verb)
        assert actor.command(f"STORE {n} +FLAGS (\\Flagged)").ok
        told = watcher.command(verb).data("FETCH")
        assert len(told) == 1 and b"\\Flagged" in told[0], (n, verb, told)
    close(actor, watcher)
