"""Many users, big mailboxes: ``python -m bench.scale --backend maildir --messages 20000``.

What one user's heavy command costs everyone else, and what commands cost at 20k-100k
messages.  Fills INBOX with ``--messages`` realistic messages (``bench.messages.realistic``,
about 2.7 KB each, no large attachments) through pipelined LITERAL+ APPENDs, then:

* **single commands** -- a warm SELECT, a one-message ``UID STORE``, ``STORE 1:* +FLAGS
  (\\Seen)`` and back, SEARCH UNSEEN / FLAGGED / SINCE / TEXT / BODY, each timed alone while
  a *probe* client on the same server sends ``NOOP`` every 5 ms and times each answer: the
  probe's p99 during a command is what that command makes every other user wait;
* **mixed load** -- ``--clients`` clients (default 8, each a process of its own) loop for
  ``--seconds`` (default 10): SELECT INBOX, ``UID FETCH`` of 20 random messages (flags,
  size, envelope), a one-message ``UID STORE``, one SEARCH (FROM, SUBJECT, FLAGGED or
  SINCE); ops/s and p50 per command;
* with ``--restart`` (stores on disk), the first SELECT after a restart, with the probe.

Between the fill and the commands the bench waits for the server's own background work
to end (the maildir backend indexes the texts of new mail into its trigram and word
indexes a little after their APPEND): until its processes used under
``SETTLED_SHARE`` of a core over a second, at most ``--settle`` seconds; the row "settled
after the fill" says how long that took.  ``--settle 0`` measures right after the fill.

``--fill-upstream`` (proxy only) writes the messages as files into the upstream Dovecot's
INBOX Maildir instead of APPENDing them through mailserv (mail delivered upstream: none is
parsed by mailserv yet); at 100k an APPEND fill through the proxy takes most of an hour.

``--backend dovecot`` runs the same against a private Dovecot (tests/dovecot.py: Maildir,
one process per connection) as the reference.  Every client sets TCP_NODELAY and sends one
command at a time.  Prints one table; traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import messages
from bench.harness import RawClient
from bench.run import Row, append_all, must, percentile, print_table, timed
from bench.statecheck.run import backend_spec

SETTLED_SHARE = 0.05
"""Of one core: the server (its processes) counts as idle below this over a second."""
PROBE_EVERY = 0.005
MIXED_SEARCHES = (
    "UID SEARCH FROM user{n}",
    "UID SEARCH SUBJECT {word}",
    "UID SEARCH FLAGGED",
    "UID SEARCH SINCE 1-Jun-2021",
)
WORDS = ("budget", "meeting", "release", "server", "invoice", "zebra")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class Probe:
    """A second user's client: NOOP every ``PROBE_EVERY`` s in a thread, each answer timed.

    ``samples`` holds (sent, answered) times; ``during(a, b)`` the latencies of the NOOPs
    that were waiting at some moment between ``a`` and ``b``.
    """

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._going = threading.Event()
        self._going.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._going.wait()
            sent = time.perf_counter()
            must(timed(self.client, "NOOP"), "probe NOOP")
            self.samples.append((sent, time.perf_counter()))
            self._stop.wait(PROBE_EVERY)

    def during(self, start: float, end: float) -> list[float]:
        deadline = time.perf_counter() + 60  # the NOOP held up meanwhile is answered after it
        while time.perf_counter() < deadline and not any(a > end for a, _ in self.samples[-3:]):
            time.sleep(0.001)
        return [b - a for a, b in list(self.samples) if a <= end and b >= start]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No NOOP meanwhile (after the one under way): the server's own work alone."""
        self._going.clear()
        try:
            time.sleep(PROBE_EVERY * 4)
            yield
        finally:
            self._going.set()

    def close(self) -> None:
        self._stop.set()
        self._going.set()
        self._thread.join(600)
        self.client.close()


CHEAP_REPEAT = 7
"""Runs of the cheap single commands (warm SELECT, one-message STORE) per ``--repeat``:
a median of three samples of a 2 ms command moves by the probe's NOOP it met."""


