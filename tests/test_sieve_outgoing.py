"""Mail Sieve sends (issue 12): redirect and vacation through ``--submission``, over real
sockets: a server (maildir: ``mailserv deliver`` works on it too) delivering over LMTP,
and a Twisted SMTP receiver in a subprocess recording what the server hands over.

Everything here is the engine's own (the backend only stores), so one backend runs it.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BACKENDS
from imapserver import User, new_user
from lmtpserver import HANG, LmtpServer, _wait_port, subjects
from smtpreceiver import SMTPReceiver
from zope.interface.verify import verifyObject

from bench.harness import HOST, REPO, ServerProcess, free_port
from mailserv.admin.cli import main as cli
from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.config import ConfigError, load_config
from mailserv.delivery.sieve import check_script
from mailserv.delivery.sievescript import SieveError
from mailserv.delivery.sievestore import SentLog
from mailserv.delivery.submit import IMailSender, SMTPSubmitter, submitter
from mailserv.tap import Options

pytestmark = pytest.mark.timeout(120)

SENDER = "author@example.org"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SMTPReceiver]:
    started = SMTPReceiver(tmp_path_factory.mktemp("smtp"), free_port())
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, receiver: SMTPReceiver
) -> Iterator[LmtpServer]:
    data_dir = tmp_path_factory.mktemp("outgoing")
    config = data_dir / "server.toml"
    # In the file, so `mailserv deliver --config` and `mailserv sieve put --config` see it.
    config.write_text(f'submission = "{receiver.endpoint}"\n')
    port = free_port()
    args = ["--workers", "1", "--config", str(config), "--lmtp", f"tcp:{port}:interface={HOST}"]
    process = ServerProcess(data_dir, BACKENDS["maildir"], extra_args=args)
    process.start()
    try:
        _wait_port(process, port)
        passwd = PasswdFile(str(data_dir / "passwd"))
        users = [new_user() for _ in range(7)]
        for made in users:
            passwd.add_user(made.name, hash_password(made.password.encode()))
        yield LmtpServer(process, config, port, "", users, users[0])
    finally:
        process.stop()
    assert "Traceback" not in process.log_text()


@dataclass
class Box:
    """One user of the server, no other test's, and the receiver."""

    server: LmtpServer
    user: User
    receiver: SMTPReceiver


@pytest.fixture
def box(server: LmtpServer, receiver: SMTPReceiver) -> Box:
    return Box(server, server.users.pop(), receiver)


def put(server: LmtpServer, user: User, script: bytes) -> None:
    path = server.process.data_dir / f"s-{secrets.token_hex(3)}.sieve"
    path.write_bytes(script)
    where = ["--data-dir", str(server.process.data_dir), "--config", str(server.config)]
    assert cli(["sieve", "put", *where, user.name, "main", str(path), "--activate"]) == 0


def deliver(server: LmtpServer, user: User, data: bytes, sender: str = SENDER) -> tuple[int, bytes]:
    with smtplib.LMTP(HOST, server.port, timeout=HANG) as client:
        client.ehlo("test.example.org")
        assert client.mail(sender)[0] == 250
        assert client.rcpt(f"{user.name}@example.org")[0] == 250
        code, text = client.data(data)
    return code, text


def inbox(server: LmtpServer, user: User) -> list[str]:
    conn = server.imap(user)
    try:
        typ, count = conn.select("INBOX", readonly=True)
        assert typ == "OK"
        return subjects(conn) if int(count[0] or 0) else []
    finally:
        conn.logout()


def mail(subject: str, headers: str = "", to: str = "someone@example.org") -> bytes:
    ident = f"<{secrets.token_hex(8)}@example.org>"
    return (
        f"From: {SENDER}\r\nTo: {to}\r\nMessage-ID: {ident}\r\n{headers}"
        f"Subject: {subject}\r\n\r\nHello.\r\n"
    ).encode()


