"""The backends that ship with mailserv, exposed to twisted.plugin discovery."""

from mailserv.backends.maildir import factory as maildir
from mailserv.backends.memory import factory as memory
from mailserv.backends.proxy import factory as proxy
from mailserv.backends.sql import factory as sql

__all__ = ["maildir", "memory", "proxy", "sql"]
