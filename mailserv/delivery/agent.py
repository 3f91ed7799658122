"""``mailserv deliver -u USER [-m FOLDER] [-f SENDER] < message``: a sendmail-style local
delivery agent (for an MTA's ``mailbox_command`` or a ``pipe`` transport).

It opens the configured backend itself (``--config``, ``--data-dir``, ``--backend``...
as the server would), delivers through the same core as LMTP and exits with a
``sysexits.h`` status the MTA understands:

======================  ====  ===============================================
EX_OK                   0     delivered
EX_USAGE                64    bad command line
EX_DATAERR              65    empty message, or larger than the APPENDLIMIT
EX_NOUSER               67    no such user
EX_UNAVAILABLE          69    any other permanent refusal
EX_CANTCREAT            73    over quota (permanent, as LMTP's 552 5.2.2)
EX_TEMPFAIL             75    the store failed; the MTA should retry
EX_CONFIG               78    the backend cannot take mail from outside the
                              server (memory: use LMTP), or the configuration
                              is unusable; MTAs defer on it, so nothing bounces
======================  ====  ===============================================

Lines ending in a bare LF (as MTAs pipe them) are stored with CRLF, as IMAP has them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Coroutine
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from mailserv.config import Config, ConfigError, load_config, parse_assignment
from mailserv.delivery.deliver import Deliverer, Outcome, store_lookup
from mailserv.delivery.sieve import sieve_policy
from mailserv.delivery.submit import submitter
from mailserv.interfaces import IBackend, IMultiProcessBackend
from mailserv.quota import QuotaLedger

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78

_log = Logger()
_BARE_LF = re.compile(rb"(?<!\r)\n")


class DeliveryExit(Exception):
    """Ends ``mailserv deliver`` with ``status`` after printing the message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_command(areas: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    deliver = areas.add_parser(
        "deliver",
        help="deliver one message from stdin (a local delivery agent; sysexits statuses)",
        parents=[common],
    )
    deliver.add_argument("-u", "--user", required=True, help="the recipient user (or address)")
    deliver.add_argument(
        "-m", "--mailbox", metavar="FOLDER", help="deliver into FOLDER if it exists (else INBOX)"
    )
    deliver.add_argument("-f", "--from", dest="sender", default="", help="the envelope sender")
    deliver.add_argument("--backend", default=argparse.SUPPRESS, help="mail store plugin")
    deliver.add_argument(
        "--backend-option",
        metavar="KEY=VALUE",
        action="append",
        default=argparse.SUPPRESS,
        help="passed to the backend; repeatable",
    )
    deliver.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> None:
    """The handler: exits through DeliveryExit unless the message was delivered."""
    config = _config(args)
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    message = _BARE_LF.sub(b"\r\n", raw)
    if not message.strip():
        raise DeliveryExit("empty message", EX_DATAERR)
    if len(message) > config.settings.max_literal:
        raise DeliveryExit(
            f"message of {len(message)} octets is larger than the limit, "
            f"{config.settings.max_literal}",
            EX_DATAERR,
        )
    from twisted.internet import reactor

    from mailserv.auth.passwd import PasswdFile
    from mailserv.auth.portal import build_portal
    from mailserv.auth.users import UserStoreChecker
    from mailserv.backends import UnknownBackend, find_backend
    from mailserv.delivery.service import user_store
    from mailserv.errors import BackendOptionError
    from mailserv.tap import _offer_homes

    if not os.path.exists(config.passwd_path):
        raise DeliveryExit(f"passwd-file {config.passwd_path} does not exist", EX_CONFIG)
    passwd = PasswdFile(config.passwd_path)
    try:
        plugin = find_backend(config.backend)
        backend = plugin.build(dict(config.backend_options), config.data_dir, reactor)
    except (UnknownBackend, BackendOptionError, OSError) as exc:
        raise DeliveryExit(str(exc), EX_CONFIG) from exc
    if not IMultiProcessBackend.providedBy(backend):
        raise DeliveryExit(
            f"the {config.backend} backend keeps its store inside the server process: "
            "deliver over the server's LMTP service (--lmtp) instead",
            EX_CONFIG,
        )
    _offer_homes(backend, passwd)
    store = user_store(build_portal(backend, UserStoreChecker(passwd)))
    if store is None:
        raise DeliveryExit(
            "users cannot be looked up with this backend (proxy: use master-user mode)",
            EX_CONFIG,
        )
    quota, ledger = config.settings.quota, QuotaLedger()
    try:
        policy = sieve_policy(config.data_dir, submitter(reactor, config.submission))
    except ValueError as exc:  # an endpoint string that does not parse
        raise DeliveryExit(str(exc), EX_CONFIG) from exc
    deliverer = Deliverer(backend, store_lookup(store), quota, ledger, policy)
    # Warnings and errors only: what an MTA puts in its log or in a bounce.
    quiet = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)]
    )
    globalLogBeginner.beginLoggingTo([quiet], redirectStandardIO=False)
    outcome = _in_reactor(reactor, _deliver(backend, deliverer, args, message))
    if not outcome.ok:
        raise DeliveryExit(f"{outcome.code} {outcome.status} {outcome.text}", _status(outcome))
    out.write(f"delivered to {args.user}\n")


