"""Where a big SEARCH's time goes: ``python -m bench.searchprof --backend maildir``.

Fills INBOX as ``bench.scale`` does (or reuses a store kept by ``--keep DIR``), then times
each of bench.scale's single SEARCH commands and profiles the server's reactor thread
(cProfile, switched on and off by signals around each command) while it runs them.  The
profile shows the engine's share (``mailserv.imap``, ``mailserv.search``) beside the
backend's; the work a backend does in threads shows only as the wall time left over.
Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import ServerProcess
from bench.run import must, timed
from bench.scale import Login, cpu_seconds, fill
from bench.statecheck.run import backend_spec

COMMANDS = (
    "SEARCH UNSEEN",
    "SEARCH FLAGGED",
    "SEARCH SINCE 1-Jun-2021",
    "SEARCH TEXT zebra",
    "SEARCH BODY migration",
)

_PROFILED = """
import cProfile, os, signal, sys, time
profile = [None]
def start(*_):
    profile[0] = cProfile.Profile(time.thread_time)  # CPU time: a loaded machine's waits left out
    profile[0].enable()
def stop(*_):
    if profile[0] is not None:
        profile[0].disable()
        profile[0].dump_stats(os.environ["SEARCHPROF_OUT"])
        profile[0] = None
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
sys.exit(run())
"""


class ProfiledServer(ServerProcess):
    """The server with a profiler that SIGUSR1 starts and SIGUSR2 stops and saves."""

    def command_line(self) -> list[str]:
        args = super().command_line()
        return [args[0], "-c", _PROFILED, *args[3:]]


def kept_server(
    kind: type[ServerProcess], backend: str, keep: str | None, prefix: str
) -> tuple[ServerProcess, Path, bool]:
    """A started one-worker server over ``keep`` (a store directory kept between runs) or a
    fresh directory; whether that store was filled by an earlier run (``filled`` in it).
    The profile goes to ``profile.out`` there.  A memory store is never kept; a PostgreSQL
    one cannot be (its cluster lives as long as this process)."""
    if keep and backend == "sql-postgresql":
        raise SystemExit("--keep cannot keep a PostgreSQL store: its cluster ends with the run")
    data_dir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    filled = (data_dir / "filled").exists() and backend != "memory"
    os.environ["SEARCHPROF_OUT"] = str(data_dir / "profile.out")
    server = kind(data_dir, backend_spec(backend), extra_args=["--workers", "1"])
    server.start()
    return server, data_dir, filled


def filled_once(server: ServerProcess, data_dir: Path, filled: bool, messages: int) -> Login:
    """How to sign in as the bench's user; on a store not ``filled`` before, the user is
    added and INBOX filled with ``messages`` first (and the store marked filled)."""
    login = Login(server.imap_port, "prof", "pw-prof")
    if not filled:
        server.add_user(login.user, login.password)
        print(fill(login.connect, messages).figure, flush=True)
        (data_dir / "filled").touch()
    return login


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.searchprof")
    parser.add_argument("--backend", default="maildir")
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="store directory kept between runs (filled once)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds after the fill")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--command", action="append", help="instead of bench.scale's")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    server, data_dir, filled = kept_server(ProfiledServer, args.backend, args.keep, "searchprof-")
    try:
        login = filled_once(server, data_dir, filled, args.messages)
        if not filled:
            time.sleep(args.wait)
        client = login.connect()
        must(timed(client, "SELECT INBOX"), "SELECT")
        for command in args.command or COMMANDS:
            took = []
            cpu = cpu_seconds(server.pid)
            for _ in range(args.repeat):
                if not args.no_profile:
                    os.kill(server.pid, signal.SIGUSR1)
                    time.sleep(0.05)
                timing = must(timed(client, command), command)
                took.append(timing.seconds)
                if not args.no_profile:
                    os.kill(server.pid, signal.SIGUSR2)
                    time.sleep(0.2)
            cpu = (cpu_seconds(server.pid) - cpu) / args.repeat
            size = len(timing.data)
            print(f"{command}: p50 {statistics.median(took) * 1000:.1f} ms "
                  f"(min {min(took) * 1000:.1f}, first {took[0] * 1000:.1f}), "
                  f"server CPU {cpu * 1000:.0f} ms, {size} bytes", flush=True)  # fmt: skip
            if not args.no_profile:
                out = io.StringIO()
                stats = pstats.Stats(os.environ["SEARCHPROF_OUT"], stream=out)
                stats.sort_stats("tottime").print_stats(args.top)
                print(out.getvalue().split("\n", 6)[-1], flush=True)
        client.close()
    finally:
        server.stop()
        if not args.keep:
            if server.backend.cleanup is not None:
                server.backend.cleanup(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
