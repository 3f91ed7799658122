"""``mailserv deliver``: the sendmail-style delivery agent, run as an MTA runs it (a
process, the message on stdin), next to a running maildir server whose IDLE clients see
what it stores; its sysexits statuses.

The maildir backend only: the agent needs a store several processes share (maildir, or
sql on PostgreSQL, through the same delivery core); the memory backend is refused.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BACKENDS, _selected_backends
from lmtpserver import (
    HANG,
    MAX_MESSAGE,
    LmtpServer,
    message,
    seen_by_idle,
    start_lmtp_server,
    stop_lmtp_server,
    subjects,
)

from bench.harness import REPO

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif("maildir" not in _selected_backends(), reason="maildir not selected"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LmtpServer]:
    started = start_lmtp_server(tmp_path_factory.mktemp("deliver"), BACKENDS["maildir"])
    yield started
    stop_lmtp_server(started)


def _deliver(
    server: LmtpServer, args: Sequence[str], data: bytes
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    where = ["--config", str(server.config), "--data-dir", str(server.process.data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "mailserv", "deliver", *where, *args],
        input=data,
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=HANG,
    )


def _lf(subject: str) -> bytes:
    """A message with bare LF line ends, as an MTA pipes it."""
    return message(subject).replace(b"\r\n", b"\n")


def test_delivered_and_seen_by_idle(server: LmtpServer) -> None:
    user = server.users[0]

    def send(subject: str) -> None:
        done = _deliver(server, ["-u", user.name, "-f", "bounce@example.org"], _lf(subject))
        assert done.returncode == 0, done.stderr

    conn = seen_by_idle(server, user, send)
    _typ, data = conn.fetch("*", "(BODY.PEEK[])")
    stored = data[0][1]  # type: ignore[index]
    assert stored.startswith(b"Return-Path: <bounce@example.org>\r\nFrom: ")
    assert b"\n" not in stored.replace(b"\r\n", b"")  # every line end is CRLF
    conn.logout()


def test_plus_address_and_missing_folder(server: LmtpServer) -> None:
    user = server.users[1]
    conn = server.imap(user)
    conn.create("Lists")
    first, second = ("f-" + secrets.token_hex(4) for _ in range(2))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            pool.submit(_deliver, server, ["-u", f"{user.name}+Lists@example.org"], _lf(first)),
            pool.submit(_deliver, server, ["-u", user.name, "-m", "Missing"], _lf(second)),
        ]
        assert [run.result().returncode for run in runs] == [0, 0]
    assert subjects(conn, "Lists") == [first]
    assert second in subjects(conn, "INBOX")
    conn.logout()


def test_exit_statuses(server: LmtpServer, tmp_path: Path) -> None:
    user = server.users[0].name
    full = server.quota_user.name
    memory = ["--backend", "memory", "--data-dir", str(tmp_path)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        cases = {
            "unknown user": (["-u", "nobody-" + secrets.token_hex(3)], _lf("x"), 67),
            "empty": (["-u", user], b"\n\n", 65),
            "too big": (["-u", user], b"Subject: big\n\n" + b"x" * MAX_MESSAGE, 65),
            "usage": (["-m", "INBOX"], _lf("x"), 64),
            "memory backend": (["-u", user, *memory], _lf("x"), 78),
        }
        runs = {
            name: pool.submit(_deliver, server, args, data)
            for name, (args, data, _) in cases.items()
        }
        # One message fills the quota user's store; the next is refused as over quota.
        assert _deliver(server, ["-u", full], _lf("first")).returncode == 0
        over = _deliver(server, ["-u", full], _lf("second"))
        got = {name: run.result().returncode for name, run in runs.items()}
    assert got == {name: status for name, (_, _, status) in cases.items()}
    assert over.returncode == 73, over.stderr
    assert b"5.2.2" in over.stderr
    for name, run in runs.items():
        assert b"Traceback" not in run.result().stderr, name
