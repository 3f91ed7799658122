"""``--workers N``: children share the listeners, see each other's changes, are restarted
when they die and all stop on SIGTERM; stores that live in one process are refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dovecot  # type: ignore[import-not-found]  # tests/, on sys.path
import pgcluster  # type: ignore[import-not-found]  # tests/, on sys.path
import pytest
from imapserver import new_user
from twisted.python.usage import UsageError

from bench.harness import BackendSpec, RawClient, ServerProcess
from mailserv.config import Config, ConfigError, load_config
from mailserv.tap import build_service

SPECS = {
    "maildir": BackendSpec("maildir", {"autocreate": "false"}),
    "sql-postgresql": BackendSpec(
        "sql", prepare=pgcluster.prepare_backend, cleanup=pgcluster.cleanup_backend
    ),
    # Each worker has upstream sessions of its own; changes cross through the upstream.
    "proxy": dovecot.proxy_backend_spec(),
}


STARTUP = 60.0
"""Seconds the workers may take to start: they import and start a whole server each."""


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def serving_pid(client: RawClient, pids: set[int]) -> int:
    """The process holding the server side of ``client``'s connection."""
    client_port, server_port = client.sock.getsockname()[1], client.sock.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.split(":")[1], 16) for f in fields[1:3])
        # The server's end: from the listening port to the client (not an older socket of
        # the same ports in TIME_WAIT, whose inode is 0).
        if local == server_port and remote == client_port and fields[9] != "0":
            inode = fields[9]
    assert inode is not None, "connection not found in /proc/net/tcp"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds socket {inode}")


def accepting(server: ServerProcess) -> int:
    return len(
        re.findall(r"worker \d \[\d+\] \[mailserv.tap#info\] IMAPS listening", server.log_text())
    )


def run_workers(proc: ServerProcess, count: int = 2) -> Iterator[ServerProcess]:
    """Start ``proc``; yield it once its ``count`` children accept; stop it after."""
    proc.start()
    try:
        # A loaded machine (the suite's other processes) can take over 15 s to start them.
        wait_for(lambda: len(children(proc.pid)) == count, STARTUP)
        wait_for(lambda: accepting(proc) == count, STARTUP)  # every backend started: all accept
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["maildir"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", SPECS[request.param], extra_args=["--workers", "2"])
    yield from run_workers(proc)


def logged_in(server: ServerProcess, user: str, password: str) -> RawClient:
    client = RawClient.connect(server.imap_port, timeout=20)
    client.login(user, password)
    return client


def two_workers(server: ServerProcess, user: str, password: str) -> tuple[RawClient, RawClient]:
    """Two sessions served by different children (the kernel picks; we keep trying)."""
    pids = children(server.pid)
    first = logged_in(server, user, password)
    first_pid = serving_pid(first, pids)
    for _ in range(60):
        other = logged_in(server, user, password)
        if serving_pid(other, pids) != first_pid:
            return first, other
        other.close()
    raise AssertionError("every connection went to the same worker")


def read_until(client: RawClient, pattern: bytes) -> bytes:
    client.settimeout(10)
    while True:
        line = client.read_line()
        if re.search(pattern, line):
            return line


@pytest.mark.parametrize("server", ["maildir", "sql-postgresql", "proxy"], indirect=True)
def test_children_share_the_listeners_and_each_others_changes(server: ServerProcess) -> None:
    user = new_user()
    server.add_user(user.name, user.password)
    watcher, actor = two_workers(server, user.name, user.password)
    assert actor.command("APPEND INBOX {5+}\r\nhello").ok
    assert watcher.command("SELECT INBOX").ok
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read_line().startswith(b"+")
    assert actor.command("APPEND INBOX {7+}\r\nsecond!").ok
    read_until(watcher, rb"^\* 2 EXISTS")
    assert actor.command("SELECT INBOX").ok
    assert actor.command("STORE 1 +FLAGS (\\Flagged)").ok
    assert b"\\Flagged" in read_until(watcher, rb"^\* 1 FETCH")
    assert actor.command("STORE 2 +FLAGS (\\Deleted)").ok
    assert actor.command("EXPUNGE").ok
    read_until(watcher, rb"^\* 2 EXPUNGE")
    watcher.send(b"DONE\r\n")
    assert watcher.read_until_tagged("i1").ok
    # and over IMAPS: the children serve TLS from the master's certificate
    tls = RawClient.connect(server.imaps_port, ssl_context=server.ssl_context(), timeout=20)
    tls.login(user.name, user.password)
    assert tls.command("STATUS INBOX (MESSAGES)").data("STATUS")[0].endswith(b"(MESSAGES 1)")


def test_a_dead_child_is_restarted(server: ServerProcess) -> None:
    before = children(server.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(server.pid)) == 2 and victim not in children(server.pid))
    assert "restarting" in server.log_text()
    wait_for(lambda: accepting(server) == 3, STARTUP)
    user = new_user()
    server.add_user(user.name, user.password)
    for _ in range(6):  # served, whichever child the kernel picks
        client = logged_in(server, user.name, user.password)
        assert client.command("NOOP").ok
        client.close()


