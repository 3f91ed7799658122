"""The proxy backend against a real Dovecot, black-box: ``twistd imapserv --backend proxy``.

Covers what the shared protocol suite cannot: logins checked upstream, certificate and host
name verification, an upstream that is down or hung, mail arriving upstream while a client
IDLEs, STARTTLS and master-user modes, and a dropped upstream connection.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from dovecot import Dovecot, available, make_ca

from bench.harness import BackendSpec, RawClient, ServerProcess, quote

pytestmark = [
    pytest.mark.skipif(not available(), reason="dovecot-imapd is not installed"),
    pytest.mark.timeout(90),
]

PASSWORD = 'pw "x\\y'
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: %d\r\n\r\nbody %d\r\n"


LIMITS = {"auth_failure_delay": 0.05}


def start_server(tmp: Path, options: Mapping[str, str]) -> ServerProcess:
    """One process: the tests read its log as it writes it (a worker's lines reach the
    master's log later); the proxy under ``--workers 2`` is tests/test_workers_proxy.py."""
    spec = BackendSpec("proxy", options=dict(options))
    server = ServerProcess(tmp, spec, limits=LIMITS, extra_args=["--workers", "1"])
    server.start()
    return server


def direct(upstream: Dovecot, user: str) -> RawClient:
    client = RawClient.connect(upstream.imap_port)
    client.login(user, PASSWORD)
    return client


def login(server: ServerProcess, user: str, password: str = PASSWORD) -> RawClient:
    client = RawClient.connect(server.imap_port)
    response = client.command(f"LOGIN {quote(user)} {quote(password)}")
    assert response.ok, response.line
    return client


def read_until(client: RawClient, pattern: bytes, timeout: float) -> tuple[bytes, float]:
    """The first response matching ``pattern`` and how long it took."""
    start = time.monotonic()
    client.settimeout(timeout)
    while True:
        line = client.read_response()
        if re.search(pattern, line):
            return line, time.monotonic() - start


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """The cert names only ``localhost``: connecting as 127.0.0.1 is a name mismatch."""
    ca = make_ca(tmp_path_factory.mktemp("ca"), names=("localhost",))
    server = Dovecot(ca=ca)
    for name in ("alice", "bob", "carol", "dave", "erin"):
        server.add_user(name, PASSWORD)
    server.add_master_user("gateway", "master-secret")
    server.start()
    time.sleep(1.1)  # passwd-file is re-read at most once a second
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream: Dovecot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("proxy"), upstream.upstream_options())
    yield server
    server.stop()


# -- logins ---------------------------------------------------------------------------------


def test_logins_are_checked_upstream(proxy: ServerProcess) -> None:
    login(proxy, "alice").command("LOGOUT")
    client = RawClient.connect(proxy.imap_port)
    for user, password in (("alice", "wrong"), ("nobody", PASSWORD)):
        response = client.command(f"LOGIN {quote(user)} {quote(password)}")
        assert response.status == "NO"
        assert response.code == "AUTHENTICATIONFAILED"


def test_mail_is_the_upstream_mail(proxy: ServerProcess, upstream: Dovecot) -> None:
    other = direct(upstream, "bob")
    assert other.command("CREATE Projects/2024").ok
    other.append_many("Projects/2024", [MESSAGE % (1, 1)], flags="\\Flagged")
    client = login(proxy, "bob")
    listed = client.command('LIST "" "*"').all_text()
    assert b"Projects/2024" in listed
    assert client.command("SELECT Projects/2024").ok
    fetched = client.command("FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])").all_text()
    assert b"\\Flagged" in fetched and b"Subject: 1" in fetched


def test_mail_that_arrived_upstream_is_recent_to_the_first_session_that_selects_it(
    proxy: ServerProcess, upstream: Dovecot
) -> None:
    """RFC 3501 2.3.2: an EXAMINE that is the first to open the mailbox here reports the
    new mail as \\Recent and claims none of it; the SELECT after it claims it; another
    session's SELECT then has none.  Again for mail that arrives once the proxy has
    opened the mailbox before, while no session here has it open."""
    box = "Arrivals"
    sender = direct(upstream, "carol")
    assert sender.command(f"CREATE {box}").ok
    first, second = login(proxy, "carol"), login(proxy, "carol")
    for arrived, exists in ((3, 3), (2, 5)):
        assert all(r.ok for r in sender.append_many(box, [MESSAGE % (exists, exists)] * arrived))
        examined = first.command(f"EXAMINE {box}")
        assert examined.data("RECENT") == [b"%d" % arrived], examined.all_text()
        assert examined.data("EXISTS") == [b"%d" % exists]
        assert first.command(f"SELECT {box}").data("RECENT") == [b"%d" % arrived]
        recent = first.command("UID SEARCH RECENT").data("SEARCH")
        assert len(recent[0].split()) == arrived, recent
        assert second.command(f"SELECT {box}").data("RECENT") == [b"0"]
        assert first.command("CLOSE").ok and second.command("CLOSE").ok
    for client in (first, second, sender):
        client.close()


