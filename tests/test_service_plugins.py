"""Backend plugin discovery: built-ins, third-party drop-ins, read-only plugin directories."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

import mailserv.backends.memory
from mailserv.backends import UnknownBackend, available_backends, find_backend
from mailserv.interfaces import IBackendFactory

REPO = Path(__file__).resolve().parent.parent

PLUGIN_SOURCE = '''\
"""A third-party backend plugin, as another distribution would ship it."""
from zope.interface import implementer

import mailserv.backends.memory as _memory_package
from mailserv.interfaces import IBackendFactory


@implementer(IBackendFactory)
class ThirdPartyFactory:
    name = "{name}"
    description = "Throwaway test backend (memory underneath)."
    options = {{"greeting": "Accepted and ignored."}}

    def build(self, options, data_dir, reactor):
        return _memory_package.factory.build({{}}, data_dir, reactor)


factory = ThirdPartyFactory()
'''


def write_backend_plugin(root: Path, name: str = "thirdparty") -> Path:
    """``root/mailserv/plugins/<name>_store.py`` and nothing else: no ``__init__.py``."""
    plugins = root / "mailserv" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    module = plugins / f"{name}_store.py"
    module.write_text(PLUGIN_SOURCE.format(name=name), encoding="utf-8")
    return plugins


DISCOVER = textwrap.dedent(
    """
    import sys
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    from mailserv.backends import available_backends
    print("BACKENDS", *available_backends())
    if "--twisted" in sys.argv:  # what twisted.plugin alone does, for comparison
        import mailserv.plugins
        from twisted.plugin import getPlugins
        from mailserv.interfaces import IBackendFactory
        print("TWISTED", *sorted(p.name for p in getPlugins(IBackendFactory, mailserv.plugins)))
    """
)


def discover(extra: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(extra), str(REPO)]))
    result = subprocess.run(
        [sys.executable, "-c", DISCOVER, *args],
        env=env,
        cwd=extra,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def backends_line(output: str, tag: str = "BACKENDS") -> list[str]:
    lines = [line.split()[1:] for line in output.splitlines() if line.startswith(tag + " ")]
    assert len(lines) == 1, output
    return lines[0]


def test_builtin_memory() -> None:
    backends = available_backends()
    assert backends["memory"] is mailserv.backends.memory.factory
    assert find_backend("memory") is mailserv.backends.memory.factory
    for plugin in backends.values():
        assert verifyObject(IBackendFactory, plugin)
        assert isinstance(plugin.description, str)


def test_unknown_backend_lists_available() -> None:
    with pytest.raises(UnknownBackend) as info:
        find_backend("no-such-store")
    assert "no-such-store" in str(info.value)
    assert "memory" in str(info.value)


def test_third_party_dropin_on_path(tmp_path: Path) -> None:
    plugins = write_backend_plugin(tmp_path)
    output = discover(tmp_path)
    assert {"memory", "maildir", "thirdparty"} <= set(backends_line(output))
    assert (plugins / "dropin.cache").is_file()  # a writable directory gets Twisted's cache
    assert "Traceback" not in output


def test_unwritable_cache_is_quiet(tmp_path: Path) -> None:
    plugins = write_backend_plugin(tmp_path)
    # A directory where the cache file should be: no user, root included, can write it.
    (plugins / "dropin.cache").mkdir()
    output = discover(tmp_path, "--twisted")
    assert {"memory", "maildir", "thirdparty"} <= set(backends_line(output))
    # twisted.plugin on its own complains on every lookup; our discovery must not.
    ours = output.split("BACKENDS")[0]
    assert "Unable to write to plugin cache" not in ours
    assert "Traceback" not in ours
    assert "Unable to write to plugin cache" in output  # the comparison shows the problem
    assert {"memory", "maildir", "thirdparty"} <= set(backends_line(output, "TWISTED"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_plugin_directory(tmp_path: Path) -> None:
    plugins = write_backend_plugin(tmp_path)
    plugins.chmod(0o555)
    try:
        output = discover(tmp_path)
    finally:
        plugins.chmod(0o755)
    assert {"memory", "maildir", "thirdparty"} <= set(backends_line(output))
    assert "Unable to write" not in output
    assert not (plugins / "dropin.cache").exists()


def test_broken_dropin_does_not_hide_the_others(tmp_path: Path) -> None:
    plugins = write_backend_plugin(tmp_path)
    (plugins / "broken_store.py").write_text("raise RuntimeError('broken plugin')\n")
    (plugins / "dropin.cache").mkdir()
    output = discover(tmp_path)
    assert {"memory", "maildir", "thirdparty"} <= set(backends_line(output))
    assert "broken_store" in output  # the operator is told which module failed
