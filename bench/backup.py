"""Full and incremental ``mailserv backup`` time after 1% of an N-message store changed.

``python -m bench.backup --messages 20000 [--backends maildir,sql-sqlite,sql-postgresql]``

For each backend: a store is filled in this process through the backend contract
(``append_many``, as a running server holds it), ``mailserv backup`` runs as a separate
process (full copy), then 1% of the messages change here (half flagged, a quarter new, a
quarter expunged) and ``mailserv backup`` runs again (incremental); a third run measures a
backup with nothing changed.  Wall-clock times of the command, start-up included.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pgcluster

from bench.harness import REPO
from bench.messages import realistic
from mailserv.admin.backup import Store
from mailserv.config import load_config
from mailserv.interfaces import DELETED, FLAGGED, IMultiAppendAccount, NewMessage, StoreMode

USER = "bench"
FOLDERS = ("INBOX", "Old", "Lists/python")


def _cli(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mailserv", *args],
        input="secret\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"mailserv {' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def _fill(store: Store, count: int) -> None:
    account = store.account(USER)
    rng = random.Random(12)
    for name in FOLDERS[1:]:
        store.call(account.create, name)
    for start in range(0, count, 500):
        batch = [
            NewMessage(realistic(i, rng), frozenset({"\\Seen"} if i % 3 else ()))
            for i in range(start, min(count, start + 500))
        ]
        folder = FOLDERS[(start // 500) % len(FOLDERS)]
        store.call(IMultiAppendAccount(account).append_many, folder, batch, None)
    store.call(account.close)


def _change(store: Store, count: int) -> None:
    """1% of ``count``: half flagged, a quarter appended, a quarter expunged."""
    account = store.account(USER)
    rng = random.Random(34)
    changes = max(4, count // 100)
    mailbox: Any = store.call(account.open, "INBOX")
    uids = list(store.call(mailbox.uids))
    picked = rng.sample(uids, changes // 2 + changes // 4)
    flagged, doomed = picked[: changes // 2], picked[changes // 2 :]
    store.call(mailbox.store, sorted(flagged), StoreMode.ADD, frozenset({FLAGGED}), None)
    store.call(mailbox.store, sorted(doomed), StoreMode.ADD, frozenset({DELETED}), None)
    store.call(mailbox.expunge, sorted(doomed), None)
    new = [NewMessage(realistic(count + i, rng), frozenset()) for i in range(changes // 4)]
    store.call(IMultiAppendAccount(account).append_many, "INBOX", new, None)
    store.call(account.close)


def run(name: str, count: int, root: Path) -> None:
    data = root / name / "data"
    data.mkdir(parents=True)
    where = ["--data-dir", str(data)]
    cluster = None
    if name == "sql-postgresql":
        cluster = pgcluster.start_cluster(durable=True)
        where += ["--db", cluster.database()]
        _cli("db", "upgrade", *where)
    try:
        _cli("user", "add", USER, "--password-stdin", *where)
        if not cluster:
            where += ["--backend", "maildir" if name == "maildir" else "sql"]
        backend = "sql" if name.startswith("sql") else "maildir"
        options = {"url": where[where.index("--db") + 1]} if cluster else {}
        config = load_config({"data-dir": str(data), "backend": backend, "backend-option": options})
        store = Store(config, USER)
        try:
            started = time.perf_counter()
            _fill(store, count)
            print(f"{name}: filled {count} messages in {time.perf_counter() - started:.1f}s")
            dest = str(root / name / "backup")
            for label in ("full", "after 1% changed", "nothing changed"):
                if label == "after 1% changed":
                    _change(store, count)
                seconds, summary = _cli("backup", *where, dest)
                copied = re.search(r"(\d+) messages copied", summary)
                print(f"{name}: {label}: {seconds:.1f}s ({copied.group(0) if copied else summary})")
        finally:
            store.close()
    finally:
        if cluster is not None:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--backends", default="maildir,sql-sqlite,sql-postgresql")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.backends.split(",")]
    if len(names) > 1:  # one process per backend: a reactor runs only once per process
        for name in names:
            again = ["--messages", str(args.messages), "--backends", name]
            subprocess.run([sys.executable, "-m", "bench.backup", *again], cwd=REPO, check=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as root:
        run(names[0], args.messages, Path(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