def single_commands(
    connect: Callable[[], RawClient],
    count: int,
    repeat: int,
    server_pid: int | None = None,
    settle_limit: float = 0.0,
) -> list[Row]:
    """Each heavy command ``repeat`` times alone (the cheap ones ``CHEAP_REPEAT`` times as
    often): its median, and the probe's p99 meanwhile.  With ``server_pid``, the searches
    wait for the renames that ``STORE 1:*`` left to the background (:func:`settle`)."""
    rows: list[Row] = []
    actor = connect()
    probe = Probe(connect())
    rng = random.Random(7)
    must(timed(actor, "SELECT INBOX"), "SELECT")
    signs = itertools.cycle("+-")  # the fill leaves every message unseen: each run changes all
    cheap = repeat * CHEAP_REPEAT
    commands = [
        ("SELECT INBOX (warm)", lambda: "SELECT INBOX", 0.050, cheap),
        ("UID STORE n +FLAGS (\\Flagged), one message",
         lambda: f"UID STORE {rng.randint(1, count)} +FLAGS (\\Flagged)", 0.002, cheap),
        ("STORE 1:* +/-FLAGS.SILENT (\\Seen), every message changed",
         lambda: f"STORE 1:* {next(signs)}FLAGS.SILENT (\\Seen)", 0.5, repeat),
        ("SEARCH UNSEEN", lambda: "SEARCH UNSEEN", 0.020, repeat),
        ("SEARCH FLAGGED", lambda: "SEARCH FLAGGED", 0.020, repeat),
        ("SEARCH SINCE 1-Jun-2021", lambda: "SEARCH SINCE 1-Jun-2021", 0.020, repeat),
        ("SEARCH TEXT zebra", lambda: "SEARCH TEXT zebra", 0.050, repeat),
        ("SEARCH BODY migration", lambda: "SEARCH BODY migration", 0.050, repeat),
        ("SORT (DATE) UTF-8 ALL", lambda: "SORT (DATE) UTF-8 ALL", None, repeat),
        ("SORT (REVERSE SUBJECT) UTF-8 ALL",
         lambda: "SORT (REVERSE SUBJECT) UTF-8 ALL", None, repeat),
        ("THREAD REFERENCES UTF-8 ALL", lambda: "THREAD REFERENCES UTF-8 ALL", None, repeat),
        ("THREAD ORDEREDSUBJECT UTF-8 ALL",
         lambda: "THREAD ORDEREDSUBJECT UTF-8 ALL", None, repeat),
    ]  # fmt: skip
    try:
        for label, command, target, runs in commands:
            if label == "SEARCH UNSEEN" and server_pid is not None and settle_limit > 0:
                # The maildir backend renames the files of a STORE 1:* after its answer
                # (seconds at 100k): the searches are timed once that is done, the time
                # it took is a row of its own.
                with probe.paused():
                    rows.append(settle(server_pid, settle_limit, "settled after STORE 1:*"))
            took: list[float] = []
            waited: list[float] = []
            for _ in range(runs):
                time.sleep(PROBE_EVERY * 4)  # the probe's NOOPs before this one are answered
                start = time.perf_counter()
                took.append(must(timed(actor, command()), label).seconds)
                waited += probe.during(start, time.perf_counter())
            median = statistics.median(took)
            p99 = percentile(waited, 0.99) if waited else 0.0
            figure = f"p50 {ms(median)}; probe NOOP p99 {ms(p99)} (n={len(waited)})"
            if target is None:  # no target for the command itself, only for the others
                rows.append(Row(f"{label} (x{runs})", figure, "probe <= 20 ms", p99 <= 0.020))
                continue
            rows.append(
                Row(f"{label} (x{runs})", figure,
                    f"<= {ms(target)}, probe <= 20 ms", median <= target and p99 <= 0.020)
            )  # fmt: skip
    finally:
        actor.close()
        probe.close()
    return rows


@dataclass(frozen=True)
class Login:
    """How a client process signs in (picklable, unlike a closure)."""

    port: int
    user: str
    password: str

    def connect(self) -> RawClient:
        client = RawClient.connect(self.port, timeout=600)
        client.login(self.user, self.password)
        return client


