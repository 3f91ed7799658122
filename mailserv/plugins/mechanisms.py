"""The SASL mechanisms that ship with mailserv, exposed to twisted.plugin discovery."""

from mailserv.auth.sasl.login import mechanism as login
from mailserv.auth.sasl.plain import mechanism as plain
from mailserv.auth.sasl.scram import mechanism as scram_sha_256
from mailserv.auth.sasl.scram import mechanism_plus as scram_sha_256_plus

__all__ = ["login", "plain", "scram_sha_256", "scram_sha_256_plus"]
