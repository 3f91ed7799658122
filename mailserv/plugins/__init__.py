"""Drop-in folder for plugins: backends (``IBackendFactory``), SASL mechanisms (``ISASLMechanism``).

A third-party distribution ships ``mailserv/plugins/<its_name>.py`` *without* any
``__init__.py``; it is found wherever that distribution is installed, because this package's
``__path__`` takes in every ``mailserv/plugins`` directory on ``sys.path`` (twisted.plugin's
documented pattern).  Discovery itself lives in ``mailserv.backends``.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
