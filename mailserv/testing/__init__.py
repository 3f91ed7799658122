"""The backend contract suite, for any backend: ``mailserv.interfaces`` checked by example.

A backend (built-in or third-party) runs it against its own factory with one import, in a
test module of its own::

    from mailserv.testing import BackendContract
    from mystore import factory

    class TestMyStore(BackendContract):
        factory = factory

        def options(self, data_dir):  # optional: the --backend-option values it needs
            return {"path": str(data_dir / "mail")}

pytest then runs every ``test_*`` method below against it (``pytest -k TestMyStore``).
Every backend call goes through :meth:`BackendContract.resolve`, which takes a plain value,
a Deferred or a coroutine and, while the result is not there, turns the reactor (the global
one unless ``reactor`` is set): a backend that waits on real I/O fits as one that does not.
Fixtures a subclass may override: ``backend_options`` (when options need other fixtures),
``backend``, ``account``, ``inbox``.

This module imports pytest; the server never imports it.
"""

from mailserv.testing.contract import BackendContract
from mailserv.testing.support import Recorder, message, resolve

__all__ = ["BackendContract", "Recorder", "message", "resolve"]
