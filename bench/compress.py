"""COMPRESS=DEFLATE's effect on the header FETCH: ``python -m bench.compress --backend memory``.

Fills INBOX with ``--messages`` realistic messages (``bench.sortthread.corpus``: each with
a Message-ID), then runs each header FETCH below ``--repeat`` times on a plain connection
and on one after ``COMPRESS DEFLATE`` (the first run of each is dropped: it loads the
infos), and prints per command and mode: the median time, the bytes the server sent on the
wire, and the CPU milliseconds the server and the client spent per run (the client
inflates; on one machine they share the cores).  Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from bench.harness import DeflateSocket, RawClient
from bench.run import HEADER_FETCH, Row, must, print_table, timed
from bench.scale import cpu_seconds, ms
from bench.sortthread import filled

HEADER_FIELDS = "FROM TO SUBJECT DATE MESSAGE-ID"
COMMANDS = (
    (
        "header fields FETCH",
        f"FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])",
    ),
    ("envelope FETCH", HEADER_FETCH),
)


def measure(client: RawClient, server_pid: int, command: str, repeat: int) -> str:
    """The figures of ``command`` run ``repeat`` times (after one dropped run)."""
    must(timed(client, command), command)
    took: list[float] = []
    wire: list[int] = []
    server_cpu = client_cpu = 0.0
    for _ in range(repeat):
        sock = client.sock
        received = sock.wire_received if isinstance(sock, DeflateSocket) else 0
        server_before, client_before = cpu_seconds(server_pid), time.process_time()
        timing = must(timed(client, command), command)
        server_cpu += cpu_seconds(server_pid) - server_before
        client_cpu += time.process_time() - client_before
        took.append(timing.seconds)
        if isinstance(sock, DeflateSocket):
            wire.append(sock.wire_received - received)
        else:
            wire.append(len(timing.data))
    return (
        f"p50 {ms(statistics.median(took))}, {statistics.median(wire) / 1024:.0f} KiB on the"
        f" wire, CPU server {server_cpu / repeat * 1000:.0f} ms, client"
        f" {client_cpu / repeat * 1000:.0f} ms"
    )


def run(backend: str, count: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    with filled(backend, count) as (server, connect):
        plain, deflating = connect(), connect()
        try:
            assert deflating.compress().ok
            for client in (plain, deflating):
                must(timed(client, "SELECT INBOX"), "SELECT")
            for name, command in COMMANDS:
                for mode, client in (("plain", plain), ("DEFLATE", deflating)):
                    figures = measure(client, server.pid, command, repeat)
                    rows.append(Row(f"{name}, {mode}", figures))
        finally:
            plain.close()
            deflating.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compress", description=__doc__)
    parser.add_argument("--backend", default="memory", help="memory, maildir, sql-sqlite, ...")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rows = run(args.backend, args.messages, args.repeat)
    print(f"{args.backend}, {args.messages} messages")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