# -- TLS verification -----------------------------------------------------------------------


def test_wrong_ca_is_refused(upstream: Dovecot, tmp_path: Path) -> None:
    stranger = make_ca(tmp_path / "other-ca", label="other")
    options = {**upstream.upstream_options(), "ca": str(stranger.ca_cert)}
    server = start_server(tmp_path / "server", options)
    try:
        client = RawClient.connect(server.imap_port)
        response = client.command(f"LOGIN alice {quote(PASSWORD)}")
        assert (response.status, response.code) == ("NO", "UNAVAILABLE")
        assert "certificate verify failed" in server.log_text()
        assert client.command("CAPABILITY").ok  # the server carries on
    finally:
        server.stop()


def test_wrong_host_name_is_refused(upstream: Dovecot, tmp_path: Path) -> None:
    options = upstream.upstream_options(host="127.0.0.1")
    server = start_server(tmp_path, options)
    try:
        client = RawClient.connect(server.imap_port)
        response = client.command(f"LOGIN alice {quote(PASSWORD)}")
        assert (response.status, response.code) == ("NO", "UNAVAILABLE")
        assert "does not match the host name" in server.log_text()
    finally:
        server.stop()


# -- an upstream that is down or hung -------------------------------------------------------


@pytest.fixture
def fragile(tmp_path: Path) -> Iterator[tuple[Dovecot, ServerProcess]]:
    """A Dovecot of its own (the test stops or freezes it) and a proxy with a 2 s timeout."""
    server = Dovecot()
    server.add_user("alice", PASSWORD)
    server.start()
    time.sleep(1.1)
    proxy = start_server(tmp_path, {**server.upstream_options(), "timeout": "2"})
    yield server, proxy
    proxy.stop()
    if server.proc is not None:
        server.resume()
    server.stop()


def test_stopped_upstream_answers_unavailable_promptly(
    fragile: tuple[Dovecot, ServerProcess],
) -> None:
    upstream, proxy = fragile
    client = login(proxy, "alice")
    assert client.command("SELECT INBOX").ok
    upstream.stop(remove=False)
    start = time.monotonic()
    response = client.command('LIST "" "*"')
    assert (response.status, response.code) == ("NO", "UNAVAILABLE")
    other = RawClient.connect(proxy.imap_port)
    response = other.command(f"LOGIN alice {quote(PASSWORD)}")
    assert (response.status, response.code) == ("NO", "UNAVAILABLE")
    assert time.monotonic() - start < 3
    assert proxy.alive


def test_hung_upstream_answers_unavailable_in_bounded_time(
    fragile: tuple[Dovecot, ServerProcess],
) -> None:
    upstream, proxy = fragile
    upstream.pause()
    try:
        client = RawClient.connect(proxy.imap_port)
        start = time.monotonic()
        response = client.command(f"LOGIN alice {quote(PASSWORD)}")
        took = time.monotonic() - start
    finally:
        upstream.resume()
    assert (response.status, response.code) == ("NO", "UNAVAILABLE")
    assert took < 6
    assert re.search(
        r"Upstream tls:\S+ unavailable: (no answer within 2 s|cannot)", proxy.log_text()
    )
    login(proxy, "alice").command("LOGOUT")  # and back in business


# -- changes made upstream ----------------------------------------------------------------


