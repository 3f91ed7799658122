"""The backends' share of ``STORE 1:* +FLAGS (\\Seen)``: ``python -m bench.stores sql-sqlite``.

Fills one mailbox of ``--messages`` messages the fastest way the backend allows (SQL: rows
inserted directly; maildir: files written to ``cur/`` and indexed at the first load), then
times the backend's ``store()`` of every message (``+FLAGS``, then ``-FLAGS``) in process,
with ``--profile`` a cProfile of one of them sorted by tottime; and a one-message STORE
(its median over ``--single`` runs).  Maildir runs under a real reactor with its I/O
threads: it prints the time of the phases, the gaps between the ticks of a 1 ms
LoopingCall (how long the reactor was held) and the full collections of the garbage
collector meanwhile; ``--keep DIR`` keeps the filled maildir for the next run.  No IMAP
server: the engine's share is not here.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mailserv.interfaces import StoreMode

SEEN = frozenset({"\\Seen"})


def _timed(label: str, call: Callable[[], Any], profile: bool) -> Any:
    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    result = call()
    if profiler is not None:
        profiler.disable()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label}: {took * 1000:.1f} ms (CPU of this process {cpu * 1000:.0f} ms)", flush=True)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return result


# -- SQL ---------------------------------------------------------------------------------


def sql(
    url: str,
    data_dir: str,
    count: int,
    single: int,
    profile: bool,
    durability: str = "fast",
    explain: bool = False,
) -> None:
    from mailserv.backends.sql import hierarchy, messages, schema
    from mailserv.backends.sql.db import InlineDatabase
    from mailserv.backends.sql.dialect import parse_url
    from mailserv.backends.sql.tx import Tx
    from mailserv.message import store as records
    from mailserv.message.parse import parse_message

    info = records.dumps(parse_message(b"Subject: s\r\n\r\nbody\r\n"))

    db = InlineDatabase(parse_url(url, data_dir, flag_durability=durability))
    db.call(schema.prepare, write=True)
    account = db.call(hierarchy.create_account, "bench", write=True)
    box = db.call(hierarchy.open_mailbox, account, "INBOX").id

    def fill(tx: Tx) -> None:
        step = 5000
        for low in range(0, count, step):
            ids = range(low, min(count, low + step))
            tx.many(
                "INSERT INTO messages (id, digest, refs, size, sent_day, subject, from_addr,"
                " to_addr, cc_addr, bcc_addr) VALUES (?, ?, 1, 2700, 738000, 's', 'f', 't',"
                " '', '')",
                [(i + 1, hashlib.sha256(str(i).encode()).digest()) for i in ids],
            )
            tx.many(
                "INSERT INTO message_info (message_id, info) VALUES (?, ?)",
                [(i + 1, info) for i in ids],
            )
            tx.many(
                "INSERT INTO mail (mailbox_id, uid, message_id, modseq, flags, internaldate,"
                " tz, internal_day, size) VALUES (?, ?, ?, 1, '  ', 1600000000, 0, 738000, 2700)",
                [(box, i + 1, i + 1) for i in ids],
            )
        tx.execute(
            "UPDATE mailboxes SET uidnext = ?, messages = ?, unseen = ?, size = ?,"
            " unseen_uids = ? WHERE id = ?",
            (count + 1, count, count, 2700 * count, f"1,{count}", box),
        )
        schema.refresh_statistics(tx)

    start = time.perf_counter()
    db.call(fill, write=True)
    print(f"fill {count}: {time.perf_counter() - start:.1f} s", flush=True)
    uids = list(range(1, count + 1))

    def store(mode: StoreMode, wanted: Sequence[int]) -> Any:
        return db.call(messages.store_flags, box, wanted, mode, SEEN, None, "bench", write=True)

    for i, mode in enumerate((StoreMode.ADD, StoreMode.REMOVE, StoreMode.ADD, StoreMode.REMOVE)):
        changed, _ = _timed(
            f"store 1:* {mode.name}", partial(store, mode, uids), profile and i == 2
        )
        assert len(changed) == count, len(changed)
    _singles("store one message", store, count, single)
    _reads(db, box, uids, store)
    _singles("store one message, one in a hundred unseen", store, count, single)
    if profile:
        fifty = [partial(store, StoreMode.ADD, [uid]) for uid in range(1, 51)]
        _timed("store one (profiled x50)", lambda: [call() for call in fifty], True)
    if explain:
        for line in db.call(_explain, box, count, write=True):
            print(line)
    db.close()


def _singles(label: str, store: Callable[..., Any], count: int, single: int) -> None:
    """The median of ``single`` one-message STOREs of \\Seen and their undoing."""
    took = []
    for i in range(single):
        uid = 1 + (i * 7919) % count
        start = time.perf_counter()
        store(StoreMode.ADD, [uid])
        store(StoreMode.REMOVE, [uid])
        took.append((time.perf_counter() - start) / 2)
    print(f"{label}: median {statistics.median(took) * 1000:.2f} ms (n={2 * single})")


def _reads(db: Any, box: int, uids: list[int], store: Callable[..., Any]) -> None:
    """What the indexes on flags and modseq served, once a STORE has marked every message
    seen and then one in a hundred unseen again: SEARCH UNSEEN and FLAGGED, CHANGEDSINCE
    (QRESYNC, backup) of the last STORE and of none; then SEARCH UNSEEN when the hundred
    newest are the unseen ones (medians of 5)."""
    from mailserv.backends.sql import reads, search
    from mailserv.backends.sql.rows import Zones
    from mailserv.search import HasFlag, SearchProgram

    store(StoreMode.ADD, uids)
    before = db.call(reads.status, box).highestmodseq
    _timed("store 1% scattered REMOVE", partial(store, StoreMode.REMOVE, uids[::100]), False)
    highest = db.call(reads.status, box).highestmodseq
    zones = Zones()

    def searched(flag: str, present: bool) -> int:
        program = SearchProgram(HasFlag(flag, present))
        found = db.call(search.answer, box, program, db.dialect.find, uids, None, False).uids
        return len(found or ())

    def changed(since: int) -> int:
        return len(db.call(reads.changes_since, box, since, zones).changed)

    def median(label: str, check: Callable[[], int]) -> None:
        took = []
        for _ in range(5):
            start = time.perf_counter()
            found = check()
            took.append(time.perf_counter() - start)
        print(f"{label}: median {statistics.median(took) * 1000:.1f} ms ({found} messages)")

    median("search UNSEEN, one in a hundred", partial(searched, "\\Seen", False))
    median("search FLAGGED", partial(searched, "\\Flagged", True))
    median("changedsince the last STORE", partial(changed, before))
    median("changedsince nothing", partial(changed, highest))
    store(StoreMode.ADD, uids[::100])  # the unseen are the newest, as usual
    store(StoreMode.REMOVE, uids[-100:])
    median("search UNSEEN, the newest hundred", partial(searched, "\\Seen", False))
    store(StoreMode.ADD, uids[-100:])
    store(StoreMode.REMOVE, uids[::100])  # scattered again, for the one-message STOREs after


def _explain(tx: Any, box: int, count: int) -> list[str]:
    """The database's side of ``STORE 1:* +FLAGS (\\Seen)`` and of a one-message STORE:
    EXPLAIN ANALYZE of their read and UPDATE (PostgreSQL: with buffers and WAL; SQLite: the
    query plans)."""
    from mailserv.backends.sql.rows import flags_text

    read = (
        f"SELECT flags, {tx.dialect.uid_list} FROM mail WHERE mailbox_id = ?"
        " AND (uid BETWEEN ? AND ?) GROUP BY flags"
    )
    update = (
        "UPDATE mail SET flags = ?, modseq = modseq + 1 WHERE mailbox_id = ?"
        " AND (uid BETWEEN ? AND ?)"
    )
    prefix = "EXPLAIN (ANALYZE, BUFFERS, WAL) " if tx.dialect.is_postgres else "EXPLAIN QUERY PLAN "
    out = []
    one = count // 2
    for sql, params in [
        (read, (box, 1, count)),
        (update, (flags_text(SEEN), box, 1, count)),
        (read, (box, one, one)),  # a one-message STORE's
        (update, (flags_text(SEEN), box, one, one)),
    ]:
        out.append(f"-- {sql}")
        out += ["  " + " ".join(str(v) for v in row) for row in tx.all(prefix + sql, params)]
    return out


# -- maildir -----------------------------------------------------------------------------


def maildir(data_dir: str, count: int, single: int, profile: bool, keep: str | None) -> None:
    import random

    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred

    from bench import messages as corpus
    from mailserv.backends.maildir import MaildirBackend
    from mailserv.backends.maildir.options import parse_options

    home = Path(keep or data_dir)
    root = home / "mail" / "bench" / "Maildir"
    if not (root / "cur").is_dir():
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        rng = random.Random(1)
        start = time.perf_counter()
        now = int(time.time())
        for i in range(count):
            raw = corpus.realistic(i, rng)
            (root / "cur" / f"{now}.M{i}P1.bench,S={len(raw)}:2,").write_bytes(raw)
        print(f"write {count} files: {time.perf_counter() - start:.1f} s", flush=True)

    gaps: list[float] = []
    collections: list[float] = []
    began = [0.0]

    def watch_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        elif info["generation"] == 2:
            collections.append(time.perf_counter() - began[0])

    gc.callbacks.append(watch_gc)

    def probe() -> Callable[[], None]:
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        loop = task.LoopingCall(tick)
        loop.start(0.001)
        return loop.stop

    async def run() -> None:
        settings = parse_options({"autocreate": "false"})
        backend = MaildirBackend(settings, str(home), reactor)
        await backend.start()
        account = await backend.account("bench")
        start = time.perf_counter()
        box = await account.open("INBOX")
        await box.uids()
        print(f"load: {time.perf_counter() - start:.1f} s", flush=True)
        uids = list(await box.uids())
        assert len(uids) == count, len(uids)
        phases: dict[str, float] = {}

        def timing(owner: Any, name: str, label: str) -> None:
            method = getattr(owner, name)

            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    phases[label] = phases.get(label, 0.0) + time.perf_counter() - start

            setattr(owner, name, timed)

        timing(box._state, "plan", "plan (thread)")
        timing(box.disk, "owe_flags", "disk.owe_flags (thread)")
        timing(box.disk.index, "owe", "of which index.owe")
        # Renames owed by an earlier run are done first.
        while box._renamer.pending:
            await task.deferLater(reactor, 0.1, lambda: None)
        modes = (StoreMode.ADD, StoreMode.REMOVE, StoreMode.ADD, StoreMode.REMOVE)
        for i, mode in enumerate(modes):
            phases.clear()
            collections.clear()
            profiler = cProfile.Profile() if profile and i == 2 else None
            gaps.clear()
            stop = probe()
            if profiler is not None:
                profiler.enable()
            start, cpu = time.perf_counter(), time.process_time()
            result = await box.store(uids, mode, SEEN, None)
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            renaming = time.perf_counter()
            while box._renamer.pending:
                await task.deferLater(reactor, 0.01, lambda: None)
            renamed = time.perf_counter() - renaming
            if profiler is not None:
                profiler.disable()
            stop()
            assert len(result.changed) == count, len(result.changed)
            gaps.sort()
            print(
                f"store 1:* {mode.name}: {took * 1000:.1f} ms (CPU {cpu * 1000:.0f} ms),"
                f" then renames {renamed:.1f} s;"
                f" reactor gaps p99 {gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms"
                f" max {gaps[-1] * 1000:.1f} ms (n={len(gaps)})",
                flush=True,
            )
            print("  " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items()))
            print(f"  full collections: {[round(t * 1000) for t in collections]} ms")
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        took_one = []
        for i in range(single):
            uid = uids[(i * 7919) % count]
            start = time.perf_counter()
            await box.store([uid], StoreMode.ADD, SEEN, None)
            await box.store([uid], StoreMode.REMOVE, SEEN, None)
            took_one.append((time.perf_counter() - start) / 2)
        print(f"store one message: median {statistics.median(took_one) * 1000:.2f} ms")
        await backend.stop()

    def react(_reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(run())

    task.react(react)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__)
    parser.add_argument("backend", choices=("maildir", "sql-sqlite", "sql-postgresql"))
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--explain", action="store_true", help="SQL: EXPLAIN ANALYZE of STORE 1:*'s statements"
    )
    parser.add_argument("--url", help="PostgreSQL database URL (else a private cluster)")
    parser.add_argument("--keep", help="maildir: the data dir to fill once and reuse")
    parser.add_argument(
        "--flag-durability",
        choices=("fast", "full"),
        default="fast",
        help="PostgreSQL: the backend option of that name",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="PostgreSQL without fsync: round trips alone"
    )
    args = parser.parse_args(argv)
    data_dir = tempfile.mkdtemp(prefix="mailserv-stores-")
    try:
        if args.backend == "sql-sqlite":
            sql("sqlite:", data_dir, args.messages, args.single, args.profile, "fast", args.explain)
        elif args.backend == "sql-postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            import pgcluster  # type: ignore[import-not-found]

            cluster = None
            url = args.url
            if url is None:
                cluster = pgcluster.start_cluster(durable=not args.no_fsync)
                url = cluster.database()
            try:
                sql(
                    url,
                    data_dir,
                    args.messages,
                    args.single,
                    args.profile,
                    args.flag_durability,
                    args.explain,
                )
            finally:
                if cluster is not None:
                    cluster.stop()
        else:
            maildir(data_dir, args.messages, args.single, args.profile, args.keep)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
