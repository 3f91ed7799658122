"""Import and export rates of ``mailserv import``/``export``: ``python -m bench.importexport``.

Writes an mbox of ``--messages`` realistic messages (``bench.messages``), then per backend
(maildir and SQLite, and PostgreSQL in a cluster started for it with fsync on) runs the CLI
as the operator would: ``mailserv import USER FILE`` and ``mailserv export USER DIR
--format mbox`` and ``--format maildir``, prints messages/s of each and checks the exported
mbox is byte-identical to the source.  The time includes the CLI's start (about a second).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pgcluster

from bench.harness import REPO
from bench.messages import realistic
from mailserv.admin import mbox

FLAGS = (frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Answered", "Work"}))


def _cli(*args: str, stdin: str = "") -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mailserv", *args, "--quiet"] if args[0] != "user" else
        [sys.executable, "-m", "mailserv", *args],
        input=stdin, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"mailserv {' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - start


def _write_source(path: Path, count: int) -> None:
    rng = random.Random(5)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    with open(path, "wb") as out:
        for i in range(count):
            when = start + timedelta(minutes=i)
            out.write(mbox.entry(realistic(i, rng), FLAGS[i % len(FLAGS)], when))


def _one(label: str, store: list[str], root: Path, source: Path, count: int) -> None:
    data_dir = root / label
    where = ["--data-dir", str(data_dir), *store]
    _cli("user", "add", "bench", "--data-dir", str(data_dir), "--password-stdin", stdin="pw")
    took = _cli("import", "bench", str(source), *where)
    print(f"{label:12} import          {count / took:8.0f} messages/s ({took:.1f} s)", flush=True)
    for fmt in ("mbox", "maildir"):
        took = _cli("export", "bench", str(root / f"{label}-{fmt}"), "--format", fmt, *where)
        print(
            f"{label:12} export {fmt:8} {count / took:8.0f} messages/s ({took:.1f} s)", flush=True
        )
    same = (root / f"{label}-mbox" / "INBOX.mbox").read_bytes() == source.read_bytes()
    print(f"{label:12} mbox round trip byte-identical: {same}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--backends", default="maildir,sql-sqlite,sql-postgresql", help="comma-separated"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-importexport-"))
    source = root / "source.mbox"
    _write_source(source, args.messages)
    print(f"{args.messages} messages, {source.stat().st_size / 1e6:.1f} MB of mbox", flush=True)
    try:
        for name in args.backends.split(","):
            if name == "maildir":
                _one(name, ["--backend", "maildir"], root, source, args.messages)
            elif name == "sql-sqlite":
                _one(name, ["--backend", "sql"], root, source, args.messages)
            elif name == "sql-postgresql":
                cluster = pgcluster.start_cluster(durable=True)
                try:
                    url = cluster.database()
                    store = ["--backend", "sql", "--backend-option", f"url={url}"]
                    _one(name, store, root, source, args.messages)
                finally:
                    cluster.stop()
            else:
                raise SystemExit(f"unknown backend {name!r}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