def _config(args: argparse.Namespace) -> Config:
    layer: dict[str, object] = {}
    for name in ("data_dir", "passwd_file", "backend"):
        if getattr(args, name, None):
            layer[name.replace("_", "-")] = getattr(args, name)
    options = list(getattr(args, "backend_option", None) or ())
    if getattr(args, "db", None):  # as the other commands take it: the sql backend's url
        layer["backend"] = "sql"
        options.append(f"url={args.db}")
    try:
        if options:
            layer["backend-option"] = dict(parse_assignment(o, "--backend-option") for o in options)
        return load_config(layer, getattr(args, "config", None))
    except ConfigError as exc:
        raise DeliveryExit(str(exc), EX_CONFIG) from exc


async def _deliver(
    backend: IBackend, deliverer: Deliverer, args: argparse.Namespace, message: bytes
) -> Outcome:
    try:
        await backend.start()
    except Exception as exc:  # noqa: BLE001 - the store is down: the MTA retries later
        raise DeliveryExit(f"the backend did not start: {exc}", EX_TEMPFAIL) from exc
    try:
        try:
            recipient = await deliverer.resolve(args.user)
        except Exception as exc:  # noqa: BLE001 - the user store is down
            raise DeliveryExit(f"cannot look the user up: {exc}", EX_TEMPFAIL) from exc
        if recipient is None:
            raise DeliveryExit(f"no such user: {args.user}", EX_NOUSER)
        if args.mailbox:
            recipient = type(recipient)(recipient.user, args.mailbox, args.user)
        trace = f"Return-Path: <{args.sender}>\r\n".encode() if args.sender else b""
        return await deliverer.deliver(recipient, trace + message, args.sender)
    finally:
        await backend.stop()


def _in_reactor(reactor: Any, work: Coroutine[Any, Any, Outcome]) -> Outcome:
    """Run the coroutine ``work`` under the (not yet running) global reactor."""
    result: list[Outcome | Failure] = []

    def start() -> None:
        done = Deferred.fromCoroutine(work)
        done.addBoth(result.append)
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    found = result[0] if result else DeliveryExit("interrupted", EX_TEMPFAIL)
    if isinstance(found, Failure):
        if isinstance(found.value, DeliveryExit):
            raise found.value
        raise DeliveryExit(f"delivery failed: {found.getErrorMessage()}", EX_TEMPFAIL)
    if isinstance(found, DeliveryExit):
        raise found
    return found


def _status(outcome: Outcome) -> int:
    if outcome.temporary:
        return EX_TEMPFAIL
    if outcome.status == "5.1.1":
        return EX_NOUSER
    if outcome.status == "5.2.2":
        return EX_CANTCREAT
    if outcome.status in ("5.3.4", "5.6.0"):
        return EX_DATAERR
    return EX_UNAVAILABLE
