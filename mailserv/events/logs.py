"""Logs for log shippers: one JSON object per line (``--log-format json``).

Each line is twisted.logger's own event serialisation (:func:`twisted.logger.eventAsJSON`:
``log_format``, ``log_level``, ``log_namespace``, ``log_time`` and the event's fields, such
as the ``login`` event's ``result``, ``mechanism``, ``user`` and ``address``) plus ``text``,
the event formatted as the text log shows it, and ``time``, ``log_time`` in ISO 8601 UTC.

``twistd -n imapserv --log-format json`` installs the observer as the application's
``ILogObserver`` component, which twistd uses in place of its own log file: the lines go to
standard output (as a service manager or a container runtime collects them; run with ``-n``:
a daemon's standard output is ``/dev/null``).  With ``--workers N`` each child writes JSON to
the master, which adds ``worker`` and ``worker_pid`` and logs the event as its own.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import IO, Any

from twisted.application.service import IServiceCollection, MultiService
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    eventAsJSON,
    eventFromJSON,
    formatEvent,
)
from twisted.python.components import Componentized

__all__ = ["JSONLogService", "event_from_line", "json_line", "json_observer"]


def json_line(event: Mapping[str, Any]) -> str:
    """``event`` as one line of JSON (with ``text`` and ``time`` added), newline ended."""
    record = dict(event)
    record["text"] = formatEvent(record)
    when = event.get("log_time")
    if isinstance(when, float | int):
        stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
        record["time"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return eventAsJSON(record) + "\n"


def json_observer(out: IO[str]) -> FileLogObserver:
    """An observer writing each event to ``out`` as a line of JSON."""
    return FileLogObserver(out, json_line)


def event_from_line(line: str) -> dict[str, Any] | None:
    """The event of a line that :func:`json_line` wrote; None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        event = eventFromJSON(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "log_format" in event else None


class JSONLogService(MultiService):
    """Wraps the server's service; set on twistd's application it makes ``observer`` the
    application's log observer (twistd's documented ``ILogObserver`` component)."""

    def __init__(self, service: MultiService, observer: ILogObserver) -> None:
        super().__init__()
        self._observer = observer
        service.setServiceParent(self)

    def setServiceParent(self, parent: IServiceCollection) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self._observer)
        super().setServiceParent(parent)
