"""The backends that ship with mailserv, exposed to twisted.plugin discovery."""

from mailserv.backends.memory import factory as memory

__all__ = ["memory"]
