"""The proxy backend against its upstream, in one run: ``python -m bench.proxy``.

Starts a private Dovecot (tests/dovecot.py), fills its INBOX with ``--messages`` realistic
messages, starts ``twistd imapserv --backend proxy`` in front of it, and times the same
commands directly against Dovecot and through mailserv, alternating, ``--rounds`` times each
(the median counts).  The first SELECT through mailserv is reported on its own: it lists
every UID and, as the engine looks for the first unseen message, parses every message once
(the proxy keeps envelopes and body structures per UIDVALIDITY and UID, on disk too); the
rounds after it are the "known mailbox" case.  For scale, the same commands also run
against mailserv's memory backend holding the same messages (``--no-memory`` skips it):
what the engine itself costs, with no upstream at all.

Targets (issue 5): header FETCH of every message through mailserv <= 1.5 x direct, SEARCH
<= 1.2 x direct.  ``--upstream tls`` puts TLS between mailserv and Dovecot (plain by
default, as the direct client speaks plain too).  ``--check`` exits 1 on a missed target.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess
from bench.run import (
    HEADER_FETCH,
    HEADER_FIELDS_FETCH,
    Row,
    append_all,
    ms,
    must,
    print_table,
    timed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dovecot import Dovecot

USER, PASSWORD = "bench", "bench-secret"

COMMANDS: list[tuple[str, str, float | None]] = [
    ("header FETCH", HEADER_FETCH, 1.5),
    ("FETCH 1:* (BODYSTRUCTURE)", "FETCH 1:* (BODYSTRUCTURE)", None),
    (
        "FETCH 1:* header fields",
        HEADER_FIELDS_FETCH,
        None,
    ),
    ("SEARCH FROM user42", "SEARCH FROM user42", 1.2),
    ("SEARCH SUBJECT budget", "SEARCH SUBJECT budget", 1.2),
    ("SEARCH TEXT migration", "SEARCH TEXT migration", 1.2),
    ("SEARCH SINCE 1-Jun-2021", "SEARCH SINCE 1-Jun-2021", 1.2),
    ("SEARCH UNSEEN", "SEARCH UNSEEN", 1.2),
    ("UID SEARCH OR FLAGGED LARGER 9000", "UID SEARCH OR FLAGGED LARGER 9000", 1.2),
]


def run(args: argparse.Namespace) -> list[Row]:
    upstream = Dovecot()
    upstream.add_user(USER, PASSWORD)
    upstream.start()
    data_dir = Path(tempfile.mkdtemp(prefix="mailserv-bench-proxy-"))
    rows: list[Row] = []
    try:
        rng = random.Random(1)
        corpus = [messages.realistic(i, rng) for i in range(args.messages)]
        filler = RawClient.connect(upstream.imap_port, timeout=600)
        filler.login(USER, PASSWORD)
        seconds = append_all(filler, "INBOX", corpus)
        filler.close()
        rows.append(
            Row(f"fill upstream INBOX x{len(corpus)}", f"{len(corpus) / seconds:.0f} msg/s")
        )

        if args.upstream == "tls":
            options = upstream.upstream_options()
        else:
            options = {"upstream": f"plain:127.0.0.1:{upstream.imap_port}"}
        server = ServerProcess(data_dir / "proxy", BackendSpec("proxy", options))
        server.start()
        memory = None
        try:
            if args.memory:
                memory = ServerProcess(data_dir / "memory", BackendSpec("memory"))
                memory.start()
                memory.add_user(USER, PASSWORD)
                loader = RawClient.connect(memory.imap_port, timeout=600)
                loader.login(USER, PASSWORD)
                append_all(loader, "INBOX", corpus)
                loader.close()
            rows += measure(upstream, server, memory, args.rounds)
            server.stop()  # a new process: only the disk cache of parsed messages remains
            server.start()
            client = RawClient.connect(server.imap_port, timeout=600)
            client.login(USER, PASSWORD)
            cold = must(timed(client, "SELECT INBOX"), "SELECT").seconds
            cold += must(timed(client, HEADER_FETCH), "FETCH").seconds
            rows.append(Row("after a restart: SELECT + header FETCH via mailserv", ms(cold)))
            client.close()
        finally:
            server.stop()
            if memory is not None:
                memory.stop()
    finally:
        upstream.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def measure(
    upstream: Dovecot, server: ServerProcess, memory: ServerProcess | None, rounds: int
) -> list[Row]:
    direct = RawClient.connect(upstream.imap_port, timeout=600)
    direct.login(USER, PASSWORD)
    proxied = RawClient.connect(server.imap_port, timeout=600)
    proxied.login(USER, PASSWORD)
    local = None
    if memory is not None:
        local = RawClient.connect(memory.imap_port, timeout=600)
        local.login(USER, PASSWORD)
        must(timed(local, "SELECT INBOX"), "SELECT")
    rows = [
        Row("SELECT INBOX direct", ms(must(timed(direct, "SELECT INBOX"), "SELECT").seconds)),
        Row(
            "SELECT INBOX via mailserv (first: lists every UID)",
            ms(must(timed(proxied, "SELECT INBOX"), "SELECT").seconds),
        ),
    ]
    first = must(timed(proxied, HEADER_FETCH), "FETCH").seconds
    rows.append(Row("header FETCH via mailserv, first (parses every message)", ms(first)))
    for label, command, limit in COMMANDS:
        there: list[float] = []
        here: list[float] = []
        engine: list[float] = []
        answers: set[bytes] = set()
        for _ in range(rounds):
            d = must(timed(direct, command), command)
            p = must(timed(proxied, command), command)
            there.append(d.seconds)
            here.append(p.seconds)
            if local is not None:
                engine.append(must(timed(local, command), command).seconds)
            if command.startswith(("SEARCH", "UID SEARCH")):
                answers.add(_search_line(d.data))
                answers.add(_search_line(p.data))
        a, b = statistics.median(there), statistics.median(here)
        ratio = b / a
        same = "" if len(answers) <= 1 else " (ANSWERS DIFFER)"
        floor = f", memory backend {ms(statistics.median(engine))}" if engine else ""
        rows.append(
            Row(
                f"{label}: direct {ms(a)}, via mailserv {ms(b)}{floor}{same}",
                f"{ratio:.2f} x",
                "" if limit is None else f"<= {limit} x",
                None if limit is None else ratio <= limit and not same,
            )
        )
    direct.close()
    proxied.close()
    if local is not None:
        local.close()
    return rows


def _search_line(data: bytes) -> bytes:
    for line in data.split(b"\r\n"):
        if line.startswith(b"* SEARCH"):
            return line
    return b""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--upstream", choices=("plain", "tls"), default="plain")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be positive")
    rows = run(args)
    print_table(rows)
    return 1 if args.check and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
