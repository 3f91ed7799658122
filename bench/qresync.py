"""QRESYNC resync after changes: ``python -m bench.qresync --backend memory``.

A client that cached a folder of ``--messages`` (UIDVALIDITY, HIGHESTMODSEQ, its UIDs)
goes offline; another session makes ``--changes`` changes (60 % flag changes, 30 %
expunges, 10 % new messages); the client comes back.  Timed, with the bytes the server
sent (from the command to its tagged line, the SELECT's own responses included):

* ``SELECT (QRESYNC (uidvalidity modseq known-uids))`` after ``ENABLE QRESYNC``: the
  whole resync in one command;
* ``SELECT (CONDSTORE)`` + ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE modseq)`` + ``UID SEARCH
  ALL``: what a CONDSTORE-only client does (the UID list finds the expunged);
* ``SELECT`` + ``UID FETCH 1:* (FLAGS)``: the full flag refetch of a plain RFC 3501 client.

Each resync starts from the same cached state (the changes are made once), in a fresh
connection, ``--rounds`` times; the median counts.
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess
from bench.run import Row, append_all, ms, must, parse_pairs, print_table, timed
from mailserv.syntax.sequences import format_set


def code(data: bytes, name: bytes) -> int:
    match = re.search(rb"\[" + name + rb" (\d+)\]", data)
    if match is None:
        raise SystemExit(f"no {name!r} in {data[:300]!r}")
    return int(match.group(1))


def make_changes(client: RawClient, uids: list[int], count: int, rng: random.Random) -> None:
    """``count`` changes by another session: flags, expunges, new messages."""
    expunges, appends = count * 3 // 10, count // 10
    flags = count - expunges - appends
    chosen = rng.sample(uids, flags + expunges)
    for uid in chosen[:flags]:
        flag = rng.choice(["\\Seen", "\\Flagged", "\\Answered", "$Work"])
        if not client.command(f"UID STORE {uid} +FLAGS.SILENT ({flag})").ok:
            raise SystemExit("STORE failed")
    gone = format_set(sorted(chosen[flags:]))
    if not client.command(f"UID STORE {gone} +FLAGS.SILENT (\\Deleted)").ok:
        raise SystemExit("STORE failed")
    if not client.command(f"UID EXPUNGE {gone}").ok:
        raise SystemExit("UID EXPUNGE failed")
    new = [messages.realistic(10_000_000 + i, rng) for i in range(appends)]
    append_all(client, "INBOX", new)


def resync(
    server: ServerProcess, user: str, password: str, commands: Sequence[str]
) -> tuple[float, int]:
    """One fresh connection running ``commands``: seconds and bytes received, summed."""
    client = RawClient.connect(server.imap_port, timeout=300)
    client.login(user, password)
    seconds, size = 0.0, 0
    for command in commands:
        timing = must(timed(client, command), command.split(" (")[0])
        seconds += timing.seconds
        size += len(timing.data)
    client.command("LOGOUT")
    client.close()
    return seconds, size


def run(args: argparse.Namespace) -> list[Row]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailserv-bench-qresync-"))
    backend = BackendSpec(args.backend, parse_pairs(args.backend_option, "--backend-option"))
    server = ServerProcess(data_dir, backend, extra_args=["--workers", "1"])
    rows: list[Row] = []
    try:
        server.start()
        user, password = "bench", "pw-" + secrets.token_hex(8)
        server.add_user(user, password)
        rng = random.Random(1)
        client = RawClient.connect(server.imap_port, timeout=300)
        client.login(user, password)
        append_all(client, "INBOX", [messages.realistic(i, rng) for i in range(args.messages)])
        select = must(timed(client, "SELECT INBOX (CONDSTORE)"), "SELECT")
        validity = code(select.data, b"UIDVALIDITY")
        modseq = code(select.data, b"HIGHESTMODSEQ")
        listing = must(timed(client, "UID SEARCH ALL"), "UID SEARCH").data
        uids = [int(n) for n in listing.split(b"\r\n")[0].split()[2:]]
        make_changes(client, uids, args.changes, rng)
        client.command("LOGOUT")
        client.close()
        known = format_set(uids)
        plans = {
            "QRESYNC: ENABLE + SELECT (QRESYNC (...))": [
                "ENABLE QRESYNC",
                f"SELECT INBOX (QRESYNC ({validity} {modseq} {known}))",
            ],
            "CONDSTORE: SELECT + FETCH CHANGEDSINCE + UID SEARCH ALL": [
                "SELECT INBOX (CONDSTORE)",
                f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})",
                "UID SEARCH ALL",
            ],
            "plain: SELECT + UID FETCH 1:* (FLAGS)": ["SELECT INBOX", "UID FETCH 1:* (FLAGS)"],
        }
        for label, commands in plans.items():
            samples = [resync(server, user, password, commands) for _ in range(args.rounds)]
            seconds = statistics.median(s for s, _ in samples)
            size = samples[-1][1]
            rows.append(Row(label, f"{size / 1024:.1f} KiB, {ms(seconds)}"))
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.qresync", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--backend-option", action="append", default=[], metavar="K=V")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.messages < args.changes or args.changes < 10 or args.rounds < 1:
        parser.error("--changes must be at least 10 and at most --messages; --rounds >= 1")
    rows = run(args)
    print(f"{args.backend}, {args.messages} messages, {args.changes} changes", end=" ")
    print(f"(median of {args.rounds} resyncs)")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
