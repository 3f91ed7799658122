"""SORT and THREAD on a big mailbox: ``python -m bench.sortthread --backend memory``.

Fills INBOX with ``--messages`` realistic messages (``bench.messages.realistic``; every
fourth answers an earlier one, so THREAD has chains to build), then times SORT (DATE),
SORT (SUBJECT), SORT (REVERSE FROM DATE) and THREAD=REFERENCES/ORDEREDSUBJECT, each
``--repeat`` times (the first run of each is dropped: it loads the infos), while a probe
client sends NOOP every 5 ms (its p99 is what the command makes other users wait).  The
server's CPU time per command (its median; the probe's NOOPs included) is the figure a
loaded machine disturbs least.
Targets at 10k (issue 11): SORT <= 100 ms, THREAD=REFERENCES <= 300 ms.
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench import messages
from bench.harness import RawClient, ServerProcess
from bench.run import Row, append_all, must, percentile, print_table, timed
from bench.scale import PROBE_EVERY, Probe, cpu_seconds, ms
from bench.statecheck.run import backend_spec

COMMANDS = (
    ("SEARCH ALL", None),
    ("SORT (DATE) UTF-8 ALL", 0.100),
    ("SORT (SUBJECT) UTF-8 ALL", 0.100),
    ("SORT (REVERSE FROM DATE) UTF-8 ALL", None),
    ("THREAD REFERENCES UTF-8 ALL", 0.300),
    ("THREAD ORDEREDSUBJECT UTF-8 ALL", None),
)


def corpus(count: int) -> list[bytes]:
    """Realistic messages with Message-IDs; every fourth a reply to an earlier one."""
    rng = random.Random(3)
    out = []
    for i in range(count):
        raw = messages.realistic(i, rng)
        extra = b"Message-ID: <m%d@bench.example>\r\n" % i
        if i and i % 4 == 0:
            parent = rng.randrange(i)
            extra += b"In-Reply-To: <m%d@bench.example>\r\n" % parent
            extra += b"References: <m%d@bench.example>\r\n" % parent
        out.append(extra + raw)
    return out


@contextmanager
def filled(backend: str, count: int) -> Iterator[tuple[ServerProcess, Callable[[], RawClient]]]:
    """A server of ``backend`` whose user's INBOX holds ``corpus(count)``, and a function
    that opens a client logged in as that user; the server stops (its data gone) after."""
    user, password = "bencher", "pw-" + secrets.token_hex(8)
    data_dir = Path(tempfile.mkdtemp(prefix=f"mailserv-{backend}-"))
    server = ServerProcess(data_dir, backend_spec(backend))
    server.start()

    def connect() -> RawClient:
        client = RawClient.connect(server.imap_port, timeout=600)
        client.login(user, password)
        return client

    try:
        server.add_user(user, password)
        filler = connect()
        append_all(filler, "INBOX", corpus(count))
        filler.close()
        yield server, connect
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def run(backend: str, count: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    with filled(backend, count) as (server, connect):
        actor = connect()
        probe = Probe(connect())
        try:
            must(timed(actor, "SELECT INBOX"), "SELECT")
            for command, target in COMMANDS:
                took: list[float] = []
                cpu: list[float] = []
                waited: list[float] = []
                for _ in range(repeat + 1):
                    time.sleep(PROBE_EVERY * 4)
                    start, used = time.perf_counter(), cpu_seconds(server.pid)
                    took.append(must(timed(actor, command), command).seconds)
                    cpu.append(cpu_seconds(server.pid) - used)
                    waited += probe.during(start, time.perf_counter())
                median = statistics.median(took[1:])
                p99 = percentile(waited, 0.99) if waited else 0.0
                figure = (
                    f"first {ms(took[0])}, p50 {ms(median)} (server CPU"
                    f" {ms(statistics.median(cpu[1:]))}); probe NOOP p99 {ms(p99)}"
                )
                if target is None:
                    rows.append(Row(command, figure))
                else:
                    rows.append(Row(command, figure, f"<= {ms(target)}", median <= target))
        finally:
            actor.close()
            probe.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sortthread", description=__doc__)
    parser.add_argument("--backend", default="memory", help="memory, maildir, sql-sqlite, ...")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    rows = run(args.backend, args.messages, args.repeat)
    print(f"{args.backend}, {args.messages} messages")
    print_table(rows)
    return 1 if args.check and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
