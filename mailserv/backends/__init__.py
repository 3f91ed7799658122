"""Backend plugin discovery: every ``IBackendFactory`` found in ``mailserv.plugins``.

twisted.plugin keeps a ``dropin.cache`` in each plugin directory and logs a complaint on
every lookup when it cannot rewrite a stale one (a read-only install).  When a cache cannot
be written we import the plugin modules directly instead: that is all the cache would save,
and there are only a handful of backend modules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.python.modules import PythonModule, getModule

import mailserv.plugins
from mailserv.interfaces import IBackendFactory

__all__ = ["UnknownBackend", "available_backends", "find_backend"]

_log = Logger()

_CACHE_NAME = "dropin.cache"


class UnknownBackend(LookupError):
    """``--backend`` names no installed plugin; the text lists the available ones."""


def available_backends() -> dict[str, IBackendFactory]:
    """Every installed backend plugin by name, sorted by name; the first of duplicates wins."""
    found: dict[str, IBackendFactory] = {}
    for plugin in _discover():
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


def _discover() -> Iterable[IBackendFactory]:
    modules = list(getModule(mailserv.plugins.__name__).iterModules())
    directories = {module.filePath.parent().path for module in modules}
    if all(_cache_writable(directory) for directory in directories):
        return getPlugins(IBackendFactory, mailserv.plugins)
    return _scan(modules)


def _cache_writable(directory: str) -> bool:
    cache = os.path.join(directory, _CACHE_NAME)
    if os.path.lexists(cache):
        return os.path.isfile(cache) and os.access(cache, os.W_OK)
    return os.access(directory, os.W_OK)


def _scan(modules: Iterable[PythonModule]) -> Iterator[IBackendFactory]:
    for module in modules:
        try:
            loaded = module.load()
        except Exception:
            _log.failure("Cannot load backend plugin module {name}", name=module.name)
            continue
        for value in vars(loaded).values():
            if IBackendFactory.providedBy(value):
                yield value
