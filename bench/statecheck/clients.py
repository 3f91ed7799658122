"""The random clients of the state checker and the consistency round between them."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass

from bench import messages
from bench.harness import quote
from bench.statecheck.connection import Closed, Connection
from bench.statecheck.model import Model, compare
from bench.statecheck.wire import compact
from bench.statecheck.world import World

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
MAILBOXES = ("INBOX", "Shared1", "Shared2")


@dataclass
class Settings:
    port: int
    users: list[tuple[str, str]]
    clients: int = 8
    seconds: float = 8.0
    seed: int = 1
    round_seconds: float = 4.0
    keywords: int = 20
    """New keywords made up in the whole run (some servers cap keywords per mailbox)."""
    mailboxes: tuple[str, ...] = MAILBOXES


class Pause:
    """Stops every client between two commands for a consistency check."""

    def __init__(self, clients: int) -> None:
        self.running = asyncio.Event()
        self.running.set()
        self.clients = clients
        self.parked = 0
        self.all_parked = asyncio.Event()

    async def gate(self) -> None:
        if self.running.is_set():
            return
        self.parked += 1
        if self.parked >= self.clients:
            self.all_parked.set()
        await self.running.wait()

    def leave(self) -> None:
        """A client that has finished for good counts as parked from now on."""
        self.clients -= 1
        if not self.running.is_set() and self.parked >= self.clients:
            self.all_parked.set()


class Client:
    def __init__(
        self, settings: Settings, world: World, index: int, rng: random.Random, pool: list[str]
    ) -> None:
        self.settings = settings
        self.world = world
        self.name = f"c{index}"
        self.rng = rng
        self.pool = pool
        self.user, self.password = settings.users[index % len(settings.users)]
        self.sessions = 0
        self.conn: Connection | None = None

    async def connect(self) -> Connection:
        self.sessions += 1
        conn = Connection(
            self.world, f"{self.name}s{self.sessions}", self.settings.port, self.user, self.password
        )
        self.conn = conn
        await conn.open()
        return conn

    def keyword(self) -> str:
        made = sum(1 for k in self.pool if k.startswith("$New"))
        if made < self.settings.keywords and self.rng.random() < 0.15:
            word = f"$New{secrets.token_hex(3)}"
            self.pool.append(word)
            return word
        return self.rng.choice(self.pool)

    def flags(self) -> list[str]:
        picked = set()
        for _ in range(self.rng.randint(1, 3)):
            if self.rng.random() < 0.6:
                picked.add(self.rng.choice(SYSTEM_FLAGS))
            else:
                picked.add(self.keyword())
        return sorted(picked)

    def seqs(self, model: Model) -> str:
        a = self.rng.randint(1, model.count)
        r = self.rng.random()
        if r < 0.5:
            return str(a)
        if r < 0.8:
            return f"{a}:{min(model.count, a + self.rng.randint(1, 10))}"
        return f"{a}:*"

    def uids(self, model: Model) -> str | None:
        known = [e.uid for e in model.entries if e.uid is not None]
        if not known:
            return None
        return compact(self.rng.sample(known, min(len(known), self.rng.randint(1, 4))))

    def other_mailbox(self, model: Model) -> str:
        return self.rng.choice([m for m in self.settings.mailboxes if m != model.mailbox])

    async def step(self, conn: Connection) -> None:
        model = conn.model
        rng = self.rng
        if model.state == "selected" and model.stale and model.mailbox is not None:
            verb = "EXAMINE" if model.readonly else "SELECT"
            await conn.command(f"{verb} {quote(model.mailbox)}", target=model.mailbox)
            return
        if model.state != "selected":
            mailbox = rng.choice(self.settings.mailboxes)
            verb = "EXAMINE" if rng.random() < 0.2 else "SELECT"
            await conn.command(f"{verb} {quote(mailbox)}", target=mailbox)
            return
        writable = not model.readonly
        count = model.count
        grow = 3.0 if count < 150 else 0.2
        choices: list[tuple[float, str]] = [
            (2, "noop"),
            (3, "fetch_flags"),
            (1.5, "fetch_header"),
            (1.5, "fetch_body"),
            (1, "fetch_partial"),
            (grow, "append"),
            (0.7, "status"),
            (0.7, "idle"),
            (0.4, "reselect"),
            (0.2, "close"),
            (0.15, "logout"),
        ]
        if writable:
            choices += [(5, "store"), (1, "expunge"), (0.7, "uid_expunge")]
            choices += [(grow * 0.4, "copy"), (0.6, "move")]
        if count == 0:
            needs = ("fetch_flags", "fetch_header", "fetch_body", "fetch_partial", "store")
            choices = [c for c in choices if c[1] not in needs + ("copy", "move")]
        total = sum(w for w, _ in choices)
        pick = rng.uniform(0, total)
        for weight, op in choices:  # noqa: B007 (op is used after the loop)
            pick -= weight
            if pick <= 0:
                break
        await getattr(self, "op_" + op)(conn, model)

    async def op_noop(self, conn: Connection, model: Model) -> None:
        await conn.command("NOOP")

    async def op_fetch_flags(self, conn: Connection, model: Model) -> None:
        if self.rng.random() < 0.3:
            await conn.command("FETCH 1:* (UID FLAGS)")
        else:
            await conn.command(f"FETCH {self.seqs(model)} (UID FLAGS)")

    async def op_fetch_header(self, conn: Connection, model: Model) -> None:
        item = self.rng.choice(
            ["BODY.PEEK[HEADER]", "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)]", "ENVELOPE"]
        )
        await conn.command(f"FETCH {self.seqs(model)} (UID FLAGS {item})")

    async def op_fetch_body(self, conn: Connection, model: Model) -> None:
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID FETCH {uids} (UID BODY.PEEK[])")
        else:
            await conn.command(f"FETCH {self.rng.randint(1, model.count)} (UID BODY.PEEK[])")

    async def op_fetch_partial(self, conn: Connection, model: Model) -> None:
        n = self.rng.randint(1, model.count)
        start, length = self.rng.randint(0, 2000), self.rng.randint(1, 700)
        await conn.command(f"FETCH {n} (UID BODY.PEEK[]<{start}.{length}>)")

    async def op_store(self, conn: Connection, model: Model) -> None:
        how = self.rng.choice(["+FLAGS", "+FLAGS", "-FLAGS", "FLAGS"])
        if self.rng.random() < 0.15:
            how += ".SILENT"
        flags = " ".join(self.flags())
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.3:
            await conn.command(f"UID STORE {uids} {how} ({flags})")
        else:
            await conn.command(f"STORE {self.seqs(model)} {how} ({flags})")

    async def op_append(self, conn: Connection, model: Model) -> None:
        mailbox = model.mailbox if self.rng.random() < 0.6 else self.other_mailbox(model)
        assert mailbox is not None
        body = messages.realistic(self.rng.randrange(10**6), self.rng)
        flags = " ".join(self.flags()) if self.rng.random() < 0.6 else ""
        text = f"APPEND {quote(mailbox)}" + (f" ({flags})" if flags else "")
        await conn.command(text, literal=body, target=mailbox)

    async def op_copy(self, conn: Connection, model: Model) -> None:
        dest = self.other_mailbox(model)
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID COPY {uids} {quote(dest)}", target=dest)
        else:
            await conn.command(f"COPY {self.seqs(model)} {quote(dest)}", target=dest)

    async def op_move(self, conn: Connection, model: Model) -> None:
        dest = self.other_mailbox(model)
        uids = self.uids(model)
        if uids is not None and self.rng.random() < 0.5:
            await conn.command(f"UID MOVE {uids} {quote(dest)}", target=dest)
        else:
            n = self.rng.randint(1, model.count)
            await conn.command(f"MOVE {n} {quote(dest)}", target=dest)

    async def op_expunge(self, conn: Connection, model: Model) -> None:
        await conn.command("EXPUNGE")

    async def op_uid_expunge(self, conn: Connection, model: Model) -> None:
        deleted = [e.uid for e in model.entries if e.uid and e.flags and "\\DELETED" in e.flags]
        uids = compact(deleted[:5]) if deleted else self.uids(model)
        if uids is None:
            await conn.command("EXPUNGE")
        else:
            await conn.command(f"UID EXPUNGE {uids}")

    async def op_status(self, conn: Connection, model: Model) -> None:
        mailbox = self.other_mailbox(model)
        await conn.command(
            f"STATUS {quote(mailbox)} (MESSAGES UIDNEXT UIDVALIDITY)", target=mailbox
        )

    async def op_idle(self, conn: Connection, model: Model) -> None:
        await conn.idle(self.rng.uniform(0.05, 0.5))

    async def op_reselect(self, conn: Connection, model: Model) -> None:
        mailbox = self.rng.choice(self.settings.mailboxes)
        verb = "EXAMINE" if self.rng.random() < 0.2 else "SELECT"
        await conn.command(f"{verb} {quote(mailbox)}", target=mailbox)

    async def op_close(self, conn: Connection, model: Model) -> None:
        await conn.command("CLOSE" if self.rng.random() < 0.7 else "UNSELECT")

    async def op_logout(self, conn: Connection, model: Model) -> None:
        await conn.logout()
        await self.connect()

    async def run(self, pause: Pause, until: float) -> None:
        try:
            while time.monotonic() < until:
                await pause.gate()
                if time.monotonic() >= until:
                    break
                try:
                    conn = self.conn if self.conn is not None else await self.connect()
                    if conn.model.state == "closed":
                        conn = await self.connect()
                    await self.step(conn)
                except (Closed, ConnectionError, OSError) as e:
                    if self.conn is not None:
                        self.conn.abort()
                    self.world.violation(self.name, "(connection)", "", f"connection lost: {e}")
                    self.conn = None
                    await asyncio.sleep(0.2)
        finally:
            pause.leave()


async def reference_check(settings: Settings, world: World, clients: list[Client]) -> None:
    """Every client NOOPs; then a fresh connection per mailbox must agree with them all."""
    live = [c.conn for c in clients if c.conn is not None and c.conn.model.state == "selected"]

    async def noop(conn: Connection) -> None:
        try:
            await conn.command("NOOP")
        except (Closed, ConnectionError, OSError):
            conn.abort()

    await asyncio.gather(*(noop(conn) for conn in live))
    world.rounds += 1
    for user, password in settings.users:
        for mailbox in settings.mailboxes:
            ref = Connection(world, f"ref{world.rounds}", settings.port, user, password)
            try:
                await ref.open()
                if await ref.command(f"EXAMINE {quote(mailbox)}", target=mailbox) != "OK":
                    continue
                if ref.model.count:
                    await ref.command("FETCH 1:* (UID FLAGS)")
                if any(e.uid is None or e.flags is None for e in ref.model.entries):
                    ref.model.bad("", "FETCH 1:* (UID FLAGS) left messages without UID or FLAGS")
                    continue
                key = ref.model.key(mailbox)
                for conn in live:
                    model = conn.model
                    mine = model.key(model.mailbox) if model.mailbox else None
                    same = model.state == "selected" and model.user == user and mine == key
                    same = same and not model.tainted  # (it was reported already)
                    if same and not compare(world, ref.model, model):
                        model.stale = model.tainted = True  # SELECT again
                await ref.logout()
            except (Closed, ConnectionError, OSError) as e:
                world.violation(ref.name, "(reference)", "", f"reference connection failed: {e}")
                ref.abort()
