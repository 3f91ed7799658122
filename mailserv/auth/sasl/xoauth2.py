"""XOAUTH2 (Google's and Microsoft's): ``user=<name>^Aauth=Bearer <token>^A^A``.

Not a standard, but what many mail clients send.  A token that fails gets the same error
exchange as OAUTHBEARER: a challenge with a JSON body in the shape those providers send
(``{"status": "401", "schemes": "bearer", "scope": ...}``), the client's empty answer, then
the tagged NO.  The user named must be the token's user.
"""

from __future__ import annotations

import json

from mailserv.auth.sasl import SASLError, utf8
from mailserv.auth.sasl.oauthbearer import BearerMechanism, bearer_token, parse_pairs
from mailserv.auth.tokens import ITokenValidator
from mailserv.config import OAuthConfig


def parse_xoauth2(message: bytes) -> tuple[str, str]:
    """The client's message → (user, token)."""
    pairs = parse_pairs(message, "XOAUTH2 message")
    user = pairs.get("user")
    if not user:
        raise SASLError("XOAUTH2 message has no user=<name>")
    return utf8(user, "XOAUTH2 user name"), bearer_token(pairs, "XOAUTH2")


def xoauth2_error(config: OAuthConfig) -> bytes:
    body = {"status": "401", "schemes": "bearer"}
    if config.scope:
        body["scope"] = config.scope
    return json.dumps(body).encode("ascii")


def xoauth2(validator: ITokenValidator, config: OAuthConfig) -> BearerMechanism:
    return BearerMechanism("XOAUTH2", parse_xoauth2, validator, xoauth2_error(config))