def test_new_upstream_mail_reaches_an_idle_client_within_a_second(
    proxy: ServerProcess, upstream: Dovecot
) -> None:
    client = login(proxy, "carol")
    assert client.command("SELECT INBOX").ok
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+")
    other = direct(upstream, "carol")
    delays = []
    for n in range(1, 4):
        other.append_many("INBOX", [MESSAGE % (n, n)])
        _, took = read_until(client, rb"^\* %d EXISTS" % n, timeout=5)
        delays.append(took)
    assert max(delays) < 1.0, delays
    store = other.command("SELECT INBOX")
    assert store.ok
    assert other.command("STORE 2 +FLAGS (\\Flagged)").ok
    _, took = read_until(client, rb"^\* 2 FETCH .*Flagged", timeout=5)
    assert took < 1.0
    assert other.command("STORE 1 +FLAGS (\\Deleted)").ok and other.command("EXPUNGE").ok
    _, took = read_until(client, rb"^\* 1 EXPUNGE", timeout=5)
    assert took < 1.0
    client.send(b"DONE\r\n")
    assert client.read_until_tagged("i1").ok
    fetched = client.command("FETCH 1:* (UID FLAGS)")
    assert [line.split(b" ")[1] for line in fetched.untagged] == [b"1", b"2"]


def test_dropped_upstream_connection_is_reopened_and_resynced(
    proxy: ServerProcess, upstream: Dovecot
) -> None:
    client = login(proxy, "dave")
    assert client.command("SELECT INBOX").ok
    kick = subprocess.run(
        ["doveadm", "-c", str(upstream.root / "dovecot.conf"), "kick", "dave"],
        capture_output=True,
        timeout=20,
    )
    assert kick.returncode == 0, kick.stderr
    direct(upstream, "dave").append_many("INBOX", [MESSAGE % (1, 1)])
    deadline = time.monotonic() + 8
    while True:
        response = client.command("NOOP")
        if b"* 1 EXISTS" in response.all_text():
            break
        assert time.monotonic() < deadline, proxy.log_text()[-2000:]
        time.sleep(0.2)
    assert client.command("FETCH 1 BODY.PEEK[TEXT]").all_text().count(b"body 1") == 1


# -- other modes ----------------------------------------------------------------------------


def test_starttls_upstream(upstream: Dovecot, tmp_path: Path) -> None:
    options = upstream.upstream_options(mode="starttls")
    server = start_server(tmp_path, options)
    try:
        client = login(server, "erin")
        assert client.command("SELECT INBOX").ok
    finally:
        server.stop()


def test_plain_upstream_on_loopback(upstream: Dovecot, tmp_path: Path) -> None:
    server = start_server(tmp_path, {"upstream": f"plain:127.0.0.1:{upstream.imap_port}"})
    try:
        assert login(server, "erin").command('LIST "" INBOX').ok
    finally:
        server.stop()


def test_master_user_mode(upstream: Dovecot, tmp_path: Path) -> None:
    """mailserv's passwd-file checks the password; the upstream trusts the master user."""
    direct(upstream, "erin").append_many("INBOX", [MESSAGE % (7, 7)])
    options = {
        **upstream.upstream_options(),
        "master_user": "gateway",
        "master_password": "master-secret",
    }
    server = start_server(tmp_path, options)
    try:
        server.add_user("erin", "local password")
        client = RawClient.connect(server.imap_port)
        assert client.command(f"LOGIN erin {quote(PASSWORD)}").status == "NO"
        client = login(server, "erin", "local password")
        assert client.command("SELECT INBOX").ok
        assert b"Subject: 7" in client.command("FETCH 1:* BODY.PEEK[HEADER]").all_text()
    finally:
        server.stop()


# -- an upstream with few extensions -------------------------------------------------------

BARE_CAPABILITIES = "IMAP4rev1 SASL-IR ID ENABLE NAMESPACE UIDPLUS CHILDREN UNSELECT"