def test_sigterm_says_bye_and_stops_every_child(server: ServerProcess) -> None:
    user = new_user()
    server.add_user(user.name, user.password)
    idler = logged_in(server, user.name, user.password)
    assert idler.command("SELECT INBOX").ok
    idler.send(b"i1 IDLE\r\n")
    assert idler.read_line().startswith(b"+")
    kids = children(server.pid)
    proc = server.proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    assert read_until(idler, rb"^\* BYE").startswith(b"* BYE")
    # twistd ends a shutdown caused by a signal by dying of it, after stopping cleanly
    assert proc.wait(20) in (0, -signal.SIGTERM)
    assert "Server Shut Down" in server.log_text()
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_children_stop_when_the_master_is_killed(server: ServerProcess) -> None:
    kids = children(server.pid)
    proc = server.proc
    assert proc is not None
    proc.kill()
    proc.wait(10)

    def gone() -> bool:
        return all(not Path(f"/proc/{pid}").exists() for pid in kids)

    wait_for(gone, 20)
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.imap_port), timeout=2)


def test_a_store_kept_in_one_process_is_refused(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path), backend="memory", workers=2)
    with pytest.raises(UsageError, match="memory backend keeps its state inside one process"):
        build_service(config)
    sqlite = Config(data_dir=str(tmp_path), backend="sql", workers=2)
    with pytest.raises(UsageError, match="sql backend"):
        build_service(sqlite)


@pytest.mark.parametrize("value", ["0", "65", "many", 0, True, 2.5])
def test_bad_worker_counts(value: object) -> None:
    with pytest.raises(ConfigError, match="workers must be a whole number from 1 to 64"):
        load_config({"workers": value})


def test_worker_count_from_the_command_line_and_a_file(tmp_path: Path) -> None:
    assert load_config({"workers": "3"}).workers == 3
    path = tmp_path / "imapserv.toml"
    path.write_text("workers = 4\n")
    assert load_config({}, str(path)).workers == 4
    assert load_config({"workers": "2"}, str(path)).workers == 2


def test_the_configuration_is_not_on_the_childrens_command_lines(server: ServerProcess) -> None:
    """Other local users read command lines (``ps``): the backend's options (a database
    URL's password) go to the children on a pipe instead."""
    for pid in children(server.pid):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert args[1:3] == [b"-m", b"mailserv.workers"]
        assert all(re.fullmatch(rb"\d+:IMAPS?", arg) for arg in args[3:] if arg), args


def test_worker_count_unset_is_left_to_the_backend(tmp_path: Path) -> None:
    """Unset (None), ``build_service`` picks a worker per core where the backend allows."""
    assert load_config({}).workers is None
    path = tmp_path / "imapserv.toml"
    path.write_text("backend = 'memory'\n")
    assert load_config({}, str(path)).workers is None
