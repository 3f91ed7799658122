"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

One cluster per test process, started on first use on a free loopback port and stopped at
exit; every caller gets a fresh database in it.  PostgreSQL refuses to run as root, so when
the tests run as root the server runs as the ``postgres`` account (made by Debian's package)
or ``nobody``.  Without the binaries, ``require()`` skips the test with the reason, unless
``MAILSERV_REQUIRE_POSTGRESQL`` is set (CI), where it fails instead.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bench.harness import free_port

SUPERUSER = "mailserv"
BIN_ENV = "MAILSERV_PG_BIN"
REQUIRE_ENV = "MAILSERV_REQUIRE_POSTGRESQL"
DURABLE_ENV = "MAILSERV_PG_DURABLE"
"""Set (to anything) for a shared cluster with fsync and synchronous commits, as in
production: for benchmarks of commit costs (``bench.scale --backend sql-postgresql``)."""


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: $MAILSERV_PG_BIN, Debian's, or $PATH."""
    candidates = [os.environ.get(BIN_ENV, "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(os.path.dirname(found))
    for directory in candidates:
        if directory and all(os.access(Path(directory, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return Path(directory)
    return None


def _version(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


@dataclass
class Cluster:
    """A running server; ``database()`` makes a fresh database and returns its URL."""

    bindir: Path
    root: Path
    port: int
    account: pwd.struct_passwd | None
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", HOME=str(self.root))
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )

    def start(self) -> None:
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        result = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        settings = [
            f"-p {self.port}",
            f"-k {self.root}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=400",
        ]
        if not self.durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            " ".join(settings),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{log}")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_cluster(durable: bool = False) -> Cluster:
    """A new cluster (the caller stops it); RuntimeError when it cannot start."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
    account = _run_as()
    for attempt in range(3):
        root = Path(tempfile.mkdtemp(prefix="mailserv-pg-"))
        cluster = Cluster(bindir, root, free_port(), account, durable)
        try:
            cluster.start()
            return cluster
        except RuntimeError:
            cluster.stop()
            if attempt == 2:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


_shared: list[Cluster] = []


def require() -> Cluster:
    """The cluster of this test process (started on first use), or a skip/failure."""
    if _shared:
        return _shared[0]
    if find_bindir() is None:
        reason = (
            "PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's postgresql "
            f"package or set {BIN_ENV}"
        )
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
        pytest.skip(reason)
    cluster = start_cluster(durable=bool(os.environ.get(DURABLE_ENV)))
    _shared.append(cluster)
    atexit.register(cluster.stop)
    return cluster


def database_url() -> str:
    """A fresh database in the shared cluster."""
    return require().database()


# -- for bench.harness.BackendSpec: one database per server data directory -------------------

_URL_FILE = "postgresql-url"


def prepare_backend(data_dir: Path) -> dict[str, str]:
    """``BackendSpec.prepare``: a fresh database for the server in ``data_dir``."""
    url = database_url()
    (data_dir / _URL_FILE).write_text(url)
    return {"url": url}


def cleanup_backend(data_dir: Path) -> None:
    """``BackendSpec.cleanup``: drop the database ``prepare_backend`` made."""
    path = data_dir / _URL_FILE
    if path.exists() and _shared:
        _shared[0].drop(path.read_text())
        path.unlink()
