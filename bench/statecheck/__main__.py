"""The command line: ``python -m bench.statecheck --backend memory ...``."""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench.statecheck
from bench.harness import ServerProcess
from bench.statecheck.run import against_dovecot, backend_spec, run_check, settings_from


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.statecheck", description=bench.statecheck.__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", default="memory", help="or dovecot: no mailserv at all")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--round", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--keywords", type=int, default=20, help="new keywords in the run")
    parser.add_argument("--show", type=int, default=10, help="violations to print")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--trace", metavar="FILE", help="write every line sent and received")
    parser.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.users < 1:
        parser.error("--clients, --seconds and --users must be positive")
    users = [(f"check{i}", "pw-" + secrets.token_hex(6)) for i in range(args.users)]
    if args.backend == "dovecot":
        return against_dovecot(args, users)
    data_dir = Path(tempfile.mkdtemp(prefix="mailserv-statecheck-"))
    limits = {"max_connections_per_address": max(2000, args.clients * 2 + 100)}
    extra = ["--workers", str(args.workers)]
    server = ServerProcess(data_dir, backend_spec(args.backend), limits=limits, extra_args=extra)
    try:
        server.start()
        for user, password in users:
            server.add_user(user, password)
        report = run_check(settings_from(args, server.imap_port, users), args.trace)
        print(
            f"backend {args.backend}, {args.workers} worker(s), {args.clients} clients, "
            f"seed {args.seed}"
        )
        print(report.text(args.show))
        if not server.alive:
            print("the server died", file=sys.stderr)
            return 1
    finally:
        server.stop()
        if args.keep:
            print(f"data dir kept: {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if report.violation_count else 0


if __name__ == "__main__":
    sys.exit(main())
