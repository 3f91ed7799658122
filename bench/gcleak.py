"""Do short sessions leave objects behind under the collector policy?
``python -m bench.gcleak --sessions 2000 --every 500``.

Runs the server in this process as ``twistd imapserv`` runs it (memory backend, the
BackendService of a process of its own, so :class:`mailserv.collector.CollectorPolicy` is
on) and a client in a child process that opens ``--every`` sessions one after the other
(LOGIN, SELECT INBOX, NOOP, LOGOUT), ``--sessions`` in all; with ``--held`` a batch's
sessions are all open at once while the server runs a full pass (which freezes them), then
log out.  After each batch the server
sweeps (as it does when no command has run for a while) and prints the objects the
collector tracks then (frozen and not) and what the sweep freed: the objects that lived
through a full pass, frozen, and died later.  The first figure must not grow with the
number of sessions.  Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import threads
from twisted.internet.defer import Deferred

from mailserv.auth.passwd import PasswdFile
from mailserv.auth.schemes import hash_password
from mailserv.config import Config
from mailserv.tap import BackendService, build_server

USER, PASSWORD = "leak", "pw-leak"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""The login is not what is measured: a cheap Argon2id hash."""

_CLIENT = """
import imaplib, sys
port, count, held = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "held"
user, password = sys.argv[4:6]
def session():
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    imap.login(user, password)
    imap.select("INBOX")
    imap.noop()
    return imap
if held:  # all open at once, until the server says (it runs a full pass meanwhile)
    sessions = [session() for _ in range(count)]
    print("open", flush=True)
    sys.stdin.readline()
    for imap in sessions:
        imap.logout()
else:
    for _ in range(count):
        session().logout()
"""


def _sessions(port: int, count: int, held: bool) -> None:
    """``count`` sessions, one after the other; ``held``: all open at once, and a full
    pass of the collector (here, in the server) while they are."""
    mode = "held" if held else "-"
    argv = [sys.executable, "-c", _CLIENT, str(port), str(count), mode, USER, PASSWORD]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as client:
        assert client.stdin is not None and client.stdout is not None
        if held:
            assert client.stdout.readline() == b"open\n"
            gc.collect()  # in this thread: the hook freezes what lives, the sessions too
            client.stdin.write(b"go\n")
            client.stdin.flush()
        client.stdin.close()
        if client.wait() != 0:
            raise RuntimeError("the client failed")


def _tracked() -> int:
    return gc.get_freeze_count() + len(gc.get_objects())


async def _measure(reactor: Any, args: argparse.Namespace, data: Path) -> None:
    PasswdFile(data / "passwd").add_user(USER, hash_password(PASSWORD.encode(), hasher=CHEAP))
    parts = build_server(Config(data_dir=str(data), backend="memory"), reactor)
    port = reactor.listenTCP(0, parts.factory, interface="127.0.0.1")
    service = BackendService(parts.backend, reactor, factory=parts.factory, own_process=True)
    service.startService()
    while service.collector is None:  # the backend's start
        await threads.deferToThread(time.sleep, 0.05)
    collector = service.collector
    await threads.deferToThread(_sessions, port.getHost().port, 1, False)  # warm up
    collector.sweep("bench")
    print("sessions  tracked before sweep  frozen before  freed by sweep  tracked after sweep"
          "  frozen after  sweep ms  full passes")  # fmt: skip
    done = 0
    while done < args.sessions:
        batch = min(args.every, args.sessions - done)
        await threads.deferToThread(_sessions, port.getHost().port, batch, args.held)
        done += batch
        tracked, frozen = _tracked(), gc.get_freeze_count()
        began = time.perf_counter()
        freed = collector.sweep("bench")
        took = time.perf_counter() - began
        print(
            f"{done:8d}  {tracked:20d}  {frozen:13d}  {freed:14d}  {_tracked():19d}"
            f"  {gc.get_freeze_count():12d}  {took * 1000:8.0f}  {collector.passes:11d}",
            flush=True,
        )
    await port.stopListening()
    await service.stopService()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gcleak")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--every", type=int, default=500, help="sessions between two sweeps")
    parser.add_argument(
        "--held", action="store_true",
        help="each batch's sessions open at once, through a full pass (frozen alive)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    data = Path(tempfile.mkdtemp(prefix="mailserv-gcleak-"))
    failed: list[object] = []

    def run() -> None:
        done = Deferred.fromCoroutine(_measure(reactor, args, data))
        done.addErrback(failed.append)
        done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    try:
        reactor.run()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if failed:
        print(failed[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