def first_select(connect: Callable[[], RawClient]) -> Row:
    """The first SELECT after a restart (the mailbox read from disk), with the probe."""
    client = connect()
    probe = Probe(connect())
    try:
        time.sleep(PROBE_EVERY * 4)
        start = time.perf_counter()
        took = must(timed(client, "SELECT INBOX"), "SELECT").seconds
        waited = probe.during(start, time.perf_counter())
    finally:
        client.close()
        probe.close()
    p99 = percentile(waited, 0.99) if waited else 0.0
    return Row("first SELECT after a restart", f"{ms(took)}; probe NOOP p99 {ms(p99)}",
               "<= 1000 ms, probe <= 20 ms", took <= 1.0 and p99 <= 0.020)  # fmt: skip


LOGIN_GRACE = 3.0
"""Seconds the mixed load's clients have to log in before the measured loop starts: the
logins (a password hash each) are not the load, and the server's CPU time is read after
them."""


def mixed_client(
    login: Login, count: int, start: float, until: float, seed: int
) -> dict[str, list[float]]:
    """One client of the mixed load, in a process of its own, logged in before ``start``
    and looping from then until ``until`` (``time.time()`` values).  The CPU seconds the
    client itself spent in the loop are under ``"cpu"``."""
    rng = random.Random(seed)
    client = login.connect()
    out: dict[str, list[float]] = {"SELECT": [], "FETCH-20": [], "STORE-1": [], "SEARCH": []}
    time.sleep(max(0.0, start - time.time()))
    cpu = time.process_time()
    try:
        while time.time() < until:
            out["SELECT"].append(must(timed(client, "SELECT INBOX"), "SELECT").seconds)
            uids = ",".join(str(rng.randint(1, count)) for _ in range(20))
            command = f"UID FETCH {uids} (FLAGS RFC822.SIZE ENVELOPE)"
            out["FETCH-20"].append(must(timed(client, command), "FETCH").seconds)
            command = f"UID STORE {rng.randint(1, count)} {rng.choice('+-')}FLAGS (\\Flagged)"
            out["STORE-1"].append(must(timed(client, command), "STORE").seconds)
            search = rng.choice(MIXED_SEARCHES).format(n=rng.randint(0, 99), word=rng.choice(WORDS))
            out["SEARCH"].append(must(timed(client, search), "SEARCH").seconds)
    finally:
        client.close()
    out["cpu"] = [time.process_time() - cpu]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # gone meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks
        pending += [int(child) for child in children]
    return total


def mixed_load(
    login: Login,
    count: int,
    clients: int,
    seconds: float,
    server_pid: int | None = None,
    first_seed: int = 0,
) -> list[Row]:
    """Each client is a process of its own, as real clients are: the load this bench can
    offer is then not capped by one interpreter's lock (which would hide what more server
    processes give).  The CPU time per operation of the clients and of the server (its
    processes, when ``server_pid`` is known) shows what shares the cores.  The clients'
    random choices are seeded ``first_seed`` on: a store kept between runs needs other
    seeds each run, or the one-message STOREs repeat the last run's and change nothing."""
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        pool.map(time.sleep, [0.0] * clients, chunksize=1)  # every process has started
        start = time.time() + LOGIN_GRACE
        until = start + seconds
        work = partial(mixed_client, login, count, start, until)
        pending = pool.map_async(work, range(first_seed, first_seed + clients), 1)
        time.sleep(max(0.0, start - time.time()))  # the clients log in meanwhile
        started = time.perf_counter()
        server_before = cpu_seconds(server_pid) if server_pid else 0.0
        results = pending.get(seconds + 600)
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server_pid) - server_before if server_pid else None
    client_cpu = sum(r.pop("cpu")[0] for r in results)
    by_kind = {k: [s for r in results for s in r[k]] for k in results[0]}
    total = sum(len(v) for v in by_kind.values())
    rows = [Row(f"{clients} clients x {seconds:.0f} s mixed loop", f"{total / elapsed:.0f} ops/s")]
    shares = f"clients {client_cpu / total * 1000:.2f}"
    if server_cpu is not None:
        shares += f", server {server_cpu / total * 1000:.2f}"
    rows.append(Row("  CPU ms per operation", shares))
    for kind, samples in by_kind.items():
        p50 = statistics.median(samples)
        target = 0.005 if kind in ("FETCH-20", "STORE-1") else None
        figure = f"p50 {ms(p50)}, p99 {ms(percentile(samples, 0.99))}, n={len(samples)}"
        if target is None:
            rows.append(Row(f"  {kind}", figure))
        else:
            rows.append(Row(f"  {kind}", figure, f"p50 <= {ms(target)}", p50 <= target))
    return rows