def sent_to(receiver: SMTPReceiver, address: str) -> list[bytes]:
    return [r.message for r in receiver.received() if r.recipient == address]


@pytest.mark.one_backend
def test_submitter_interface_and_bad_endpoints() -> None:
    from twisted.internet import reactor

    verifyObject(IMailSender, SMTPSubmitter(reactor, "tcp:127.0.0.1:25"))
    assert submitter(reactor, None) is None
    for bad in ("tcp:localhost", "bogus:25"):
        with pytest.raises(ValueError, match="no client endpoint string"):
            submitter(reactor, bad)
    options = Options()
    options.parseOptions(["--submission", "tcp:localhost:2525"])
    assert options.config.submission == "tcp:localhost:2525"
    with pytest.raises(ConfigError, match="submission must be a client endpoint string"):
        load_config({"submission": 25})
    assert check_script(b'redirect "a@example.net";', sends_mail=True).uses == {"redirect"}
    with pytest.raises(SieveError, match="no submission host"):
        check_script(b'redirect "a@example.net";')


@pytest.mark.one_backend
def test_redirect_and_copy(box: Box) -> None:
    server, user, receiver = box.server, box.user, box.receiver
    to = f"fwd-{secrets.token_hex(3)}@example.net"
    script = f'require "copy";\nif header :is "subject" "copy" {{ redirect :copy "{to}"; }}'
    put(server, user, f'{script}\nelse {{ redirect "{to}"; }}'.encode())
    assert deliver(server, user, mail("moved"))[0] == 250
    assert deliver(server, user, mail("copy"))[0] == 250
    assert deliver(server, user, mail("bounce"), sender="")[0] == 250
    got = [r for r in receiver.received() if r.recipient == to]
    assert [r.sender for r in got] == [SENDER, SENDER, ""]  # the envelope sender is kept
    first = got[0].message
    assert first.startswith(f"Delivered-To: {user.name}@example.org\r\n".encode())
    assert b"Subject: moved\r\n" in first and b"Return-Path:" not in first
    assert b"Received: from test.example.org" in first  # our trace header goes along
    assert inbox(server, user) == ["copy"]  # plain redirect cancels the implicit keep


@pytest.mark.one_backend
def test_redirect_loop_is_kept_not_sent(box: Box) -> None:
    server, user, receiver = box.server, box.user, box.receiver
    to = f"loop-{secrets.token_hex(3)}@example.net"
    put(server, user, f'redirect "{to}";'.encode())
    looped = mail("came back", f"Delivered-To: {user.name.upper()}@example.org\r\n")
    assert deliver(server, user, looped)[0] == 250
    assert sent_to(receiver, to) == []
    assert inbox(server, user) == ["came back"]
    assert "(a mail loop); kept in INBOX" in server.process.log_text()


@pytest.mark.one_backend
def test_submission_down_answers_451_and_the_retry_delivers_once(box: Box) -> None:
    server, user, receiver = box.server, box.user, box.receiver
    to = f"down-{secrets.token_hex(3)}@example.net"
    put(server, user, f'require "copy";\nredirect :copy "{to}";'.encode())
    data = mail("retried")
    receiver.stop()
    try:
        code, text = deliver(server, user, data)
    finally:
        receiver.start()
    assert (code, text[:5]) == (451, b"4.4.0")
    assert inbox(server, user) == []  # nothing stored: the MTA keeps it and retries
    assert deliver(server, user, data)[0] == 250
    assert len(sent_to(receiver, to)) == 1
    assert inbox(server, user) == ["retried"]


