"""Where ``STORE 1:* +FLAGS (\\Seen)`` spends its time: ``python -m bench.storeprof``.

Starts the server (one process, ``--backend``, default memory) with a small wrapper that
profiles it between SIGUSR1 and SIGUSR2 (cProfile, sorted by tottime) and counts the
garbage collections of generation 2 and their pauses meanwhile; fills INBOX with
``--messages`` realistic messages, then times ``STORE 1:* +FLAGS (\\Seen)`` and ``-FLAGS``
(non-silent: one untagged FETCH per message) while a probe client sends NOOP every 5 ms.
Prints, per command: its time, the probe's p50/p99, the gen-2 collections and their longest
pause; with ``--profile``, the top of the server's profile; with ``--watch``, the NOOP of
another session that has INBOX selected and is told of every change then; with
``--sessions K``, K sessions' commands sent at once (the probe's NOOP and the longest
reactor turns while several long commands share the reactor).  ``--command``
times the commands given instead (``FETCH 1:* FLAGS``, ``EXPUNGE``...), ``--restart`` the
first SELECT after a restart first; ``--keep DIR`` fills a store in DIR once and reuses it
(a maildir of 100k takes many minutes to fill).  Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.harness import RawClient, ServerProcess
from bench.run import Timing, must, percentile, timed
from bench.scale import PROBE_EVERY, Probe, UpstreamFill, fill
from bench.statecheck.run import backend_spec

Connect = Callable[[], RawClient]
DEPTH = 6
"""Innermost frames of a stack sampled in a long reactor turn (``--long-turns``)."""

_WRAPPER = """
import cProfile, gc, json, pstats, signal, sys, time
from twisted.scripts.twistd import run
box = {"prof": None, "gc": [], "t0": 0.0}
def _gc(phase, info):
    if info["generation"] != 2 or box["prof"] is None and not box["gc_on"]:
        return
    if phase == "start":
        box["t0"] = time.perf_counter()
    else:
        box["gc"].append(time.perf_counter() - box["t0"])
box["gc_on"] = False
gc.callbacks.append(_gc)
from twisted.internet import epollreactor
_poll = epollreactor.EPollReactor.doPoll
box["held"] = []
box["back"] = None
def _timed_poll(self, timeout):
    if box["gc_on"] and box["back"] is not None:
        box["held"].append(time.thread_time() - box["back"])
    _poll(self, timeout)
    box["back"] = time.thread_time()
epollreactor.EPollReactor.doPoll = epollreactor.EPollReactor.doIteration = _timed_poll
import collections, threading, traceback
box["samples"] = collections.Counter()
box["polling"] = True
box["wall"] = time.perf_counter()
_main = threading.main_thread().ident
def _frames(frame):
    return "; ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"
                     for f in traceback.extract_stack(frame)[-DEPTH:])
def _sample():  # what the reactor thread runs in turns longer than LONG_TURN
    while True:
        time.sleep(0.001)
        if not box["gc_on"] or box["polling"] or time.perf_counter() - box["wall"] < LONG_TURN:
            continue
        for ident, frame in sys._current_frames().items():  # and what threads run meanwhile
            if ident == _main:
                box["samples"][_frames(frame)] += 1
            elif ident != threading.get_ident() and frame.f_code.co_name != "wait":  # idle
                box["samples"]["(thread) " + _frames(frame)] += 1
_poll2 = epollreactor.EPollReactor.doPoll
def _walled_poll(self, timeout):
    box["polling"] = True
    _poll2(self, timeout)
    box["wall"] = time.perf_counter()
    box["polling"] = False
epollreactor.EPollReactor.doPoll = epollreactor.EPollReactor.doIteration = _walled_poll
if LONG_TURN:
    threading.Thread(target=_sample, daemon=True).start()
def _start(*_):
    box["gc"] = []
    box["held"] = []
    box["samples"].clear()
    box["gc_on"] = True
    if PROFILE:
        box["prof"] = cProfile.Profile()
        box["prof"].enable()
def _stop(*_):
    box["gc_on"] = False
    prof, box["prof"] = box["prof"], None
    with open(OUT + ".gc", "w") as f:
        held = sorted(box["held"])
        json.dump({"gc": box["gc"], "held": held[-3:], "turns": len(held),
                   "p99": held[min(len(held) - 1, round(0.99 * len(held)))] if held else 0,
                   "samples": box["samples"].most_common(TOP)}, f)
    if prof is not None:
        prof.disable()
        with open(OUT + ".txt", "w") as f:
            pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(TOP)
signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)
sys.argv[0] = "twistd"
sys.exit(run())
"""


class ProfiledServer(ServerProcess):
    """The server under the wrapper above; ``out`` is the prefix of its result files."""

    def __init__(
        self,
        data_dir: Path,
        backend: str,
        profile: bool,
        top: int,
        long_turn: float = 0.0,
        upstream: UpstreamFill | None = None,
    ) -> None:
        spec = backend_spec(backend) if upstream is None else upstream.spec
        super().__init__(data_dir, spec, extra_args=["--workers", "1"])
        self.out = str(data_dir / "prof")
        self.code = (
            f"PROFILE = {profile!r}\nOUT = {self.out!r}\nTOP = {top}\n"
            f"LONG_TURN = {long_turn!r}\nDEPTH = {DEPTH}\n" + _WRAPPER
        )

    def command_line(self) -> list[str]:
        args = super().command_line()
        args[2] = self.code
        return args


def timed_window(
    server: ProfiledServer, probe: Probe, client: RawClient, command: str, check: bool = True
) -> tuple[float, list[float], str]:
    """Send ``command`` with the server's counters on: its seconds, the probe's latencies
    meanwhile, and the gen-2 collections and longest reactor turns as text.  ``check``:
    stop unless the answer is OK (else a NO or BAD is printed and the run goes on)."""
    took, waited, server_side = timed_together(server, probe, [(client, command)], check)
    return took[0], waited, server_side


def timed_together(
    server: ProfiledServer,
    probe: Probe,
    work: Sequence[tuple[RawClient, str]],
    check: bool = True,
) -> tuple[list[float], list[float], str]:
    """:func:`timed_window` of several sessions' commands sent at once (a thread each):
    the seconds of each, the probe's latencies while any ran, the server's figures."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.05)
    answers: list[Timing | None] = [None] * len(work)

    def send(n: int) -> None:
        answers[n] = timed(*work[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(work))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = time.perf_counter()
    took = []
    for (_client, command), answer in zip(work, answers, strict=True):
        assert answer is not None, command
        if check:
            must(answer, command)
        elif answer.status != "OK":
            print(f"{command}: {answer.status} {answer.data[-200:]!r}", flush=True)
        took.append(answer.seconds)
    waited = probe.during(start, end)
    server.proc.send_signal(signal.SIGUSR2)
    time.sleep(0.3)
    found = json.loads(Path(server.out + ".gc").read_text())
    pauses = found["gc"]
    held = "/".join(f"{held * 1000:.0f}" for held in found["held"])
    server_side = (
        f"gen2 collections {len(pauses)}, longest {max(pauses, default=0) * 1000:.0f} ms; "
        f"longest reactor turns {held} ms CPU, p99 {found['p99'] * 1000:.1f} ms "
        f"of {found['turns']} turns"
    )
    for stack, count in found["samples"]:  # --long-turns: where the long turns were
        server_side += f"\n    {count:4d} samples in long turns at {stack}"
    return took, waited, server_side


def together(args: argparse.Namespace, server: ProfiledServer, connect: Connect) -> None:
    """``--sessions K``: K sessions with INBOX selected send their commands at once (the
    i-th the i-th of ``--command``, round robin), ``--repeat`` times; ``+FLAGS`` is sent
    as ``-FLAGS`` every other round.  The first round's SEARCH TEXT indexes the texts."""
    commands = args.command or [
        "SEARCH TEXT zebra-not-there",
        "FETCH 1:* FLAGS",
        "STORE 1:* +FLAGS.SILENT (\\Flagged)",
        "UID SEARCH SINCE 1-Jan-2000",
    ]
    actors = [connect() for _ in range(args.sessions)]
    for actor in actors:
        must(timed(actor, "SELECT INBOX"), "SELECT")
    probe = Probe(connect())
    time.sleep(PROBE_EVERY * 4)
    start = time.perf_counter()
    time.sleep(1.0)
    print(f"probe alone for 1 s: {spread(probe.during(start, time.perf_counter()))}", flush=True)
    for round_ in range(args.repeat):
        work = [(actor, commands[n % len(commands)]) for n, actor in enumerate(actors)]
        if round_ % 2:  # a STORE undoes the last round's: it changes every message again
            work = [(actor, command.replace("+FLAGS", "-FLAGS")) for actor, command in work]
        time.sleep(PROBE_EVERY * 4)
        took, waited, server_side = timed_together(server, probe, work, check=False)
        names = [command.split(" (")[0] for _, command in work]
        each = ", ".join(f"{name} {t * 1000:.0f}" for name, t in zip(names, took, strict=True))
        print(f"{len(work)} sessions at once: {max(took) * 1000:.0f} ms ({each} ms); "
              f"{spread(waited)}; {server_side}", flush=True)  # fmt: skip
        if args.profile:
            print(Path(server.out + ".txt").read_text()[: args.chars], flush=True)
    for actor in actors:
        actor.close()
    probe.close()


def rounds(args: argparse.Namespace, server: ProfiledServer, connect: Connect) -> None:
    if args.restart:  # the first SELECT after a restart reads the mailbox from disk
        server.stop()
        server.start()
        time.sleep(1.0)  # what a start does in the background is done
        actor, probe = connect(), Probe(connect())
        time.sleep(PROBE_EVERY * 4)
        took, waited, server_side = timed_window(server, probe, actor, "SELECT INBOX")
        print(f"first SELECT INBOX: {took * 1000:.0f} ms; {spread(waited)}; {server_side}")
        actor.close()
        probe.close()
    actor, probe = connect(), Probe(connect())
    must(timed(actor, "SELECT INBOX"), "SELECT")
    watcher = connect() if args.watch else None
    if watcher is not None:
        must(timed(watcher, "SELECT INBOX"), "SELECT")
    time.sleep(PROBE_EVERY * 4)
    start = time.perf_counter()
    time.sleep(1.0)
    idle = probe.during(start, time.perf_counter())
    print(f"probe alone for 1 s: {spread(idle)}", flush=True)
    if args.condstore:
        must(timed(actor, "ENABLE CONDSTORE"), "ENABLE")
    for command in args.command:  # instead of the STORE rounds
        time.sleep(PROBE_EVERY * 4)
        took, waited, server_side = timed_window(server, probe, actor, command, check=False)
        print(f"{command}: {took * 1000:.0f} ms; {spread(waited)}; {server_side}", flush=True)
        if args.profile:
            print(Path(server.out + ".txt").read_text()[: args.chars], flush=True)
        if watcher is not None:
            took, waited, server_side = timed_window(server, probe, watcher, "NOOP")
            print(f"  other session's NOOP: {took * 1000:.0f} ms; {spread(waited)}; "
                  f"{server_side}", flush=True)  # fmt: skip
    for round_ in range(args.repeat if not args.command else 0):
        for sign in "+-":
            command = f"STORE 1:* {sign}FLAGS{args.suffix} (\\Seen)"
            time.sleep(PROBE_EVERY * 4)
            took, waited, server_side = timed_window(server, probe, actor, command)
            print(f"{command}: {took * 1000:.0f} ms; {spread(waited)}; {server_side}", flush=True)
            if args.profile and round_ == 0:
                print(Path(server.out + ".txt").read_text()[: args.chars], flush=True)
            if watcher is not None:  # another session told of every change at its NOOP
                took, waited, server_side = timed_window(server, probe, watcher, "NOOP")
                print(f"  other session's NOOP: {took * 1000:.0f} ms; {spread(waited)}; "
                      f"{server_side}", flush=True)  # fmt: skip
    for client in (actor, watcher):
        if client is not None:
            client.close()
    probe.close()


def spread(waited: list[float]) -> str:
    if not waited:  # a command shorter than the probe's pause
        return "probe n=0"
    return (
        f"probe p50 {statistics.median(waited) * 1000:.1f} ms "
        f"p99 {percentile(waited, 0.99) * 1000:.1f} ms (n={len(waited)})"
    )


def measure(args: argparse.Namespace) -> None:
    kept = Path(args.keep) if args.keep else None
    data_dir = kept or Path(tempfile.mkdtemp(prefix="mailserv-storeprof-"))
    upstream = UpstreamFill(args.backend) if args.fill_upstream else None
    server = ProfiledServer(
        data_dir, args.backend, args.profile, args.top, args.long_turns / 1000, upstream
    )
    user, password = "prof", "pw-prof"
    filled = data_dir / f"filled-{args.backend}-{args.messages}"

    def connect() -> RawClient:
        client = RawClient.connect(server.imap_port, timeout=600)
        client.login(user, password)
        return client

    server.start()
    try:
        if kept is None or not filled.exists():
            server.add_user(user, password)
            if upstream is not None:
                filled_row = upstream.fill(connect, data_dir, (user, password), args.messages)
                print(filled_row.figure, flush=True)
            else:
                print(fill(connect, args.messages).figure, flush=True)
            if kept is not None:
                filled.touch()
        (together if args.sessions > 1 else rounds)(args, server, connect)
    finally:
        server.stop()
    if kept is None:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storeprof")
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile the server")
    parser.add_argument("--top", type=int, default=25, help="profile lines")
    parser.add_argument("--chars", type=int, default=6000, help="profile text printed")
    parser.add_argument(
        "--fill-upstream",
        action="store_true",
        help="proxy: write the messages into the upstream's Maildir (bench.scale's)",
    )
    parser.add_argument("--condstore", action="store_true", help="ENABLE CONDSTORE first")
    parser.add_argument("--suffix", default="", help="e.g. .SILENT")
    parser.add_argument("--watch", action="store_true", help="time another session's NOOP")
    parser.add_argument(
        "--sessions", type=int, default=1, metavar="K",
        help="K sessions send commands at once (the i-th the i-th --command, round robin; "
        "default SEARCH TEXT, FETCH 1:* FLAGS, STORE 1:*, UID SEARCH SINCE)",
    )  # fmt: skip
    parser.add_argument(
        "--command", action="append", default=[], metavar="CMD",
        help="time CMD (in the order given) instead of the STORE 1:* rounds",
    )  # fmt: skip
    parser.add_argument(
        "--restart", action="store_true",
        help="restart the server and time the first SELECT (the mailbox read from disk)",
    )  # fmt: skip
    parser.add_argument(
        "--keep", metavar="DIR",
        help="the server's data dir, kept: filled on the first run, reused after",
    )  # fmt: skip
    parser.add_argument(
        "--long-turns", type=float, default=0.0, metavar="MS",
        help="sample the reactor thread's stack every ms in turns longer than MS (0: off)",
    )  # fmt: skip
    measure(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
