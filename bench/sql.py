"""Benchmarks of the SQL backend on PostgreSQL, beside ``python -m bench.run``.

``python -m bench.sql bench [bench.run options]`` starts a PostgreSQL cluster (fsync on,
as in production) in a temporary directory, creates a database and runs ``bench.run`` with
``--backend sql --backend-option url=<it>``.

``python -m bench.sql frontends [--rounds N] [--appends N]`` starts two
``twistd imapserv`` frontends on one database and measures the time from an APPEND sent
through one to the ``* n EXISTS`` a client IDLE on the other receives (p50/p99), then the
rate of APPENDs made through both frontends at once (UIDs checked unique).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pgcluster

from bench import messages
from bench import run as bench_run
from bench.harness import REPO, BackendSpec, RawClient, ServerProcess


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench(argv: list[str]) -> int:
    cluster = pgcluster.start_cluster(durable=True)
    try:
        url = cluster.database()
        print(f"PostgreSQL {cluster.bindir}, database {url}", flush=True)
        args = ["--backend", "sql", "--backend-option", f"url={url}", *argv]
        return bench_run.main(args)
    finally:
        cluster.stop()


def _add_user(url: str, name: str, password: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "mailserv", "user", "add", name, "--db", url, "--password-stdin"],
        input=(password + "\n").encode(),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
        timeout=60,
    )


def frontends(rounds: int, appends: int) -> int:
    cluster = pgcluster.start_cluster(durable=True)
    servers: list[ServerProcess] = []
    try:
        url = cluster.database()
        spec = BackendSpec("sql", {"url": url, "auth": "sql"})
        root = Path(tempfile.mkdtemp(prefix="mailserv-frontends-"))
        servers = [
            ServerProcess(root / f"f{i}", spec, extra_args=["--workers", "1"]) for i in range(2)
        ]
        for server in servers:
            server.start()
        user, password = "bench", "pw-" + secrets.token_hex(6)
        _add_user(url, user, password)

        idler = RawClient.connect(servers[0].imap_port)
        actor = RawClient.connect(servers[1].imap_port)
        idler.login(user, password)
        actor.login(user, password)
        assert idler.command("SELECT INBOX").ok
        idler.send(b"i IDLE\r\n")
        while not idler.read_line().startswith(b"+"):
            pass
        probe = messages.plain(subject="probe")
        samples = []
        for count in range(1, rounds + 1):
            tag = actor.next_tag()
            started = time.perf_counter()
            actor.send(b"%s APPEND INBOX {%d+}\r\n%s\r\n" % (tag.encode(), len(probe), probe))
            want = b"* %d EXISTS" % count
            while not idler.read_line().startswith(want):
                pass
            samples.append(time.perf_counter() - started)
            assert actor.read_until_tagged(tag).ok
        idler.send(b"DONE\r\n")
        idler.read_until_tagged("i")
        print(
            f"cross-frontend IDLE notice ({rounds} APPENDs): "
            f"p50 {statistics.median(samples) * 1000:.1f} ms, "
            f"p99 {_percentile(samples, 0.99) * 1000:.1f} ms, "
            f"max {max(samples) * 1000:.1f} ms"
        )

        uids: list[int] = []
        lock = threading.Lock()

        def work(which: int) -> None:
            client = RawClient.connect(servers[which % 2].imap_port, timeout=120)
            client.login(user, password)
            batch = [messages.plain(subject=f"{which}-{n}") for n in range(appends)]
            for start in range(0, len(batch), bench_run.WINDOW):  # under max_pipelined
                chunk = batch[start : start + bench_run.WINDOW]
                for response in client.append_many("Concurrent", chunk):
                    match = re.search(r"APPENDUID \d+ (\d+)", response.code or "")
                    assert response.ok and match, response.line
                    with lock:
                        uids.append(int(match.group(1)))
            client.close()

        assert actor.command("CREATE Concurrent").ok
        workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        assert len(uids) == len(set(uids)) == 4 * appends, "UIDs lost or shared"
        print(
            f"concurrent APPEND, 4 clients over 2 frontends: {len(uids)} messages, "
            f"{len(uids) / elapsed:.0f} msg/s, UIDs unique"
        )
        return 0
    finally:
        for server in servers:
            server.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="bench.run against a fresh PostgreSQL database")
    fronts = sub.add_parser("frontends", help="two frontends: IDLE latency, concurrent APPEND")
    fronts.add_argument("--rounds", type=int, default=200)
    fronts.add_argument("--appends", type=int, default=250)
    args, rest = parser.parse_known_args()
    if args.command == "bench":
        return bench(rest)
    if rest:
        parser.error(f"unknown arguments {rest}")
    return frontends(args.rounds, args.appends)


if __name__ == "__main__":
    sys.exit(main())
