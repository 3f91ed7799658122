"""Backend plugin discovery: every ``IBackendFactory`` found in ``mailserv.plugins``."""

from __future__ import annotations

from twisted.logger import Logger

from mailserv.discovery import plugins
from mailserv.interfaces import IBackendFactory

__all__ = ["UnknownBackend", "available_backends", "find_backend"]

_log = Logger()


class UnknownBackend(LookupError):
    """``--backend`` names no installed plugin; the text lists the available ones."""


def available_backends() -> dict[str, IBackendFactory]:
    """Every installed backend plugin by name, sorted by name; the first of duplicates wins."""
    found: dict[str, IBackendFactory] = {}
    plugin: IBackendFactory
    for plugin in plugins(IBackendFactory):
        name = plugin.name
        kept = found.setdefault(name, plugin)
        if kept is not plugin:
            _log.warn("Two backend plugins are named {name!r}; keeping the first", name=name)
    return dict(sorted(found.items()))


def find_backend(name: str) -> IBackendFactory:
    """The backend plugin called ``name``; UnknownBackend names the ones there are."""
    backends = available_backends()
    try:
        return backends[name]
    except KeyError:
        names = ", ".join(backends) or "none installed"
        raise UnknownBackend(f"unknown backend {name!r} (available: {names})") from None
