"""Plugin discovery: every object providing an interface in the ``mailserv.plugins`` package.

Backends (``IBackendFactory``) and SASL mechanisms (``ISASLMechanism``) are found this way.
twisted.plugin keeps a ``dropin.cache`` in each plugin directory and logs a complaint on
every lookup when it cannot rewrite a stale one (a read-only install).  When a cache cannot
be written we import the plugin modules directly instead: that is all the cache would save,
and there are only a handful of plugin modules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from twisted.logger import Logger
from twisted.plugin import IPlugin, getPlugins
from twisted.python.modules import PythonModule, getModule
from zope.interface.interface import InterfaceClass

import mailserv.plugins

__all__ = ["plugins"]

_log = Logger()

_CACHE_NAME = "dropin.cache"


def plugins(interface: InterfaceClass) -> list[Any]:
    """Every plugin providing ``interface`` (an IPlugin subinterface), in discovery order."""
    assert interface.extends(IPlugin), f"{interface} must extend IPlugin"
    modules = list(getModule(mailserv.plugins.__name__).iterModules())
    directories = {module.filePath.parent().path for module in modules}
    if all(_cache_writable(directory) for directory in directories):
        found: list[Any] = list(getPlugins(interface, mailserv.plugins))  # type: ignore[arg-type]
        return found
    return list(_scan(modules, interface))


def _cache_writable(directory: str) -> bool:
    cache = os.path.join(directory, _CACHE_NAME)
    if os.path.lexists(cache):
        return os.path.isfile(cache) and os.access(cache, os.W_OK)
    return os.access(directory, os.W_OK)


def _scan(modules: list[PythonModule], interface: InterfaceClass) -> Iterator[Any]:
    for module in modules:
        try:
            loaded = module.load()
        except Exception:
            _log.failure("Cannot load plugin module {name}", name=module.name)
            continue
        for value in vars(loaded).values():
            if interface.providedBy(value):
                yield value
