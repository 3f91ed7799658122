"""Where the mixed load's server time goes: ``python -m bench.mixedprof --backend maildir``.

Fills INBOX as ``bench.scale`` does (or reuses a store kept by ``--keep DIR``), then runs
``bench.scale``'s mixed step (``--clients`` processes looping SELECT / UID FETCH of 20 /
one-message UID STORE / SEARCH) while cProfile runs on the server's reactor thread (on its
CPU time, as ``bench.searchprof`` does).  Prints bench.scale's rows, then the profile.  Work
a backend does in threads shows only in the server's CPU ms per operation.  Traffic goes
only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import random
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from bench.harness import ServerProcess
from bench.run import Row, must, print_table, timed
from bench.scale import MIXED_SEARCHES, WORDS, Login, cpu_seconds, mixed_load, ms
from bench.searchprof import filled_once, kept_server

_PROFILED = """
import cProfile, collections, os, signal, sys, threading, time, traceback
box = {"prof": None, "on": False, "samples": collections.Counter()}
_main = threading.main_thread().ident
def _sample():  # what the other threads (the database's, file IO) run, every ms
    while True:
        time.sleep(0.001)
        if not box["on"]:
            continue
        for ident, frame in sys._current_frames().items():
            if ident in (_main, threading.get_ident()) or frame.f_code.co_name == "wait":
                continue
            stack = traceback.extract_stack(frame)[-%(depth)d:]
            box["samples"]["; ".join(
                f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in stack)] += 1
threading.Thread(target=_sample, daemon=True).start()
def start(*_):
    box["samples"].clear()
    box["prof"] = cProfile.Profile(time.thread_time)  # CPU time: a loaded machine's waits left out
    box["prof"].enable()
    box["on"] = True
def stop(*_):
    box["on"] = False
    if box["prof"] is not None:
        box["prof"].disable()
        box["prof"].dump_stats(os.environ["SEARCHPROF_OUT"])
        box["prof"] = None
    with open(os.environ["SEARCHPROF_OUT"] + ".threads", "w") as out:
        for stack, count in box["samples"].most_common(%(top)d):
            out.write(f"{count:6d} {stack}\\n")
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
sys.exit(run())
"""


class ProfiledServer(ServerProcess):
    """The server with cProfile on its reactor thread and a sampler of its other threads'
    stacks, which SIGUSR1 starts and SIGUSR2 stops and saves."""

    depth = 8
    top = 15

    def command_line(self) -> list[str]:
        args = super().command_line()
        code = _PROFILED % {"depth": self.depth, "top": self.top}
        return [args[0], "-c", code, *args[3:]]


KINDS = {
    "SELECT": lambda rng, count: "SELECT INBOX",
    "FETCH-20": lambda rng, count: (
        "UID FETCH "
        + ",".join(str(rng.randint(1, count)) for _ in range(20))
        + " (FLAGS RFC822.SIZE ENVELOPE)"
    ),
    "STORE-1": lambda rng, count: (
        f"UID STORE {rng.randint(1, count)} {rng.choice('+-')}FLAGS (\\Flagged)"
    ),
    "SEARCH": lambda rng, count: rng.choice(MIXED_SEARCHES).format(
        n=rng.randint(0, 99), word=rng.choice(WORDS)
    ),
}
# One kind of the mixed SEARCH at a time (SEARCH-FROM, SEARCH-SUBJECT, ...), same keys.
for _search in MIXED_SEARCHES:
    KINDS["SEARCH-" + _search.split()[2]] = partial(
        lambda text, rng, count: text.format(n=rng.randint(0, 99), word=rng.choice(WORDS)),
        _search,
    )


def alone(login: Login, count: int, kind: str, seconds: float, server_pid: int) -> Row:
    """One client sends ``kind`` commands one at a time (after one SELECT) for ``seconds``:
    the server's CPU ms per command, and the p50."""
    rng = random.Random(time.time_ns())  # a kept store: not the last run's STOREs again
    client = login.connect()
    try:
        must(timed(client, "SELECT INBOX"), "SELECT")
        took: list[float] = []
        before = cpu_seconds(server_pid)
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            took.append(must(timed(client, KINDS[kind](rng, count)), kind).seconds)
        cpu = cpu_seconds(server_pid) - before
    finally:
        client.close()
    figure = f"server CPU {cpu / len(took) * 1000:.2f} ms, p50 {ms(statistics.median(took))}"
    return Row(f"{kind} alone x{len(took)}", figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mixedprof")
    parser.add_argument("--backend", default="maildir")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", help="store directory kept between runs (filled once)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--alone",
        action="append",
        choices=sorted(KINDS),
        help="instead of the mixed step: one client repeats this kind for --seconds (repeatable)",
    )
    args = parser.parse_args(argv)
    server, data_dir, filled = kept_server(ProfiledServer, args.backend, args.keep, "mixedprof-")
    try:
        login = filled_once(server, data_dir, filled, args.messages)
        phases: list[tuple[str, Callable[[], list[Row]]]] = [
            (
                kind,
                partial(lambda k: [alone(login, args.messages, k, args.seconds, server.pid)], kind),
            )
            for kind in args.alone or ()
        ] or [
            (
                "mixed",
                lambda: mixed_load(
                    login, args.messages, args.clients, args.seconds, server.pid, time.time_ns()
                ),
            )
        ]
        for name, phase in phases:
            if not args.no_profile:
                os.kill(server.pid, signal.SIGUSR1)
                time.sleep(0.05)
            rows = phase()
            if not args.no_profile:
                os.kill(server.pid, signal.SIGUSR2)
                time.sleep(0.5)
            print_table(rows)
            if not args.no_profile:
                saved = data_dir / f"profile-{name}.out"
                os.replace(os.environ["SEARCHPROF_OUT"], saved)
                out = io.StringIO()
                stats = pstats.Stats(str(saved), stream=out)
                stats.sort_stats(args.sort).print_stats(args.top)
                print(out.getvalue().split("\n", 6)[-1], flush=True)
                threads = Path(os.environ["SEARCHPROF_OUT"] + ".threads").read_text()
                print("other threads, samples every ms (innermost frames last):")
                print(threads or "(none busy)", flush=True)
    finally:
        server.stop()
        if not args.keep:
            if server.backend.cleanup is not None:
                server.backend.cleanup(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