def settle(pid: int, limit: float, label: str = "settled after the fill") -> Row:
    """Wait until the server at ``pid`` (and its children) used less than
    :data:`SETTLED_SHARE` of a core over one second, at most ``limit`` seconds; the row
    says how long it took (its background work, e.g. after the fill)."""
    started = time.perf_counter()
    while True:
        before, since = cpu_seconds(pid), time.perf_counter()
        time.sleep(1.0)
        share = (cpu_seconds(pid) - before) / (time.perf_counter() - since)
        waited = time.perf_counter() - started
        if share < SETTLED_SHARE:
            return Row(label, f"{waited:.0f} s")
        if waited >= limit:
            return Row(label, f"not within {limit:.0f} s ({share:.0%} busy)")


def fill(connect: Callable[[], RawClient], count: int) -> Row:
    rng = random.Random(1)
    client = connect()
    done = 0
    seconds = 0.0
    try:
        while done < count:  # in batches: the corpus of 100k is not held at once
            batch = [messages.realistic(i, rng) for i in range(done, min(count, done + 5000))]
            seconds += append_all(client, "INBOX", batch)
            done += len(batch)
    finally:
        client.close()
    return Row(f"APPEND x{count} (LITERAL+, pipelined)", f"{count / seconds:.0f} msg/s")


class UpstreamFill:
    """``--fill-upstream``: the proxy's server setup over a Dovecot of its own, and the fill
    that writes INBOX's messages (unseen) as files into that Dovecot's Maildir."""

    def __init__(self, backend: str) -> None:
        if backend != "proxy":
            raise SystemExit("--fill-upstream is for --backend proxy or dovecot")
        tests = str(Path(__file__).resolve().parents[1] / "tests")
        if tests not in sys.path:
            sys.path.insert(0, tests)
        import dovecot  # type: ignore[import-not-found]  # tests/, on sys.path

        self.upstreams = dovecot.ProxyUpstreams({"linger": "2"})
        self.spec = dataclasses.replace(
            backend_spec(backend), prepare=self.upstreams.prepare, cleanup=self.upstreams.cleanup
        )

    def fill(
        self,
        connect: Callable[[], RawClient],
        data_dir: Path,
        login: tuple[str, str],
        count: int,
    ) -> Row:
        return fill_maildir_of(self.upstreams.servers[data_dir], connect, login, count)


def fill_maildir_of(
    server: Any, connect: Callable[[], RawClient], login: tuple[str, str], count: int
) -> Row:
    """Fill the INBOX of ``server`` (a tests/dovecot.py Dovecot) with ``count`` messages.
    The first message APPENDed through ``connect`` shows where the Dovecot keeps INBOX's
    files; the others are written next to it, owned alike.  Then a SELECT straight on the
    Dovecot makes it index them, as its delivery would have: the commands timed after
    measure the server, not the Dovecot's first look at files it never saw arrive.
    (APPENDing 100k messages to a Dovecot's Maildir took over 20 minutes here.)"""
    user = login[0]
    rng = random.Random(1)
    started = time.perf_counter()
    client = connect()
    try:
        append_all(client, "INBOX", [messages.realistic(0, rng)])
    finally:
        client.close()
    home = server.home(user)
    (first,) = (path for path in home.rglob("*") if path.parent.name in ("new", "cur"))
    owner = first.stat()
    stamp = int(time.time())
    for i in range(1, count):
        message = messages.realistic(i, rng)
        stored = message.replace(b"\r\n", b"\n")
        # S= and W= (the sizes on disk and with CRLF), as Dovecot's delivery names a file:
        # else its first FETCH RFC822.SIZE reads all of them to count their lines.
        name = f"{stamp}.M{i}P{os.getpid()}.bench,S={len(stored)},W={len(message)}:2,"
        path = first.parent.parent / "cur" / name
        path.write_bytes(stored)
        os.chown(path, owner.st_uid, owner.st_gid)
    direct = RawClient.connect(server.imap_port, timeout=1800)
    try:
        direct.login(*login)
        selected = direct.command("SELECT INBOX")
        if not selected.ok:
            raise SystemExit(f"SELECT upstream failed: {selected.line!r}")
    finally:
        direct.close()
    seconds = time.perf_counter() - started
    return Row(f"fill x{count} (files in the Dovecot's Maildir)", f"{count / seconds:.0f} msg/s")


