"""The public backend contract suite (``mailserv.testing``) against each built-in backend,
run as a third-party backend runs it: one subclass per factory."""

from __future__ import annotations

from pathlib import Path

import pgcluster

from mailserv.backends import maildir, memory, sql
from mailserv.testing import BackendContract


class TestMemory(BackendContract):
    factory = memory.factory


class TestMaildir(BackendContract):
    factory = maildir.factory

    def options(self, data_dir: Path) -> dict[str, str]:
        # File work inline (io-threads=0); no special-use folders made at first login: the
        # suite creates "Archive" itself.
        return {"io-threads": "0", "autocreate": "false"}


class TestSqlSqlite(BackendContract):
    factory = sql.SqlBackendFactory(database=sql.inline_database)  # transactions inline

    def options(self, data_dir: Path) -> dict[str, str]:
        return {"sqlite-sync": "normal"}  # no fsync per commit: a faster suite


class TestSqlPostgresql(BackendContract):
    factory = sql.SqlBackendFactory(database=sql.inline_database)

    def options(self, data_dir: Path) -> dict[str, str]:
        return {"url": pgcluster.database_url()}
