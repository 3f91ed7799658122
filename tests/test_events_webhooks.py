"""Webhooks (``--webhook``, ``[[webhook]]``) against a local twisted.web receiver
(``tests/webhookreceiver.py``, plain HTTP on a free loopback port, allowed by each hook's
``allow-http``) that records what it gets and answers as each test scripts it.

What is checked is the engine's and the queue's own behaviour, so one backend.  Backoff
settings are small (tens of ms), so retries cost little time.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
import smtplib
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from imapserver import Connector, add_cheap_user, new_user, ok
from twisted.python import usage

from bench.harness import HOST, BackendSpec, ServerProcess, free_port
from mailserv.tap import Options
from mailserv.workers.wire import decode_config, encode_config

pytestmark = pytest.mark.one_backend

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret " + secrets.token_hex(8)
WAIT = 30.0
"""Bound of every wait for a delivery (far above the tens of ms one takes)."""
FAST = {"allow-http": True, "timeout": 5, "backoff": 0.05, "max-backoff": 0.2}
"""Quick retries; a deadline far above a loaded machine's answer time, so no request that
the receiver took is sent again (which at-least-once delivery allows)."""

Request = dict[str, object]


@dataclass
class Receiver:
    state: Path
    port: int
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, state: Path, port: int = 0) -> Receiver:
        (state / "port").unlink(missing_ok=True)
        args = [sys.executable, str(REPO / "tests" / "webhookreceiver.py"), str(state), str(port)]
        proc = subprocess.Popen(args, cwd=REPO)
        deadline = time.monotonic() + WAIT
        while not (state / "port").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "receiver did not start"
            time.sleep(0.02)
        return cls(state, int((state / "port").read_text()), proc)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port}/hook/{name}"

    def script(self, name: str, script: list[str], default: str = "ok") -> None:
        body = json.dumps({"script": script, "default": default}).encode()
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}/control/{name}", body, method="PUT"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def requests(self, name: str) -> list[Request]:
        with urllib.request.urlopen(f"http://{HOST}:{self.port}/requests/{name}", timeout=10) as r:
            found: list[Request] = json.load(r)
        return found

    def wait(self, name: str, done: Callable[[list[Request]], bool]) -> list[Request]:
        """The requests at ``name`` once ``done`` holds for them."""
        deadline = time.monotonic() + WAIT
        while True:
            found = self.requests(name)
            if done(found):
                return found
            assert time.monotonic() < deadline, f"not delivered: {found}"
            time.sleep(0.05)


def event(request: Request) -> dict[str, object]:
    found: dict[str, object] = json.loads(str(request["body"]))
    return found


def of_user(requests: list[Request], user: str) -> list[Request]:
    return [r for r in requests if event(r)["user"] == user]


def delivered(requests: list[Request], user: str) -> list[dict[str, object]]:
    """The events of ``user`` that were taken (answered OK), in the order they came."""
    return [event(r) for r in of_user(requests, user) if r["answer"] == "ok"]


def taken_once(requests: list[Request], user: str) -> list[dict[str, object]]:
    """``delivered``, each event once, as a receiver keying on the event id sees them."""
    seen: set[object] = set()
    firsts = []
    for found in delivered(requests, user):
        if found["id"] not in seen:
            seen.add(found["id"])
            firsts.append(found)
    return firsts


def _toml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else json.dumps(value)


def write_config(path: Path, hooks: list[dict[str, object]]) -> Path:
    lines = []
    for hook in hooks:
        lines.append("[[webhook]]")
        lines += [f"{key} = {_toml(value)}" for key, value in hook.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_server(server: ServerProcess, data_dir: Path, config: Path, *more: str) -> ServerProcess:
    extra = ["--workers", "1", "--config", str(config), *more]
    imap = ServerProcess(data_dir, server.backend, {"auth_failure_delay": 0.05}, extra)
    imap.start()
    return imap


@dataclass
class Hooked:
    imap: ServerProcess
    receiver: Receiver
    lmtp_port: int = 0

    @contextmanager
    def connect(self) -> Iterator[Connector]:
        """Clients of a new user of ``imap``, closed after."""
        user = new_user()
        self.imap.add_user(user.name, user.password)
        connector = Connector(self.imap, user)
        try:
            yield connector
        finally:
            connector.close()


@pytest.fixture(scope="module")
def hooked(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooked]:
    """A receiver, and an IMAP server (of the selected backend) with hooks to it."""
    state = tmp_path_factory.mktemp("webhook-receiver")
    receiver = Receiver.start(state)
    data_dir = tmp_path_factory.mktemp("webhook-server")
    (data_dir / "hook-secret").write_text(SECRET + "\n")
    every = {"url": receiver.url("main"), "secret": SECRET, **FAST, "max-attempts": 100}
    folders = ["mailbox-created", "mailbox-deleted", "mailbox-renamed"]
    mailboxes = {"url": receiver.url("mailboxes"), "secret-file": "hook-secret", "events": folders}
    created = ["mailbox-created"]
    retried = {"url": receiver.url("retry"), "secret": SECRET, "events": created, **FAST}
    retried["timeout"] = 0.5  # a request left hanging is given up quickly
    dead = {**retried, "url": receiver.url("dead"), "max-attempts": 3, "timeout": 5}
    full = {**retried, "url": receiver.url("full"), "queue-limit": 2, "timeout": 60}
    hooks = [every, {**mailboxes, "allow-http": True}, retried, dead, full]
    receiver.script("dead", [], default="500")
    receiver.script("full", [], default="hang")
    config = write_config(data_dir / "hooks.toml", hooks)
    # The proxy refuses --lmtp (it cannot look recipients up without master-user mode).
    lmtp_port = 0 if server.backend.name == "proxy" else free_port()
    lmtp = ("--lmtp", f"tcp:{lmtp_port}:interface=127.0.0.1") if lmtp_port else ()
    imap = start_server(server, data_dir, config, *lmtp)
    try:
        yield Hooked(imap, receiver, lmtp_port)
    finally:
        imap.stop()
        receiver.stop()


MESSAGE = (
    b"From: Ann Example <ann@example.org>\r\nTo: bob@example.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= plans\r\nDate: Thu, 03 Dec 2026 10:00:00 +0100\r\n"
    b"Message-ID: <plans.1@example.org>\r\n\r\nSee you there.\r\n"
)


def signed_by(request: Request, secret: str) -> bool:
    headers = request["headers"]
    assert isinstance(headers, dict)
    stamp = headers["x-mailserv-timestamp"]
    body = str(request["body"]).encode()
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-mailserv-signature"], "sha256=" + mac)


def test_message_added_signed_with_summary(hooked: Hooked) -> None:
    with hooked.connect() as connect:
        [uid] = connect.append([MESSAGE])
        user = connect.user.name
    found = hooked.receiver.wait("main", lambda rs: bool(delivered(rs, user)))
    request = of_user(found, user)[0]
    assert signed_by(request, SECRET)
    assert not signed_by(request, SECRET + "x")
    headers = request["headers"]
    assert isinstance(headers, dict)
    assert headers["content-type"] == "application/json"
    assert headers["x-mailserv-event"] == "message-added"
    body = event(request)
    assert headers["x-mailserv-delivery"] == body["id"]
    assert abs(int(headers["x-mailserv-timestamp"]) - time.time()) < 3600
    assert {k: v for k, v in body.items() if k not in ("id", "time", "internaldate")} == {
        "type": "message-added",
        "user": user,
        "mailbox": "INBOX",
        "uid": uid,
        "size": len(MESSAGE),
        "from": "Ann Example <ann@example.org>",
        "to": "bob@example.org",
        "subject": "café plans",
        "date": "2026-12-03T10:00:00+01:00",
        "message-id": "<plans.1@example.org>",
        "flags": [],
    }


@pytest.mark.one_backend(not_on=("proxy",))
def test_message_delivered_over_lmtp_is_told(hooked: Hooked) -> None:
    if not hooked.lmtp_port:
        pytest.skip("the proxy backend refuses --lmtp (no master-user mode here)")
    with hooked.connect() as connect:
        user = connect.user.name
        with smtplib.LMTP("127.0.0.1", hooked.lmtp_port, timeout=20) as lmtp:
            assert lmtp.sendmail("ann@example.org", [user], MESSAGE) == {}
    found = hooked.receiver.wait("main", lambda rs: bool(delivered(rs, user)))
    body = event(of_user(found, user)[0])
    assert body["type"] == "message-added"
    assert body["mailbox"] == "INBOX"
    assert body["subject"] == "café plans"


def test_order_per_mailbox_and_filter(hooked: Hooked) -> None:
    with hooked.connect() as connect:
        client = connect.raw()
        ok(client, "CREATE Work")
        uids = connect.append([MESSAGE] * 3, "Work")
        ok(client, "SELECT Work")
        ok(client, f"UID STORE {uids[0]} +FLAGS (\\Flagged)")
        ok(client, f"UID FETCH {uids[1]} BODY[TEXT]")  # sets \\Seen
        ok(client, f"UID COPY {uids[0]} INBOX")
        ok(client, f"UID STORE {uids[2]} +FLAGS (\\Deleted)")
        ok(client, "EXPUNGE")
        ok(client, "RENAME Work Done")
        ok(client, "CREATE Trash")
        ok(client, "DELETE Trash")
        user = connect.user.name
    found = hooked.receiver.wait("main", lambda rs: len(taken_once(rs, user)) >= 12)
    told = [(e["mailbox"], e["type"]) for e in taken_once(found, user)]
    assert [t for m, t in told if m == "Work"] == [
        "mailbox-created",
        *["message-added"] * 3,
        *["flags-changed"] * 3,
        "expunged",
        "mailbox-renamed",
    ]
    assert [t for m, t in told if m == "INBOX"] == ["message-added"]
    assert [t for m, t in told if m == "Trash"] == ["mailbox-created", "mailbox-deleted"]
    flags = [e for e in taken_once(found, user) if e["type"] == "flags-changed"]
    assert [c["flags"] for e in flags for c in e["changes"]] == [  # type: ignore[attr-defined]
        ["\\Flagged"],
        ["\\Seen"],
        ["\\Deleted"],
    ]
    [gone] = [e for e in taken_once(found, user) if e["type"] == "expunged"]
    assert gone["uids"] == [uids[2]]
    [renamed] = [e for e in taken_once(found, user) if e["type"] == "mailbox-renamed"]
    assert renamed["new-name"] == "Done"
    # the mailboxes hook asked for the mailbox events alone (and its secret came from a file)
    folders = hooked.receiver.wait("mailboxes", lambda rs: len(taken_once(rs, user)) >= 4)
    # in order per mailbox (two mailboxes' events may come in either order)
    folder_events = [(e["mailbox"], e["type"]) for e in taken_once(folders, user)]
    assert [t for m, t in folder_events if m == "Work"] == ["mailbox-created", "mailbox-renamed"]
    assert [t for m, t in folder_events if m == "Trash"] == ["mailbox-created", "mailbox-deleted"]
    assert all(signed_by(r, SECRET) for r in of_user(folders, user))


def dead_letters(imap: ServerProcess, user: str, hook: str) -> list[dict[str, object]]:
    path = imap.data_dir / "webhooks" / "dead-letter.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["event"]["user"] == user and r["hook"] == hook]


def wait_dead(imap: ServerProcess, user: str, hook: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + WAIT
    while len(found := dead_letters(imap, user, hook)) < count:
        assert time.monotonic() < deadline, f"not dropped: {found}"
        time.sleep(0.05)
    return found


def queued(imap: ServerProcess, hook: str = "%") -> int:
    """Events waiting in ``imap``'s queue (for the hooks whose URL is like ``hook``); none
    while the server has not made the queue yet (it opens it off the reactor, after it
    listens: the file is never made here)."""
    path = imap.data_dir / "webhooks" / "queue.sqlite"
    if not path.exists():
        return 0
    with closing(sqlite3.connect(path)) as db:
        try:
            row = db.execute("SELECT count(*) FROM events WHERE hook LIKE ?", (hook,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return 0
    return int(row[0])


def test_retries_after_500_and_timeout(hooked: Hooked) -> None:
    hooked.receiver.script("retry", ["500", "hang", "503", "429"])
    with hooked.connect() as connect:
        ok(connect.raw(), "CREATE Retried")
        user = connect.user.name
    found = hooked.receiver.wait("retry", lambda rs: bool(delivered(rs, user)))
    tries = of_user(found, user)
    assert [r["answer"] for r in tries][:5] == ["500", "hang", "503", "429", "ok"]
    assert len({event(r)["id"] for r in tries}) == 1  # the same event each time
    assert all(signed_by(r, SECRET) for r in tries)


def write_private_ca(state: Path) -> Path:
    """A CA of this test, and a certificate it signed for 127.0.0.1 with its key, as the
    receiver serves them (``cert.pem``, ``key.pem``); the CA's certificate's path."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailserv test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (state / "cert.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (state / "key.pem").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (state / "ca.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    return state / "ca.pem"


def test_https_receiver_behind_a_private_ca(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A hook with ``ca-file`` reaches an HTTPS receiver whose certificate that CA signed;
    one without it does not trust that certificate, and its event goes to the dead letters."""
    state = tmp_path_factory.mktemp("webhook-tls-receiver")
    ca_file = write_private_ca(state)
    receiver = Receiver.start(state)
    base = f"https://{HOST}:{int((state / 'tls-port').read_text())}/hook"
    created = ["mailbox-created"]
    trusted = {"url": f"{base}/trusted", "secret": SECRET, "events": created, **FAST}
    trusted["ca-file"] = str(ca_file)
    stranger = {"url": f"{base}/stranger", "secret": SECRET, "events": created, **FAST}
    stranger["max-attempts"] = 1
    data_dir = tmp_path_factory.mktemp("webhook-tls-server")
    config = write_config(data_dir / "hooks.toml", [trusted, stranger])
    imap = start_server(server, data_dir, config)
    try:
        found_user = new_user()  # no `mailserv user add` process: a cheap hash
        add_cheap_user(imap.data_dir, found_user.name, found_user.password)
        connect = Connector(imap, found_user)
        try:
            ok(connect.raw(), "CREATE Private")
        finally:
            connect.close()
        user = found_user.name
        found = receiver.wait("trusted", lambda rs: bool(delivered(rs, user)))
        assert signed_by(found[0], SECRET) and event(found[0])["mailbox"] == "Private"
        [dropped] = wait_dead(imap, user, f"{base}/stranger", 1)
        assert "certificate" in str(dropped["reason"]).lower(), dropped
        assert receiver.requests("stranger") == []
    finally:
        imap.stop()
        receiver.stop()


def test_ca_file_refused_unless_it_holds_certificates(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("k\n")
    (tmp_path / "empty.pem").write_text("no certificate here\n")
    for ca, why in [("empty.pem", "no PEM certificate"), ("missing.pem", "cannot read")]:
        line = f"https://h/x;secret-file={tmp_path / 's'};ca-file={tmp_path / ca}"
        with pytest.raises(usage.UsageError, match=f"webhook 1: .*{why}"):
            Options().parseOptions(["--webhook", line])


def test_dead_letter_bound(hooked: Hooked) -> None:
    """A 4xx ends an event at once; 5xx answers end it after max-attempts (3 here)."""
    deadline = time.monotonic() + WAIT
    while queued(hooked.imap, hooked.receiver.url("dead")):  # the tests before are done
        assert time.monotonic() < deadline
        time.sleep(0.05)
    hooked.receiver.script("dead", ["400"], default="500")
    with hooked.connect() as connect:
        client = connect.raw()
        user = connect.user.name
        ok(client, "CREATE Refused")
        [refused] = wait_dead(hooked.imap, user, hooked.receiver.url("dead"), 1)
        ok(client, "CREATE Failing")
        dropped = wait_dead(hooked.imap, user, hooked.receiver.url("dead"), 2)
    assert refused["reason"] == "HTTP 400" and refused["attempts"] == 1
    assert refused["event"]["mailbox"] == "Refused"  # type: ignore[index]
    assert dropped[1]["reason"] == "HTTP 500" and dropped[1]["attempts"] == 3
    assert dropped[1]["hook"] == hooked.receiver.url("dead")
    tries = [event(r)["mailbox"] for r in of_user(hooked.receiver.requests("dead"), user)]
    assert tries == ["Refused", "Failing", "Failing", "Failing"]
    # the other hooks took the same events
    hooked.receiver.wait("retry", lambda rs: len(taken_once(rs, user)) >= 2)


def test_imap_unaffected_while_receiver_hangs(hooked: Hooked) -> None:
    hooked.receiver.script("main", [], default="hang")
    try:
        with hooked.connect() as connect:
            user = connect.user.name
            uids = connect.append([MESSAGE] * 5)
            client = connect.raw()  # the client's timeout (10 s) bounds every answer
            ok(client, "SELECT INBOX")
            ok(client, f"UID STORE {uids[0]}:* +FLAGS (\\Seen)")
            ok(client, "UID FETCH 1:* (FLAGS ENVELOPE)")
            ok(client, "CREATE Other")
            ok(client, "LOGOUT")
        waiting = hooked.receiver.wait("main", lambda rs: bool(of_user(rs, user)))
        assert of_user(waiting, user)[0]["answer"] == "hang"
    finally:
        hooked.receiver.script("main", [])  # answers those hanging 503: they are retried
    found = hooked.receiver.wait("main", lambda rs: len(taken_once(rs, user)) >= 7)
    assert [e["type"] for e in taken_once(found, user) if e["mailbox"] == "INBOX"] == [
        *["message-added"] * 5,
        "flags-changed",
    ]


def test_restart_with_events_pending(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Stopped while its receiver is down, the server sends the events after its restart,
    each once."""
    state = tmp_path_factory.mktemp("webhook-receiver-restart")
    receiver = Receiver.start(state)
    port = receiver.port
    receiver.stop()  # down: connections refused
    data_dir = tmp_path_factory.mktemp("webhook-restart")
    hook = {"url": receiver.url("main"), "secret": SECRET, **FAST, "max-attempts": 1000}
    config = write_config(data_dir / "hooks.toml", [hook])
    imap = start_server(server, data_dir, config)
    try:
        hooked = Hooked(imap, receiver)
        with hooked.connect() as connect:
            user = connect.user.name
            ok(connect.raw(), "CREATE Kept")
            connect.append([MESSAGE] * 3, "Kept")
        deadline = time.monotonic() + WAIT
        while "again in" not in imap.log_text():  # it tried, and failed, before the stop
            assert time.monotonic() < deadline
            time.sleep(0.05)
        imap.stop()
        assert queued(imap) == 4
        receiver = Receiver.start(state, port)
        imap.start()
        found = receiver.wait("main", lambda rs: len(delivered(rs, user)) == 4)
        types = [e["type"] for e in delivered(found, user)]
        assert types == ["mailbox-created", *["message-added"] * 3]
        deadline = time.monotonic() + WAIT
        while queued(imap):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        imap.stop()  # nothing is left to send after this
        assert "(delivering)" in imap.log_text() and SECRET not in imap.log_text()
        assert len({e["id"] for e in delivered(receiver.requests("main"), user)}) == 4
        assert len(delivered(receiver.requests("main"), user)) == 4
    finally:
        imap.stop()
        receiver.stop()


@pytest.mark.parametrize(
    ("option", "why"),
    [
        ("http://h/x;secret-file={secret}", "https:// URL"),
        ("https://h/x;secret=abc", "secret-file="),
        ("https://h/x", "one of secret and secret-file"),
        ("https://h/x;secret-file=/nonexistent/s", "cannot read secret-file"),
        ("https://h/x;secret-file={secret};events=message-added,opened", "unknown"),
        ("https://h/x;secret-file={secret};max-attempts=0", "above 0"),
        ("https://h/x;secret-file={secret};timeout=soon", "timeout must be a number"),
        ("https://h/x;secret-file={secret};colour=red", "unknown key 'colour'"),
        ("https://h/x;secret-file={secret};allow-http=maybe", "allow-http"),
    ],
)
def test_bad_options_refused(tmp_path: Path, option: str, why: str) -> None:
    (tmp_path / "s").write_text("k\n")
    options = Options()
    with pytest.raises(usage.UsageError, match="webhook 1: .*" + why.replace("+", r"\+")):
        options.parseOptions(["--webhook", option.format(secret=tmp_path / "s")])


def test_options_and_config_file(tmp_path: Path) -> None:
    """The file's [[webhook]] tables; the command line's replace them; the secret is read
    from its file, never shown, and reaches a worker."""
    (tmp_path / "s").write_text("from-file\n")
    hooks = [{"url": "https://a/x", "secret-file": "s", "events": ["expunged"], "timeout": 2}]
    config = write_config(tmp_path / "c.toml", hooks)
    options = Options()
    options.parseOptions(["--config", str(config)])
    [hook] = options.config.webhooks
    assert (hook.url, hook.secret, hook.events, hook.timeout) == (
        "https://a/x",
        "from-file",
        frozenset({"expunged"}),
        2.0,
    )
    assert "from-file" not in repr(options.config)
    assert decode_config(encode_config(options.config)) == options.config
    line = f"https://b/y;secret-file={tmp_path / 's'};events=expunged,mailbox-created"
    options = Options()
    options.parseOptions(["--config", str(config), "--webhook", line])
    assert [h.url for h in options.config.webhooks] == ["https://b/y"]
    twice = write_config(tmp_path / "twice.toml", hooks * 2)
    with pytest.raises(usage.UsageError, match="same webhook URL twice"):
        Options().parseOptions(["--config", str(twice)])


def test_workers_queue_and_master_sends(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With --workers 2 each worker queues its sessions' events; the master sends them."""
    state = tmp_path_factory.mktemp("webhook-receiver-workers")
    receiver = Receiver.start(state)
    data_dir = tmp_path_factory.mktemp("webhook-workers")
    hook = {"url": receiver.url("main"), "secret": SECRET, **FAST}
    config = write_config(data_dir / "hooks.toml", [hook])
    extra = ["--workers", "2", "--config", str(config)]
    imap = ServerProcess(data_dir, BackendSpec("maildir", {"autocreate": "false"}), None, extra)
    try:
        imap.start()
        with Hooked(imap, receiver).connect() as connect:
            user = connect.user.name
            clients = [connect.raw() for _ in range(4)]  # spread over both workers
            for n, client in enumerate(clients):
                ok(client, f"CREATE Box{n}")
        found = receiver.wait("main", lambda rs: len(taken_once(rs, user)) >= 4)
        assert sorted(e["mailbox"] for e in taken_once(found, user)) == [
            f"Box{n}" for n in range(4)
        ]
        assert "queueing only" in imap.log_text() and "(delivering)" in imap.log_text()
    finally:
        imap.stop()
        receiver.stop()


def test_queue_limit_drops_oldest(hooked: Hooked) -> None:
    """Past a hook's queue-limit (2 here) its oldest events go to the dead-letter log
    (one whose request was on its way then may still arrive: its fate was unknown)."""
    with hooked.connect() as connect:
        client = connect.raw()
        user = connect.user.name
        for name in ("A", "B", "C", "D"):
            ok(client, f"CREATE {name}")
        dropped = wait_dead(hooked.imap, user, hooked.receiver.url("full"), 2)
    assert [(d["reason"], d["event"]["mailbox"]) for d in dropped] == [  # type: ignore[index]
        ("queue full", "A"),
        ("queue full", "B"),
    ]
    hooked.receiver.script("full", [])  # those hanging are answered 503, then sent again
    found = hooked.receiver.wait("full", lambda rs: {"C", "D"} <= _mailboxes(rs, user))
    assert _mailboxes(found, user) <= {"A", "B", "C", "D"}
    assert len(dead_letters(hooked.imap, user, hooked.receiver.url("full"))) == 2


def _mailboxes(requests: list[Request], user: str) -> set[object]:
    return {e["mailbox"] for e in taken_once(requests, user)}


@pytest.mark.one_backend(not_on=("proxy",))
def test_shared_mailbox_changes_told_as_the_owners(hooked: Hooked) -> None:
    """Another user's changes in a shared mailbox are told as the owner's mailbox's, under
    the owner's name for it, with the user who made them as ``by``."""
    if hooked.imap.backend.name == "proxy":
        pytest.skip("the proxy keeps no access control lists")
    with hooked.connect() as owner, hooked.connect() as other:
        alice, bob = owner.user.name, other.user.name
        client = owner.raw()
        ok(client, "CREATE Team")
        owner.append([MESSAGE], "Team")
        ok(client, f'SETACL Team "{bob}" lrswitekx')
        shared = f'"Other Users/{alice}/Team'
        guest = other.raw()
        ok(guest, f'SELECT {shared}"')
        response = guest.command_with_literal(f'APPEND {shared}" ', MESSAGE)
        assert response.ok, response.line
        ok(guest, "STORE 2 +FLAGS (\\Deleted)")
        ok(guest, "EXPUNGE")
        ok(guest, f'CREATE {shared}/Sub"')
        ok(guest, f'RENAME {shared}/Sub" {shared}/Done"')
    found = hooked.receiver.wait(
        "main", lambda rs: len(taken_once(rs, alice)) + len(taken_once(rs, bob)) >= 7
    )
    assert taken_once(found, bob) == []
    told = [
        (e["type"], e["mailbox"], e.get("by"), e.get("new-name"), e.get("uids"))
        for e in taken_once(found, alice)
    ]
    assert sorted(told, key=str) == sorted(
        [
            ("mailbox-created", "Team", None, None, None),
            ("message-added", "Team", None, None, None),
            ("message-added", "Team", bob, None, None),
            ("flags-changed", "Team", bob, None, None),
            ("expunged", "Team", bob, None, [2]),
            ("mailbox-created", "Team/Sub", bob, None, None),
            ("mailbox-renamed", "Team/Sub", bob, "Team/Done", None),
        ],
        key=str,
    )
