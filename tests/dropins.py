"""Drop-in plugin modules (``mailserv/plugins/<name>.py``, no ``__init__.py``) for the
servers a test starts: written under the test's folder, found through PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

import pytest


def drop_in(root: Path, module: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``root/mailserv/plugins/<module>.py`` holding ``source``; servers started after this
    (in this test) find it."""
    plugins = root / "mailserv" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / f"{module}.py").write_text(source, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(root))
