"""The maildir index's connections read its file through a memory map (``MMAP_BYTES``): a
page their small caches lack is read without a system call (the SQL backend's connections
do the same, tests/test_sql_quick.py)."""

from __future__ import annotations

from pathlib import Path

from mailserv.backends.maildir.index import MMAP_BYTES, Index


def test_every_connection_of_the_index_is_mapped(tmp_path: Path) -> None:
    index = Index(str(tmp_path), fsync=False)
    index.open(1)
    try:
        assert MMAP_BYTES > 0
        assert index.db.execute("PRAGMA mmap_size").fetchone() == (MMAP_BYTES,)
        with index.reading() as reader:
            assert reader.execute("PRAGMA mmap_size").fetchone() == (MMAP_BYTES,)
        assert index.infos([1]) == {}
        assert index._reader is not None
        assert index._reader.execute("PRAGMA mmap_size").fetchone() == (MMAP_BYTES,)
    finally:
        index.close()