@pytest.mark.one_backend
def test_partial_redirect_is_not_sent_twice_and_refusal_keeps(box: Box) -> None:
    server, user, receiver = box.server, box.user, box.receiver
    done, later = (f"{p}{secrets.token_hex(3)}@example.net" for p in ("ok-", "later-"))
    put(server, user, f'redirect "{done}";\nredirect "{later}";'.encode())
    data = mail("half")
    assert deliver(server, user, data)[0] == 451  # the receiver answers 451 for later-*
    assert deliver(server, user, data)[0] == 451
    assert len(sent_to(receiver, done)) == 1  # remembered across the MTA's retries
    assert inbox(server, user) == []
    refused = f"refuse-{secrets.token_hex(3)}@example.net"
    put(server, user, f'redirect "{refused}";'.encode())
    assert deliver(server, user, mail("refused"))[0] == 250
    assert inbox(server, user) == ["refused"]  # a permanent refusal: kept, logged
    assert f"redirecting {user.name}'s message to {refused} failed" in server.process.log_text()


def _deliver_agent(server: LmtpServer, address: str, data: bytes, sender: str) -> None:
    where = ["--config", str(server.config), "--data-dir", str(server.process.data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mailserv", "deliver", *where, "-u", address, "-f", sender],
        input=data,
        capture_output=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.one_backend
def test_vacation_sent_once_per_days_across_processes(box: Box) -> None:
    server, user, receiver = box.server, box.user, box.receiver
    put(server, user, b'require "vacation";\nvacation :days 2 :subject "Away" "Back soon.";')
    me = f"{user.name}@example.org"
    friend, other = (f"{p}{secrets.token_hex(3)}@example.net" for p in ("friend-", "other-"))
    first = mail("first", to=me)
    assert deliver(server, user, first, sender=friend)[0] == 250  # the server's process
    _deliver_agent(server, me, mail("again", to=me), friend)  # a second process
    assert deliver(server, user, mail("other", to=me), sender=other)[0] == 250
    replies = [r for r in receiver.received() if r.recipient in (friend, other)]
    assert [(r.sender, r.recipient) for r in replies] == [("", friend), ("", other)]
    text = replies[0].message
    ident = first.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0]
    assert b"Subject: Away\r\n" in text and b"Back soon." in text
    assert b"Auto-Submitted: auto-replied" in text
    assert b"In-Reply-To: " + ident in text and b"References: " + ident in text
    assert sorted(inbox(server, user)) == ["again", "first", "other"]


_RACE = """
import sys
from pathlib import Path
from mailserv.delivery.sievestore import SentLog
log, go = SentLog(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    pass
print(sum(log.vacation_due("u", f"k{i % 40}", 1) for i in range(120)))
"""


@pytest.mark.one_backend
def test_vacation_limit_holds_between_two_racing_processes(tmp_path: Path) -> None:
    path, go = str(tmp_path / "sent.sqlite"), tmp_path / "go"
    SentLog(path).vacation_due("u", "warm", 1)  # the file and table exist before the race
    env = dict(os.environ, PYTHONPATH=str(REPO))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, path, str(go)], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    go.touch()
    counts = [int(p.communicate(timeout=HANG)[0]) for p in racers]
    assert sum(counts) == 40  # each of the 40 keys answered yes once, whoever asked


_SILENT_SEND = """
import sys
from twisted.internet import task
from mailserv.delivery.submit import SMTPSubmitter, SubmissionError

async def main(reactor):
    sender = SMTPSubmitter(reactor, sys.argv[1], timeout=0.3)
    try:
        await sender.send("", ["a@example.net"], b"Subject: x\\r\\n\\r\\nx\\r\\n")
    except SubmissionError as exc:
        print("temporary" if exc.temporary else "permanent", exc)
        return
    print("accepted")

task.react(lambda reactor: task.Deferred.fromCoroutine(main(reactor)))
"""


def test_a_silent_host_times_out_as_temporary() -> None:
    """A submission host that accepts the connection and never says a word: the send fails
    as temporary once ``timeout`` passes, and the connection is dropped.  (Its own process:
    its reactor holds nothing of other tests'.)"""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        endpoint = f"tcp:{HOST}:{silent.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-c", _SILENT_SEND, endpoint],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    out = done.stdout.strip()
    assert done.returncode == 0, done.stderr
    assert out.startswith("temporary"), out
    assert "Timeout" in out or "timed out" in out, out
