"""mbsync (isync 1.4, Debian's ``isync``) syncing a local Maildir with the server.

mbsync runs as a subprocess with a configuration file of its own, over plain IMAP, STARTTLS
and IMAPS (trusting only the server's generated certificate), against every backend.  It
pipelines without limit by default (``PipelineDepth`` unset): a download of a big folder
sends one ``UID FETCH`` per message at once, and every run ends with LOGOUT, after which it
waits for the server to close the connection.

A round trip: a local Maildir of N realistic messages (some with flags) is pushed to the
server; a second, empty Maildir is filled from the server and compared byte for byte; then a
flag is added and one removed on each side, a message deleted locally and one expunged on
the server, and both Maildirs are synced again and compared with the server.  Every run must
exit 0 without reporting a timeout or an error, so a server that makes mbsync wait for its
``Timeout`` (or for a close that never comes) fails here; how fast the runs are is measured
in ``bench/``, not bounded here (a run is killed as hung only far beyond any normal one).

Without mbsync the module is skipped, unless MAILSERV_REQUIRE_MBSYNC is set (CI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from imapserver import User
from maildirsync import Local, Run, Sync, corpus, require, round_trip, run_sync

from bench.harness import ServerProcess

TRANSPORTS = ("plain", "starttls", "imaps")

BIG = 2500
SMALL = 200

BIG_SPREAD = {
    ("memory", "imaps"),
    ("maildir", "plain"),
    ("sql-sqlite", "starttls"),
    ("sql-postgresql", "imaps"),
    ("proxy", "starttls"),
}
"""Where the 2,500-message round trip runs: every backend once, every transport at least once
(the uploads to the stores on disk take most of this module's time)."""

MBSYNC_TIMEOUT = 30
"""mbsync's own ``Timeout`` (seconds without an answer before it gives up)."""

HUNG_AFTER = {SMALL: 90.0, BIG: 240.0}
"""Seconds after which one mbsync run of a round trip is killed as hung (several times its
usual length on a loaded two-core machine: 2 s and 10-30 s)."""


pytestmark = pytest.mark.timeout(900)


# -- mbsync ------------------------------------------------------------------------------


def _quote(value: str) -> str:
    """A quoted argument of an mbsync configuration line."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path, server: ServerProcess, user: User, transport: str, local: Local
) -> None:
    if transport == "imaps":
        port, tls = server.imaps_port, "IMAPS"
    else:
        port, tls = server.imap_port, "STARTTLS" if transport == "starttls" else "None"
    lines = [
        "FSync no",  # the test's Maildirs need not survive a power cut
        "",
        "IMAPAccount server",
        f"Host {server.host}",
        f"Port {port}",
        f"User {_quote(user.name)}",
        f"Pass {_quote(user.password)}",
        f"SSLType {tls}",
        f"Timeout {MBSYNC_TIMEOUT}",
    ]
    if tls != "None":
        lines.append(f"CertificateFile {_quote(str(server.cert_path))}")
    lines += [
        "",
        "IMAPStore remote",
        "Account server",
        "",
        "MaildirStore local",
        f"Path {_quote(str(local.root) + '/')}",
        f"Inbox {_quote(str(local.inbox))}",
        "SubFolders Verbatim",
        "",
        "Channel sync",
        "Far :remote:",
        "Near :local:",
        "Patterns INBOX",
        "Sync All",
        "Create Both",
        "Expunge Both",
        "SyncState *",
        "",
    ]
    path.write_text("\n".join(lines))


def mbsync(config: Path, local: Local, hung_after: float) -> Run:
    """One ``mbsync -a`` run; fails the test unless it exits 0 reporting no timeout or error."""
    local.settle()
    argv = [require("mbsync", "isync"), "-c", str(config), "-a"]
    return run_sync(argv, hung_after, forbidden=("timeout", "error"))


def mbsync_of(
    server: ServerProcess, user: User, transport: str, count: int
) -> Callable[[Local], Sync]:
    """How a round trip of ``count`` messages runs mbsync for a Maildir."""

    def sync_of(local: Local) -> Sync:
        config = local.root.parent / f"{local.root.name}.mbsyncrc"
        write_config(config, server, user, transport, local)
        return lambda: mbsync(config, local, HUNG_AFTER[count]).seconds

    return sync_of


# -- the round trip ----------------------------------------------------------------------


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["server"])


@pytest.fixture(scope="module")
def corpora() -> dict[int, list[bytes]]:
    """Message count → the corpus of that size, built once per module by ``corpus_of``."""
    return {}


def corpus_of(corpora: dict[int, list[bytes]], count: int) -> list[bytes]:
    if count not in corpora:
        corpora[count] = corpus(count, seed=count)
    return corpora[count]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_round_trip(
    server: ServerProcess,
    user: User,
    transport: str,
    corpora: dict[int, list[bytes]],
    tmp_path: Path,
) -> None:
    require("mbsync", "isync")
    bodies = corpus_of(corpora, SMALL)
    times = round_trip(server, user, bodies, tmp_path, mbsync_of(server, user, transport, SMALL))
    print(f"mbsync runs of {SMALL} messages over {transport}: {times}")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_round_trip_big(
    server: ServerProcess,
    user: User,
    transport: str,
    backend_name: str,
    corpora: dict[int, list[bytes]],
    tmp_path: Path,
) -> None:
    """2,500 messages: the download pipelines 2,500 ``UID FETCH`` commands at once, 39 times
    the server's queue (``max_pipelined`` 64), so it stops reading many times over a run."""
    require("mbsync", "isync")
    if (backend_name, transport) not in BIG_SPREAD:
        pytest.skip(f"the {BIG}-message round trip runs on {sorted(BIG_SPREAD)} only")
    bodies = corpus_of(corpora, BIG)
    times = round_trip(server, user, bodies, tmp_path, mbsync_of(server, user, transport, BIG))
    print(f"mbsync runs of {BIG} messages over {transport}: {times}")
