"""Benchmark a mailserv server from outside: ``python -m bench.run --backend memory``.

Starts ``twistd imapserv`` like the protocol tests do (own data dir, free loopback ports),
fills a mailbox with ``--messages`` realistic messages (one in 20 with a 100-300 KB
attachment) through pipelined LITERAL+ APPENDs, then times, over raw sockets (reading up to
the tagged OK, so the client's parsing does not count): SELECT, a header FETCH of every
message, BODYSTRUCTURE and four header fields of every message, 200 random ``UID FETCH n
BODY.PEEK[]`` (p50/p99), several SEARCHes, ``STORE 1:* +FLAGS (\\Seen)``, the IDLE
notification latency (p50/p99 from APPEND sent to EXISTS received), ``--mixed-clients``
clients at once each sending ``--mixed-ops`` mixed commands (bodies, envelopes, STORE,
SEARCH, NOOP, STATUS, APPEND; ops/s, p50/p99) and the server's memory per idle connection
(``--connections`` logged-in sessions in IDLE; VmRSS delta / count).

Every timed client is a real one: it sets TCP_NODELAY, sends one command, reads the whole
response and only then sends the next, so a server that leaves Nagle's algorithm on (a
small last segment waiting for the client's delayed ACK, ~40 ms) shows in the p99 figures.
The IDLE client, like a mail client, ends IDLE on EXISTS, fetches the new message and idles
again before the next APPEND.

Options: ``--backend NAME``, ``--backend-option K=V`` (repeatable), ``--messages N``,
``--connections N``, ``--idle-rounds N``, ``--mixed-clients N`` (0: none), ``--mixed-ops N``,
``--limit NAME=VALUE`` (repeatable), ``--keep`` (leave the data dir),
``--check`` (exit 1 when a target is missed).  For stores on disk: ``--restart`` stops and
starts the server after the APPENDs and times the first SELECT + header FETCH (cold; files
matching ``--drop GLOB`` in the data dir, e.g. an index, are removed meanwhile, so it is
rebuilt), and ``--deliver-into DIR`` (relative to the data dir, ``{user}`` replaced) times
IDLE notices of mail another program drops into that maildir folder (tmp/, then new/).
Prints one table: operation, figure, target, pass/fail.  Traffic goes only to 127.0.0.1;
every loop is bounded.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess, quote
from mailserv.imap.settings import ServerSettings

T = TypeVar("T")

WINDOW = 32
"""APPENDs in flight at once (below the server's default max_pipelined of 64)."""
HEADER_FETCH = "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
HEADER_FIELDS_FETCH = "FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])"


@dataclass
class Row:
    operation: str
    figure: str
    target: str = ""
    passed: bool | None = None


@dataclass
class Timing:
    seconds: float
    status: str
    data: bytes


LARGE_EVERY = 20
"""One message in this many carries a 100-300 KB attachment (a scan, a photo): its FETCH
response spans more than one loopback segment, the case where Nagle's algorithm waits for
the client's delayed ACK."""


def bench_corpus(count: int, rng: random.Random) -> tuple[list[bytes], set[int]]:
    """``count`` realistic messages (``messages.realistic``), one in ``LARGE_EVERY`` with a
    large attachment instead; and the UIDs (1-based positions) of the large ones."""
    out: list[bytes] = []
    large: set[int] = set()
    for i in range(count):
        if i % LARGE_EVERY == LARGE_EVERY // 2:
            blob = rng.randbytes(rng.randint(100_000, 300_000))
            out.append(
                messages.with_attachment(
                    subject=f"Scanned contract #{i}",
                    attachment=blob,
                    filename=f"scan-{i}.pdf",
                    message_id=f"<bench.large.{i}@example.org>",
                )
            )
            large.add(i + 1)
        else:
            out.append(messages.realistic(i, rng))
    return out, large


def timed(client: RawClient, command: str | bytes) -> Timing:
    """Send one command and read raw bytes until its tagged line; the elapsed wall time."""
    tag = b"BENCH" + client.next_tag().encode()  # cannot start a line of message text
    body = command.encode() if isinstance(command, str) else command
    marker = b"\r\n" + tag + b" "
    data = bytearray(client.buf)
    client.buf.clear()
    started = time.perf_counter()
    client.send(tag + b" " + body + b"\r\n")
    while True:
        start = max(0, len(data) - len(marker))
        chunk = client.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
        if data.startswith(tag + b" "):
            at = 0
        else:
            found = data.find(marker, start)
            at = found + 2 if found >= 0 else -1
        if at >= 0:
            end = data.find(b"\r\n", at)
            if end >= 0:
                elapsed = time.perf_counter() - started
                line = bytes(data[at:end])
                client.buf += data[end + 2 :]
                status = line.split(b" ", 2)[1].decode().upper()
                return Timing(elapsed, status, bytes(data[: end + 2]))


def must(timing: Timing, what: str) -> Timing:
    if timing.status != "OK":
        raise SystemExit(f"{what} failed: {timing.data[-300:]!r}")
    return timing


def append_all(client: RawClient, mailbox: str, corpus: Sequence[bytes]) -> float:
    """Pipelined LITERAL+ APPENDs with at most WINDOW in flight; the elapsed seconds."""
    started = time.perf_counter()
    pending: list[str] = []
    for message in corpus:
        tag = client.next_tag()
        client.send(
            b"%s APPEND %s {%d+}\r\n%s\r\n"
            % (tag.encode(), mailbox.encode(), len(message), message)
        )
        pending.append(tag)
        if len(pending) >= WINDOW:
            response = client.read_until_tagged(pending.pop(0))
            if not response.ok:
                raise SystemExit(f"APPEND failed: {response.line!r}")
    for tag in pending:
        response = client.read_until_tagged(tag)
        if not response.ok:
            raise SystemExit(f"APPEND failed: {response.line!r}")
    return time.perf_counter() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


STALL = 0.035
"""A latency this long is a stall: a delayed ACK (40 ms on Linux) holding a response."""


def spread(samples: Sequence[float]) -> str:
    """p50, p99, max and how many samples were stalls."""
    stalls = sum(1 for s in samples if s >= STALL)
    return (
        f"p50 {ms(percentile(samples, 0.5))}, p99 {ms(percentile(samples, 0.99))}, "
        f"max {ms(max(samples))}, {stalls} >= {STALL * 1000:.0f} ms"
    )


def verdict(value: float, limit: float) -> bool:
    return value <= limit


def _idle(client: RawClient, tag: str) -> None:
    client.send(f"{tag} IDLE\r\n")
    while not client.read_line().startswith(b"+"):
        pass


def idle_latency(server: ServerProcess, user: str, password: str, rounds: int) -> list[float]:
    """Seconds from an APPEND being sent by one client to EXISTS reaching another in IDLE.

    The idler behaves like a mail client: on EXISTS it ends IDLE (DONE), fetches the new
    message's flags and envelope, and idles again; the next APPEND follows at once.
    """
    idler = RawClient.connect(server.imap_port)
    actor = RawClient.connect(server.imap_port)
    try:
        idler.login(user, password)
        actor.login(user, password)
        selected = idler.command('SELECT "Idle"')
        if not selected.ok:
            raise SystemExit("SELECT Idle failed")
        count = selected.numbers("EXISTS")[-1]
        idle_tag = idler.next_tag()
        _idle(idler, idle_tag)
        message = messages.plain(subject="idle probe")
        samples = []
        for _ in range(rounds):
            tag = actor.next_tag()
            started = time.perf_counter()
            actor.send(b"%s APPEND Idle {%d+}\r\n%s\r\n" % (tag.encode(), len(message), message))
            count += 1
            want = b"* %d EXISTS" % count
            while not idler.read_line().startswith(want):
                pass
            samples.append(time.perf_counter() - started)
            idler.send(b"DONE\r\n")
            if not idler.read_until_tagged(idle_tag).ok:
                raise SystemExit("IDLE failed")
            if not idler.command(f"FETCH {count} (UID FLAGS ENVELOPE)").ok:
                raise SystemExit("FETCH of the new message failed")
            idle_tag = idler.next_tag()
            _idle(idler, idle_tag)
            if not actor.read_until_tagged(tag).ok:
                raise SystemExit("APPEND during the IDLE test failed")
        idler.send(b"DONE\r\n")
        idler.read_until_tagged(idle_tag)
        return samples
    finally:
        idler.close()
        actor.close()


MIXED_WORDS = ("budget", "meeting", "release", "server", "holiday", "invoice")


def mixed_client(
    server: ServerProcess, user: str, password: str, count: int, ops: int, seed: int
) -> list[float]:
    """One client of the mixed load: seconds of each of ``ops`` commands on shared INBOX.

    Like a mail client: sets TCP_NODELAY (``RawClient.connect``), sends one command, reads
    its whole response, then sends the next.  The commands: a body, five bodies, a
    flags+envelope range, a flag change, a SEARCH, NOOP, STATUS of another mailbox and a
    small APPEND.
    """
    rng = random.Random(seed)
    client = RawClient.connect(server.imap_port, timeout=60)
    try:
        client.login(user, password)
        must(timed(client, "SELECT INBOX"), "SELECT")
        small = messages.plain(subject=f"mixed load {seed}")
        samples = []
        for _ in range(ops):
            pick = rng.random()
            uid = rng.randint(1, count)
            if pick < 0.25:
                command = f"UID FETCH {uid} BODY.PEEK[]"
            elif pick < 0.35:
                command = f"UID FETCH {uid}:{uid + 4} BODY.PEEK[]"
            elif pick < 0.50:
                command = f"UID FETCH {uid}:{uid + 20} (FLAGS ENVELOPE)"
            elif pick < 0.65:
                command = f"UID STORE {uid} {rng.choice('+-')}FLAGS (\\Flagged)"
            elif pick < 0.75:
                command = f"UID SEARCH SUBJECT {rng.choice(MIXED_WORDS)}"
            elif pick < 0.85:
                command = "NOOP"
            elif pick < 0.93:
                command = "STATUS Small (MESSAGES UIDNEXT UNSEEN)"
            else:
                command = b"APPEND Small {%d+}\r\n%s" % (len(small), small)
            samples.append(must(timed(client, command), "mixed load").seconds)
        client.command("LOGOUT")
        return samples
    finally:
        client.close()


def in_threads(work: Callable[[int], T], count: int, timeout: float) -> tuple[list[T], float]:
    """``work(i)`` for i in range(count), each in its own thread, all at once: the results in
    order and the elapsed seconds; the first failure (or a thread still running after
    ``timeout``) ends the benchmark."""
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    elapsed = time.perf_counter() - started
    if errors or any(thread.is_alive() for thread in threads):
        raise SystemExit(f"load failed: {errors[:1] or 'a client did not finish'}")
    return [r for r in results if r is not None], elapsed


def mixed_load(
    server: ServerProcess, user: str, password: str, count: int, clients: int, ops: int
) -> tuple[float, list[float]]:
    """``clients`` mixed clients at once (threads); (commands per second, every latency)."""
    results, elapsed = in_threads(
        lambda i: mixed_client(server, user, password, count, ops, seed=i), clients, 600
    )
    samples = [s for r in results for s in r]
    return len(samples) / elapsed, samples


def delivery_latency(
    server: ServerProcess, user: str, password: str, folder: Path, rounds: int
) -> list[float]:
    """Seconds from a file being renamed into ``folder/new`` to EXISTS in IDLE on "Idle"."""
    idler = RawClient.connect(server.imap_port)
    try:
        idler.login(user, password)
        selected = idler.command('SELECT "Idle"')
        if not selected.ok:
            raise SystemExit("SELECT Idle failed")
        count = selected.numbers("EXISTS")[-1]
        idler.send(b"d1 IDLE\r\n")
        while not idler.read_line().startswith(b"+"):
            pass
        message = messages.plain(subject="external delivery").replace(b"\r\n", b"\n")
        samples = []
        for n in range(rounds):
            name = f"{int(time.time())}.bench{n}P{secrets.token_hex(4)}.localhost"
            (folder / "tmp" / name).write_bytes(message)
            started = time.perf_counter()
            os.rename(folder / "tmp" / name, folder / "new" / name)
            count += 1
            want = b"* %d EXISTS" % count
            while not idler.read_line().startswith(want):
                pass
            samples.append(time.perf_counter() - started)
        idler.send(b"DONE\r\n")
        idler.read_until_tagged("d1")
        return samples
    finally:
        idler.close()


def memory_per_connection(
    server: ServerProcess, user: str, password: str, count: int
) -> tuple[float, float]:
    """(KiB of server RSS per logged-in connection idling on a small mailbox, logins/s).

    Sessions are opened in batches, so queued logins never outlive the pre-login timeout.
    """
    time.sleep(0.5)
    before = server.rss_kib()
    socks: list[socket.socket] = []
    script = b"a LOGIN %s %s\r\nb SELECT Small\r\nc IDLE\r\n" % (
        quote(user).encode(),
        quote(password).encode(),
    )
    started = time.perf_counter()
    try:
        while len(socks) < count:
            batch = []
            for _ in range(min(50, count - len(socks))):
                sock = socket.create_connection((server.host, server.imap_port), timeout=60)
                sock.sendall(script)
                batch.append(sock)
            for sock in batch:
                data = b""
                while b"\r\n+" not in data:  # IDLE's continuation: the session is idling
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise SystemExit(f"connection closed while opening: {data[-200:]!r}")
                    data += chunk
            socks += batch
        rate = count / (time.perf_counter() - started)
        time.sleep(1.0)
        after = server.rss_kib()
    finally:
        for sock in socks:
            sock.close()
    return (after - before) / count, rate


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} wants KEY=VALUE, got {value!r}")
        out[key] = rest
    return out


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    raise_nofile(args.connections * 2 + 256)  # the server inherits it
    data_dir = Path(tempfile.mkdtemp(prefix="mailserv-bench-"))
    backend = BackendSpec(args.backend, parse_pairs(args.backend_option, "--backend-option"))
    defaults = ServerSettings()
    limits: dict[str, object] = {  # all the idle connections come from this one address
        "max_connections_per_address": max(
            defaults.max_connections_per_address, args.connections + 100
        ),
        "max_connections": max(defaults.max_connections, args.connections + 100),
    }
    limits.update(parse_pairs(args.limit, "--limit"))
    # One process: its RSS is what the memory figures measure.
    server = ServerProcess(data_dir, backend, limits=limits, extra_args=["--workers", "1"])
    try:
        server.start()
        user, password = "bench", "pw-" + secrets.token_hex(8)
        server.add_user(user, password)
        rng = random.Random(1)
        corpus, large = bench_corpus(args.messages, rng)
        total = sum(len(m) for m in corpus)

        client = RawClient.connect(server.imap_port, timeout=300)
        client.login(user, password)
        seconds = append_all(client, "INBOX", corpus)
        rate = len(corpus) / seconds
        rows.append(
            Row(
                f"APPEND x{len(corpus)} (LITERAL+, pipelined)",
                f"{rate:.0f} msg/s, {total / seconds / 1e6:.1f} MB/s",
            )
        )

        if args.restart:
            client.command("LOGOUT")
            client.close()
            server.stop()
            dropped = [path for pattern in args.drop for path in data_dir.glob(pattern)]
            for path in dropped:
                path.unlink()
            server.start()
            client = RawClient.connect(server.imap_port, timeout=300)
            client.login(user, password)
            cold = must(timed(client, "SELECT INBOX"), "SELECT").seconds
            cold += must(timed(client, HEADER_FETCH), "FETCH").seconds
            label = f"dropped {len(dropped)} files" if args.drop else "index kept"
            rows.append(
                Row(f"restart, first SELECT + header FETCH ({label})", ms(cold), "<= 1500 ms",
                    verdict(cold, 1.5))
            )  # fmt: skip
            if not client.command("UNSELECT").ok:
                raise SystemExit("UNSELECT failed")

        select = must(timed(client, "SELECT INBOX"), "SELECT")
        rows.append(Row("SELECT INBOX", ms(select.seconds)))

        header = must(timed(client, HEADER_FETCH), "FETCH")
        rows.append(
            Row("FETCH 1:* (UID FLAGS SIZE DATE ENVELOPE)", ms(header.seconds), "<= 500 ms",
                verdict(header.seconds, 0.5))
        )  # fmt: skip
        structure = must(timed(client, "FETCH 1:* (BODYSTRUCTURE)"), "FETCH BODYSTRUCTURE")
        rows.append(Row("FETCH 1:* (BODYSTRUCTURE)", ms(structure.seconds)))
        fields = must(timed(client, HEADER_FIELDS_FETCH), "FETCH HEADER.FIELDS")
        rows.append(Row("FETCH 1:* BODY.PEEK[HEADER.FIELDS (4)]", ms(fields.seconds)))

        picks = [rng.randint(1, len(corpus)) for _ in range(200)]
        bodies = [
            must(timed(client, f"UID FETCH {n} BODY.PEEK[]"), "BODY.PEEK").seconds for n in picks
        ]
        p99 = percentile(bodies, 0.99)
        rows.append(
            Row(
                f"200 x UID FETCH n BODY.PEEK[] (random n, {sum(n in large for n in picks)} "
                "> 100 KB)",
                f"total {ms(sum(bodies))}, {spread(bodies)}",
                "p99 <= 20 ms",
                verdict(p99, 0.020),
            )
        )

        searches = [
            ("SEARCH FROM user42", None),
            ("SEARCH SUBJECT budget", 0.05),
            ("SEARCH TEXT migration", None),
            ("SEARCH SINCE 1-Jun-2021", None),
            ("SEARCH UNSEEN", None),
        ]
        for command, limit in searches:
            result = must(timed(client, command), command)
            if limit is None:
                rows.append(Row(command, ms(result.seconds)))
            else:
                rows.append(
                    Row(command, ms(result.seconds), f"<= {limit * 1000:.0f} ms",
                        verdict(result.seconds, limit))
                )  # fmt: skip

        store = must(timed(client, "STORE 1:* +FLAGS (\\Seen)"), "STORE")
        rows.append(Row("STORE 1:* +FLAGS (\\Seen)", ms(store.seconds)))
        client.command("LOGOUT")
        client.close()

        setup = RawClient.connect(server.imap_port)
        setup.login(user, password)
        for name in ("Idle", "Small"):
            if not setup.command(f"CREATE {name}").ok:
                raise SystemExit(f"CREATE {name} failed")
        append_all(setup, "Small", corpus[:10])
        setup.close()

        samples = idle_latency(server, user, password, args.idle_rounds)
        p99 = percentile(samples, 0.99)
        rows.append(
            Row(
                f"IDLE latency ({len(samples)} APPENDs)",
                spread(samples),
                "p99 <= 20 ms",
                verdict(p99, 0.020),
            )
        )

        if args.mixed_clients > 0:
            rate, samples = mixed_load(
                server, user, password, len(corpus), args.mixed_clients, args.mixed_ops
            )
            p99 = percentile(samples, 0.99)
            rows.append(
                Row(f"{args.mixed_clients} mixed clients x {args.mixed_ops} commands",
                    f"{rate:.0f} ops/s, {spread(samples)}",
                    "p99 <= 30 ms", verdict(p99, 0.030))
            )  # fmt: skip

        if args.deliver_into:
            folder = data_dir / args.deliver_into.format(user=user)
            samples = delivery_latency(server, user, password, folder, args.idle_rounds)
            p99 = percentile(samples, 0.99)
            rows.append(
                Row(f"IDLE notice of external delivery ({len(samples)} files)",
                    f"p50 {ms(statistics.median(samples))}, p99 {ms(p99)}", "p99 <= 100 ms",
                    verdict(p99, 0.100))
            )  # fmt: skip

        if args.connections > 0:
            per, logins = memory_per_connection(server, user, password, args.connections)
            rows.append(Row("LOGIN + SELECT + IDLE (batches of 50)", f"{logins:.0f} sessions/s"))
            rows.append(
                Row(f"memory per idle connection (x{args.connections})", f"{per:.1f} KiB",
                    "<= 30 KiB", verdict(per, 30.0))
            )  # fmt: skip
    finally:
        server.stop()
        if args.keep:
            print(f"data dir kept: {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def print_table(rows: Sequence[Row]) -> None:
    headers = ("operation", "result", "target", "pass")
    cells = [
        (
            r.operation,
            r.figure,
            r.target,
            "" if r.passed is None else "PASS" if r.passed else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-" * len(line))
    for cell in cells:
        print("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--backend-option", action="append", default=[], metavar="K=V")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--idle-rounds", type=int, default=200)
    parser.add_argument("--mixed-clients", type=int, default=8, help="0: no mixed load")
    parser.add_argument("--mixed-ops", type=int, default=250, help="commands per mixed client")
    parser.add_argument("--restart", action="store_true", help="time a cold first SELECT")
    parser.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="GLOB",
        help="with --restart: files of the data dir to remove first",
    )
    parser.add_argument(
        "--deliver-into",
        metavar="DIR",
        help="maildir folder of mailbox Idle, e.g. mail/{user}/Maildir/.Idle",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.connections < 0 or args.idle_rounds < 1:
        parser.error("--messages and --idle-rounds must be positive, --connections >= 0")
    if args.mixed_clients < 0 or args.mixed_ops < 1:
        parser.error("--mixed-clients must be >= 0 and --mixed-ops positive")
    rows = run(args)
    print_table(rows)
    missed = [r for r in rows if r.passed is False]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