def test_upstream_without_idle_move_condstore_or_esearch(tmp_path: Path) -> None:
    """NOOP polling instead of IDLE, COPY + STORE + UID EXPUNGE instead of MOVE, made-up
    mod-sequences, plain SEARCH responses, synchronizing literals."""
    config = f"protocol imap {{\n  imap_capability = {BARE_CAPABILITIES}\n}}\n"
    upstream = Dovecot(extra_config=config)
    upstream.add_user("frank", PASSWORD)
    upstream.start()
    time.sleep(1.1)
    options = {"upstream": f"plain:127.0.0.1:{upstream.imap_port}", "poll": "0.3"}
    server = start_server(tmp_path, options)
    try:
        client = login(server, "frank")
        assert client.command("CREATE Archive").ok
        assert client.command("SELECT INBOX").ok
        client.append_many("INBOX", [MESSAGE % (n, n) for n in (1, 2, 3)])
        fetched = client.command("FETCH 1:* (UID FLAGS)")  # (FETCH MODSEQ waits for CONDSTORE)
        assert len(re.findall(rb"^\* \d FETCH \(UID \d+ FLAGS", fetched.all_text(), re.M)) == 3
        assert client.command("STORE 2 +FLAGS (\\Flagged)").ok
        assert client.command("SEARCH FLAGGED").data("SEARCH") == [b"2"]
        moved = client.command("MOVE 2 Archive")
        assert moved.ok and "COPYUID" in " ".join(moved.codes())
        assert moved.numbers("EXPUNGE") == [2]
        status = client.command("STATUS Archive (MESSAGES)").all_text()
        assert b"MESSAGES 1" in status
        client.send(b"i1 IDLE\r\n")
        assert client.read_response().startswith(b"+")
        direct(upstream, "frank").append_many("INBOX", [MESSAGE % (4, 4)])
        _, took = read_until(client, rb"^\* 3 EXISTS", timeout=5)
        assert took < 1.0
        client.send(b"DONE\r\n")
        assert client.read_until_tagged("i1").ok
    finally:
        server.stop()
        upstream.stop()


def test_mailbox_deleted_upstream_gives_bye(proxy: ServerProcess, upstream: Dovecot) -> None:
    client = login(proxy, "erin")
    assert client.command("CREATE Doomed").ok
    assert client.command("SELECT Doomed").ok
    assert direct(upstream, "erin").command("DELETE Doomed").ok
    line, took = read_until(client, rb"^\* BYE ", timeout=10)
    assert b"no longer exists" in line and took < 5


def test_an_append_just_after_the_mailbox_went_upstream_asks_to_create_it(
    proxy: ServerProcess, upstream: Dovecot
) -> None:
    """The proxy does not ask whether a mailbox it found a moment ago is still there before
    each APPEND (pipelined uploads went at a third of the rate): the upstream's refusal
    answers instead, as the check would have, and nothing is stored anywhere."""
    client = login(proxy, "dave")
    assert client.command("CREATE Brief").ok
    message = MESSAGE % (1, 1)
    first = client.command(f"APPEND Brief {{{len(message)}+}}\r\n".encode() + message)
    assert first.ok, first.line
    assert direct(upstream, "dave").command("DELETE Brief").ok
    again = client.command(f"APPEND Brief {{{len(message)}+}}\r\n".encode() + message)
    assert again.status == "NO" and again.code == "TRYCREATE", again.line
    assert client.command("STATUS Brief (MESSAGES)").status == "NO"
    assert not direct(upstream, "dave").command('LIST "" Brief').data("LIST")


def test_stores_waiting_together_fail_alike_when_the_upstream_hangs(
    fragile: tuple[Dovecot, ServerProcess],
) -> None:
    """STOREs of four sessions queued for the mailbox's upstream connection (they go
    upstream together) while the upstream hangs: each is answered NO [UNAVAILABLE] within
    the timeout and one reconnection (not one more reconnection for each STORE waiting),
    and once the upstream is back a STORE works."""
    upstream, proxy = fragile
    clients = [login(proxy, "alice") for _ in range(4)]
    added = clients[0].append_many("INBOX", [MESSAGE % (n, n) for n in range(1, 5)])
    assert all(response.ok for response in added)
    for client in clients:
        assert client.command("SELECT INBOX").ok
    upstream.pause()
    try:
        start = time.monotonic()
        for n, client in enumerate(clients, 1):
            client.send(b"s%d UID STORE %d +FLAGS (\\Flagged)\r\n" % (n, n))
        answers = [client.read_until_tagged(f"s{n}") for n, client in enumerate(clients, 1)]
        took = time.monotonic() - start
    finally:
        upstream.resume()
    assert [(a.status, a.code) for a in answers] == [("NO", "UNAVAILABLE")] * 4
    assert took < 6, took  # the 2 s timeout of the batch, then of one reconnection
    deadline = time.monotonic() + 10
    while not clients[0].command("UID STORE 1 +FLAGS (\\Seen)").ok:
        assert time.monotonic() < deadline, proxy.log_text()[-2000:]
        time.sleep(0.2)
    assert proxy.alive
