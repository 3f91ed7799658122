"""offlineimap (Debian's ``offlineimap3``, on imaplib2) syncing a local Maildir with the server,
with every extension the server offers (CONDSTORE, QRESYNC, ESEARCH, COMPRESS=DEFLATE ...).

The round trip of :mod:`maildirsync` (upload, download into an empty Maildir, changes on both
sides, both synced again, compared with the server) on every backend, over one transport
each so that plain IMAP, STARTTLS and IMAPS are all used, and with offlineimap's
``usecompression`` (COMPRESS=DEFLATE) where it runs over plain IMAP.  Every run must exit 0
within a bound without an error in its output.

Without offlineimap the module is skipped, unless MAILSERV_REQUIRE_OFFLINEIMAP is set (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from imapserver import User
from maildirsync import Local, Sync, corpus, round_trip

from bench.harness import ServerProcess

OFFLINEIMAP = shutil.which("offlineimap")
COUNT = 100
RUN_LIMIT = 30.0
"""Seconds one offlineimap run of the round trip may take."""

TRANSPORT = {
    "memory": "plain",
    "maildir": "starttls",
    "sql-sqlite": "imaps",
    "sql-postgresql": "plain",
    "proxy": "starttls",
}

pytestmark = pytest.mark.timeout(300)


def _require_offlineimap() -> str:
    if OFFLINEIMAP is None:
        if os.environ.get("MAILSERV_REQUIRE_OFFLINEIMAP"):
            pytest.fail("MAILSERV_REQUIRE_OFFLINEIMAP is set but offlineimap is not installed")
        pytest.skip("offlineimap (offlineimap3) is not installed")
    return OFFLINEIMAP


def write_config(
    path: Path, server: ServerProcess, user: User, transport: str, local: Local
) -> None:
    """An offlineimap configuration syncing ``local``'s INBOX (nothing else) with ``user``'s."""
    tls = transport != "plain"
    lines = [
        "[general]",
        "accounts = test",
        f"metadata = {local.root.parent / (local.root.name + '-state')}",
        "ui = basic",
        "",
        "[Account test]",
        "localrepository = local",
        "remoterepository = remote",
        "",
        "[Repository local]",
        "type = Maildir",
        f"localfolders = {local.root}",
        "sync_deletes = yes",
        "",
        "[Repository remote]",
        "type = IMAP",
        "remotehost = localhost",
        f"remoteport = {server.imaps_port if transport == 'imaps' else server.imap_port}",
        f"remoteuser = {user.name}",
        f"remotepass = {user.password.replace('%', '%%')}",
        f"ssl = {'yes' if transport == 'imaps' else 'no'}",
        f"starttls = {'yes' if transport == 'starttls' else 'no'}",
        f"usecompression = {'yes' if transport == 'plain' else 'no'}",
        "folderfilter = lambda name: name == 'INBOX'",
        "createfolders = no",
        "maxconnections = 1",
        "holdconnectionopen = no",
        "",
    ]
    if tls:
        lines.insert(-1, f"sslcacertfile = {server.cert_path}")
    path.write_text("\n".join(lines))


def offlineimap(config: Path) -> float:
    """One ``offlineimap -o`` run; fails the test unless it exits 0 within the bound and
    reports no error."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            [_require_offlineimap(), "-c", str(config), "-o", "-u", "basic"],
            capture_output=True,
            timeout=RUN_LIMIT + 5,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = ((exc.stdout or b"") + (exc.stderr or b"")).decode("utf-8", "replace")
        pytest.fail(f"offlineimap still running after {RUN_LIMIT + 5:.0f} s:\n{out[-3000:]}")
    seconds = time.monotonic() - started
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 0, f"offlineimap exit {result.returncode}:\n{output[-3000:]}"
    assert "error" not in output.lower(), output[-3000:]
    assert seconds < RUN_LIMIT, f"offlineimap took {seconds:.1f} s:\n{output[-3000:]}"
    return seconds


def offlineimap_of(server: ServerProcess, user: User, transport: str) -> Callable[[Local], Sync]:
    def sync_of(local: Local) -> Sync:
        config = local.root.parent / f"{local.root.name}.offlineimaprc"
        write_config(config, server, user, transport, local)
        return lambda: offlineimap(config)

    return sync_of


def test_round_trip(
    server: ServerProcess, user: User, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _require_offlineimap()
    transport = TRANSPORT[str(request.node.callspec.params["server"])]
    bodies = corpus(COUNT, seed=COUNT)
    times = round_trip(server, user, bodies, tmp_path, offlineimap_of(server, user, transport))
    print(f"offlineimap runs of {COUNT} messages over {transport}: {times}")
