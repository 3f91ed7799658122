"""LMTP delivery rate: ``python -m bench.lmtp [--backend NAME ...] [--messages N]``.

For each backend (memory, maildir, sql on SQLite, sql on PostgreSQL; each with its default
durability: maildir fsyncs, SQLite ``synchronous=full``, PostgreSQL a cluster with fsync on)
a server is started with ``--lmtp``, ``--workers 1``, and ten users; ``--connections``
clients (an MTA's parallel LMTP deliveries) each send their share of ``--messages``
messages, first to one recipient each, then to all ten.  Printed: messages/s and
deliveries/s (one per recipient stored).

``--postfix N`` adds Postfix's queue drained into mailserv: a private Postfix
(tests/postfix.py; root and Debian's postfix needed) takes N messages by SMTP with its
LMTP transport held, then is let go; the time until every message is in the mailbox.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.harness import HOST, BackendSpec, ServerProcess, free_port
from bench.run import in_threads

RECIPIENTS = 10
BACKENDS = ("memory", "maildir", "sql-sqlite", "sql-postgresql")


def _message(n: int, size: int) -> bytes:
    head = (
        b"From: Bench <bench@example.org>\r\nTo: you@example.org\r\n"
        b"Subject: delivery %d\r\nMessage-ID: <%d@bench.example.org>\r\n\r\n" % (n, n)
    )
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


class _Client:
    """A minimal pipelining LMTP client (smtplib.LMTP reads one reply after DATA)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=120)
        self.file = self.sock.makefile("rb")
        self._expect(1)
        self.sock.sendall(b"LHLO bench\r\n")
        self._expect(1)

    def _expect(self, count: int) -> None:
        while count:
            line = self.file.readline()
            if not line[:1] == b"2" and not line[:1] == b"3":
                raise RuntimeError(f"LMTP said {line!r}")
            if line[3:4] != b"-":
                count -= 1

    def send(self, recipients: list[str], data: bytes) -> None:
        rcpts = b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients)
        self.sock.sendall(b"MAIL FROM:<bench@example.org>\r\n" + rcpts + b"DATA\r\n")
        self._expect(2 + len(recipients))
        self.sock.sendall(data + b".\r\n")
        self._expect(len(recipients))

    def close(self) -> None:
        self.sock.sendall(b"QUIT\r\n")
        self.sock.close()


@contextmanager
def _server(name: str, root: Path) -> Iterator[tuple[ServerProcess, int]]:
    backend = BackendSpec("sql" if name.startswith("sql") else name)
    cluster = None
    if name == "sql-postgresql":
        import pgcluster

        cluster = pgcluster.start_cluster(durable=True)
        backend = BackendSpec("sql", {"url": cluster.database()})
    port = free_port()
    args = ["--workers", "1", "--lmtp", f"tcp:{port}:interface={HOST}"]
    process = ServerProcess(root / name, backend, extra_args=args)
    try:
        process.start()
        yield process, port
    finally:
        process.stop()
        if cluster is not None:
            cluster.stop()


def _rate(port: int, users: list[str], messages: int, connections: int, fan: int) -> float:
    """Seconds to send ``messages`` messages of ``fan`` recipients over ``connections``."""
    body = _message(0, 4096)

    def work(index: int) -> None:
        client = _Client(port)
        for n in range(index, messages, connections):
            recipients = [f"{users[(n + k) % len(users)]}@example.org" for k in range(fan)]
            client.send(recipients, body)
        client.close()

    _, seconds = in_threads(work, connections, 600)
    return seconds


def run_backend(name: str, messages: int, connections: int, root: Path) -> None:
    with _server(name, root) as (process, port):
        users = [f"bench{i}" for i in range(RECIPIENTS)]
        for user in users:
            process.add_user(user, "pw")
        _rate(port, users, 20, 2, 1)  # warm: accounts created, caches filled
        for fan in (1, RECIPIENTS):
            count = messages if fan == 1 else max(1, messages // RECIPIENTS)
            seconds = _rate(port, users, count, connections, fan)
            print(
                f"{name:15} {fan:2} rcpt  {count:6} msgs  {seconds:7.2f} s  "
                f"{count / seconds:8.1f} msg/s  {count * fan / seconds:8.1f} deliveries/s",
                flush=True,
            )


def run_postfix(count: int, root: Path) -> None:
    """Postfix's queue of ``count`` messages drained into mailserv (maildir)."""
    import smtplib

    from postfix import Postfix

    with _server("maildir", root) as (process, port):
        process.add_user("drain", "pw")
        postfix = Postfix(f"inet:[{HOST}]:{port}")
        postfix.extra["defer_transports"] = "lmtp"  # hold the queue until flushed
        postfix.start()
        try:
            with smtplib.SMTP(HOST, postfix.smtp_port, timeout=120) as smtp:
                for n in range(count):
                    smtp.sendmail("bench@example.org", ["drain@example.org"], _message(n, 4096))
            postfix.flush()
            start = time.perf_counter()
            _wait(lambda: _exists(process, "drain") >= count)
            seconds = time.perf_counter() - start
            print(
                f"postfix drain   {count} msgs  {seconds:7.2f} s  {count / seconds:8.1f} msg/s",
                flush=True,
            )
        finally:
            postfix.stop()


def _exists(process: ServerProcess, user: str) -> int:
    import imaplib

    conn = imaplib.IMAP4(HOST, process.imap_port)
    conn.login(user, "pw")
    _typ, data = conn.select("INBOX", readonly=True)
    conn.logout()
    return int(data[0] or 0)


def _wait(done: Callable[[], bool], limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the queue did not drain")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lmtp", description=__doc__)
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--postfix", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-lmtp-"))
    try:
        for name in args.backend or BACKENDS:
            run_backend(name, args.messages, args.connections, root)
        if args.postfix:
            run_postfix(args.postfix, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
