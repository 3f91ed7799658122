"""Running the state checker: a whole check, its report, the server and the mailboxes."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench import messages
from bench.harness import BackendSpec, quote
from bench.statecheck.clients import Client, Pause, Settings, reference_check
from bench.statecheck.connection import Closed
from bench.statecheck.world import Violation, World


@dataclass
class Report:
    commands: int
    seconds: float
    kinds: Counter[str]
    statuses: Counter[str]
    violation_count: int
    violations: list[Violation]
    violation_kinds: Counter[str]
    rounds: int
    compared: int

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def text(self, show: int = 10) -> str:
        lines = [
            f"commands: {self.commands} in {self.seconds:.1f} s = {self.rate:.0f} commands/s",
            f"consistency rounds: {self.rounds} ({self.compared} client models compared)",
            "per kind: " + ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items())),
            "not OK: "
            + (
                ", ".join(
                    f"{k} {n}"
                    for k, n in sorted(self.statuses.items())
                    if k.endswith(("NO", "BAD"))
                )
                or "none"
            ),
            f"violations: {self.violation_count}",
        ]
        lines += [f"  {n} x {what}" for what, n in self.violation_kinds.most_common()]
        if self.violations:
            lines.append(f"first {min(show, len(self.violations))}:")
        lines += [str(v) for v in self.violations[:show]]
        return "\n".join(lines)


async def check(settings: Settings, trace: TextIO | None = None) -> Report:
    """Run the clients for ``settings.seconds`` with a consistency round every few seconds."""
    world = World()
    world.trace = trace
    rng = random.Random(settings.seed)
    pool = ["$Label1", "$Label2", "$Label3", "$Forwarded", "$MDNSent"]
    clients = [
        Client(settings, world, i, random.Random(rng.randrange(1 << 30)), pool)
        for i in range(settings.clients)
    ]
    pause = Pause(len(clients))
    started = time.monotonic()
    until = started + settings.seconds
    tasks = [asyncio.create_task(c.run(pause, until)) for c in clients]
    try:
        while time.monotonic() < until:
            await asyncio.sleep(min(settings.round_seconds, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until:
                break
            pause.parked = 0
            pause.all_parked.clear()
            pause.running.clear()
            if pause.clients > 0:
                await pause.all_parked.wait()
            await reference_check(settings, world, clients)
            pause.running.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        await reference_check(settings, world, clients)
        for client in clients:
            if client.conn is not None and client.conn.model.state != "closed":
                try:
                    await client.conn.logout()
                except (Closed, ConnectionError, OSError):
                    client.conn.abort()
    finally:
        for task in tasks:
            task.cancel()
    commands = sum(world.kinds.values())
    return Report(
        commands,
        elapsed,
        world.kinds,
        world.statuses,
        world.violation_count,
        world.violations,
        world.violation_kinds,
        world.rounds,
        world.compared,
    )


def prepare(port: int, users: Sequence[tuple[str, str]], mailboxes: Sequence[str]) -> None:
    """Create the shared mailboxes and put a few messages in each (blocking, before the run)."""
    from bench.harness import RawClient

    rng = random.Random(0)
    for user, password in users:
        client = RawClient.connect(port, timeout=60)
        client.login(user, password)
        for mailbox in mailboxes:
            if mailbox.upper() != "INBOX":
                client.command(f"CREATE {quote(mailbox)}")
            corpus = [messages.realistic(i, rng) for i in range(20)]
            for response in client.append_many(mailbox, corpus):
                if not response.ok:
                    raise RuntimeError(f"APPEND to {mailbox} failed: {response.line!r}")
        client.command("LOGOUT")
        client.close()


def run_check(settings: Settings, trace: str | None = None) -> Report:
    """Prepare the mailboxes, then :func:`check` (``trace``: a file for every line)."""
    prepare(settings.port, settings.users, settings.mailboxes)
    if trace is None:
        return asyncio.run(check(settings))
    with open(trace, "w", encoding="utf-8") as out:
        return asyncio.run(check(settings, out))


# -- the command line ---------------------------------------------------------------------


def backend_spec(name: str) -> BackendSpec:
    """The server setup of one backend, as the protocol suite runs it (tests/conftest.py)."""
    tests = str(Path(__file__).resolve().parents[2] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    if name == "memory":
        return BackendSpec("memory")
    if name == "maildir":
        return BackendSpec("maildir", {"autocreate": "false"})
    if name == "sql-sqlite":
        return BackendSpec("sql")
    if name == "sql-postgresql":
        import pgcluster  # type: ignore[import-not-found]  # tests/, on sys.path

        return BackendSpec(
            "sql", prepare=pgcluster.prepare_backend, cleanup=pgcluster.cleanup_backend
        )
    if name == "proxy":
        import dovecot  # type: ignore[import-not-found]  # tests/, on sys.path

        spec = dovecot.proxy_backend_spec()
        assert isinstance(spec, BackendSpec)
        return spec
    raise SystemExit(
        f"unknown backend {name!r} (memory, maildir, sql-sqlite, sql-postgresql, proxy)"
    )


def settings_from(args: argparse.Namespace, port: int, users: list[tuple[str, str]]) -> Settings:
    return Settings(
        port=port,
        users=users,
        clients=args.clients,
        seconds=args.seconds,
        seed=args.seed,
        round_seconds=args.round,
        keywords=args.keywords,
    )


def against_dovecot(args: argparse.Namespace, users: list[tuple[str, str]]) -> int:
    """The checker against a private Dovecot, no mailserv: does it pass a reference server?"""
    tests = str(Path(__file__).resolve().parents[2] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from dovecot import Dovecot  # type: ignore[import-not-found]  # tests/, on sys.path

    upstream = Dovecot()
    for user, password in users:
        upstream.add_user(user, password)
    upstream.start()
    try:
        report = run_check(settings_from(args, upstream.imap_port, users), args.trace)
    finally:
        upstream.stop()
    print(f"Dovecot (no mailserv), {args.clients} clients, seed {args.seed}")
    print(report.text(args.show))
    return 1 if report.violation_count else 0
