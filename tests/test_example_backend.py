"""The README's example backend (examples/tinystore.py) passes the public contract suite,
run exactly as the README tells a backend author to run it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from tinystore import factory

from mailserv.errors import BackendOptionError, MessageTooLarge
from mailserv.testing import BackendContract, resolve


class TestTinyStore(BackendContract):
    factory = factory


def test_its_option_is_parsed_and_used(tmp_path: Path) -> None:
    backend = factory.build({"max-size": "100"}, str(tmp_path), None)  # type: ignore[arg-type]
    inbox = resolve(resolve(backend.account("alice")).open("INBOX"))
    with pytest.raises(MessageTooLarge):
        resolve(inbox.append(b"x" * 101, frozenset(), None, None))
    with pytest.raises(BackendOptionError, match="max-size"):
        factory.build({"max-size": "big"}, str(tmp_path), None)  # type: ignore[arg-type]
