"""What an EXPUNGE of many costs a maildir index, and forgetting its texts afterwards:
``python -m bench.maildirforget INDEX [--gone 20001:40000] [--batch 50 ...]``.

``INDEX`` is a ``mailserv-index.sqlite`` (e.g. of a store ``bench.storeprof --keep DIR``
filled); a copy of it is made (``VACUUM INTO``, the original is only read).  Times the
index's expunge of the UIDs ``--gone`` in one transaction (their texts left owed), then
2000 owed texts taken out of the trigram and word indexes in transactions of each
``--batch`` size (CPU per text, the longest transaction), the rest in batches of 500, and
checks both FTS5 indexes against their texts.  In process, no server; wall times are as
loaded as the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence

from mailserv.backends.maildir.index import FILENAME, Index

SAMPLE = 2000
"""Owed texts each batch size is timed on."""


def _copy(source: str, into: str) -> Index:
    target = os.path.join(into, FILENAME)
    db = sqlite3.connect(source)
    try:
        db.execute("VACUUM INTO ?", (target,))
        (uidvalidity,) = db.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
    finally:
        db.close()
    index = Index(into, False)
    index.open(int(uidvalidity))
    return index


def measure(args: argparse.Namespace) -> None:
    low, high = (int(part) for part in args.gone.split(":"))
    work = tempfile.mkdtemp(prefix="mailserv-forget-")
    try:
        index = _copy(args.index, work)
        db = index.db
        (count,) = db.execute("SELECT count(*) FROM message").fetchone()
        gone = [
            uid
            for (uid,) in db.execute(
                "SELECT uid FROM message WHERE uid BETWEEN ? AND ? ORDER BY uid", (low, high)
            )
        ]
        cpu, wall = time.process_time(), time.perf_counter()
        with index.transaction():
            index.expunge(gone, index.next_modseq())
        print(
            f"expunge {len(gone)} of {count}: {time.perf_counter() - wall:.2f} s wall, "
            f"{time.process_time() - cpu:.2f} s CPU"
        )
        (owed,) = db.execute("SELECT count(*) FROM forgetting").fetchone()
        print(f"texts owed: {owed}")
        for batch in args.batch:
            done, longest = 0, 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            while done < SAMPLE:
                began = time.perf_counter()
                more = index.forget_some(batch)
                longest = max(longest, time.perf_counter() - began)
                done += batch
                if not more:
                    break
            spent = time.process_time() - cpu
            print(
                f"batch {batch}: {done} texts in {time.perf_counter() - wall:.2f} s wall, "
                f"{1000 * spent / done:.2f} ms CPU a text, longest transaction "
                f"{1000 * longest:.0f} ms"
            )
        cpu, wall = time.process_time(), time.perf_counter()
        while index.forget_some(500):
            pass
        print(
            f"the rest, 500 a batch: {time.perf_counter() - wall:.2f} s wall, "
            f"{time.process_time() - cpu:.2f} s CPU"
        )
        for table in ("fulltext", "words"):
            db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
        print("integrity-check of fulltext and words: ok")
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.maildirforget")
    parser.add_argument("index", help="a mailserv-index.sqlite (only read)")
    parser.add_argument("--gone", default="20001:40000", help="UIDs expunged, LOW:HIGH")
    parser.add_argument("--batch", type=int, action="append", help="texts a transaction")
    args = parser.parse_args(argv)
    args.batch = args.batch or [10, 50, 200]
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