def run(args: argparse.Namespace) -> list[Row]:
    user, password = "scale", "pw-" + secrets.token_hex(8)
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    if args.backend == "dovecot":
        from dovecot import Dovecot  # type: ignore[import-not-found]  # tests/, on sys.path

        server = Dovecot()
        server.add_user(user, password)
        start, stop, restart = server.start, server.stop, None
        port = lambda: server.imap_port  # noqa: E731
        data_dir, upstream = None, None
    else:
        from bench.harness import ServerProcess

        data_dir = Path(tempfile.mkdtemp(prefix="mailserv-scale-"))
        extra = ["--workers", str(args.workers)]
        upstream = UpstreamFill(args.backend) if args.fill_upstream else None
        spec = backend_spec(args.backend) if upstream is None else upstream.spec
        process = ServerProcess(data_dir, spec, extra_args=extra)
        start, stop = process.start, process.stop

        def restart_keeping_store() -> None:  # no cleanup/prepare: PostgreSQL keeps the database
            spec = process.backend
            process.backend = dataclasses.replace(spec, prepare=None, cleanup=None)
            process.stop()
            process.start()
            process.backend = spec

        restart = restart_keeping_store if args.restart else None
        port = lambda: process.imap_port  # noqa: E731
    start()

    def connect() -> RawClient:
        client = RawClient.connect(port(), timeout=600)
        client.login(user, password)
        return client

    try:
        if data_dir is not None:
            process.add_user(user, password)
        if upstream is not None:
            assert data_dir is not None
            rows = [upstream.fill(connect, data_dir, (user, password), args.messages)]
        elif args.backend == "dovecot" and args.fill_upstream:
            rows = [fill_maildir_of(server, connect, (user, password), args.messages)]
        else:
            rows = [fill(connect, args.messages)]
        if restart is not None:
            restart()
            rows.append(first_select(connect))
        if data_dir is not None and args.settle > 0:
            rows.append(settle(process.pid, args.settle))
        server_pid = None if data_dir is None else process.pid
        if not args.mixed_only:
            rows += single_commands(connect, args.messages, args.repeat, server_pid, args.settle)
        login = Login(port(), user, password)
        rows += mixed_load(login, args.messages, args.clients, args.seconds, server_pid)
    finally:
        stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backend",
        default="maildir",
        help="memory, maildir, sql-sqlite, sql-postgresql, proxy, or dovecot",
    )
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each single command")
    parser.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    parser.add_argument("--restart", action="store_true", help="time the first SELECT after one")
    parser.add_argument(
        "--settle",
        type=float,
        default=1800.0,
        help="seconds at most to wait for the server's background work after the fill (0: none)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--mixed-only", action="store_true", help="skip the single commands (fill, then mixed)"
    )
    parser.add_argument(
        "--fill-upstream",
        action="store_true",
        help="proxy, dovecot: write the messages into the (upstream) Dovecot's Maildir, not"
        " through APPEND",
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.clients < 1 or args.seconds <= 0 or args.repeat < 1:
        parser.error("--messages, --clients, --seconds and --repeat must be positive")
    rows = run(args)
    print(f"{args.backend}, {args.messages} messages, {args.workers} worker(s)")
    print_table(rows)
    return 1 if args.check and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
