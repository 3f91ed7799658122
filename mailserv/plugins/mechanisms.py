"""The SASL mechanisms that ship with mailserv, exposed to twisted.plugin discovery."""

from mailserv.auth.sasl.login import mechanism as login
from mailserv.auth.sasl.plain import mechanism as plain

__all__ = ["login", "plain"]
