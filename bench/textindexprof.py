"""CPU of the memory backend's text index steps (``kit.textindex``) at scale, in-process.

Decodes ``--messages`` realistic messages (``bench.messages.realistic``) once, then writes
them to a ``TextIndex`` a ``--batch`` at a time, running its merge steps after each write
as the background does, and prints the CPU time of each kind of step: mean, p99, max and
how many took more than 10 ms (each step is one reactor turn in the server).  With
``--steps MS``, the messages are indexed as the server does it instead (decoded and written
by ``TextIndex._index_some`` steps of about MS ms, a write transaction across steps): the
CPU in all and of each step, decoding included.

    python -m bench.textindexprof --messages 100000 --batch 32
    python -m bench.textindexprof --messages 30000 --steps 1
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Sequence

from twisted.internet.task import Clock

from bench import messages
from mailserv.backends.kit import textindex
from mailserv.backends.kit.textindex import TextIndex
from mailserv.message.parse import parse_message
from mailserv.message.text import folded_body, folded_header


def _summary(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name}: none"
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"{name}: n={len(ms)} mean={statistics.mean(ms):.2f} ms p99={ms[len(ms) * 99 // 100]:.1f}"
        f" ms max={ms[-1]:.1f} ms over 10 ms: {sum(m > 10 for m in ms)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.textindexprof")
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=textindex.WRITE_BATCH)
    parser.add_argument(
        "--steps", type=float, default=0.0, metavar="MS",
        help="index in steps of MS ms as the server does (decoding included)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.steps:
        return _steps(args.messages, args.steps / 1000)
    rng = random.Random(1)
    rows = []
    for i in range(args.messages):
        raw = messages.realistic(i, rng)
        info = parse_message(raw)
        rows.append((i + 1, folded_header(raw, info), folded_body(raw, info)))
    gc.collect()
    gc.freeze()  # the texts held here are not the index's: no collection walks them
    index = TextIndex(Clock())
    writes: list[float] = []
    merges: list[float] = []
    began = time.process_time()
    for start in range(0, len(rows), args.batch):
        before = time.thread_time()
        index._write(rows[start : start + args.batch])
        writes.append(time.thread_time() - before)
        while index._merging:
            before = time.thread_time()
            index._merge_step(textindex.BACKGROUND_SLICE)
            merges.append(time.thread_time() - before)
    print(f"{args.messages} texts, batch {args.batch}: {time.process_time() - began:.1f} s CPU")
    print(_summary("write", writes))
    print(_summary("merge step", merges))
    return 0


def _steps(count: int, length: float) -> int:
    rng = random.Random(1)
    index = TextIndex(Clock())
    for i in range(count):
        raw = messages.realistic(i, rng)
        index.added(i + 1, raw, parse_message(raw))
    gc.collect()
    gc.freeze()
    steps: list[float] = []
    began = time.process_time()
    while index.waiting or index._merging:
        before = time.thread_time()
        index._index_some(length)
        steps.append(time.thread_time() - before)
    print(
        f"{count} messages, steps of {length * 1000:g} ms: {time.process_time() - began:.2f} s CPU"
    )
    print(_summary("step", steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
