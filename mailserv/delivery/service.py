"""Assembly: the LMTP factory of a server (``--lmtp``), next to its IMAP factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime
from twisted.python.usage import UsageError

from mailserv.auth.users import IUserStore, UserStoreChecker
from mailserv.delivery.deliver import Deliverer, store_lookup
from mailserv.delivery.lmtp import LMTPFactory
from mailserv.delivery.managesieve import ManageSieveFactory
from mailserv.delivery.sieve import sieve_policy, sieve_store
from mailserv.delivery.submit import IMailSender, submitter
from mailserv.interfaces import IBackend

if TYPE_CHECKING:  # the agent (``mailserv deliver``) does without the IMAP engine
    from mailserv.imap.factory import IMAPServerFactory


def user_store(portal: Portal) -> IUserStore | None:
    """The user store the portal signs passwords in against, or None when sign-in is not
    checked against a store we can ask (the proxy backend asks its upstream server)."""
    checker = portal.checkers.get(IUsernamePassword)
    if isinstance(checker, UserStoreChecker):
        return checker.store
    return None


def deliverer_for(
    backend: IBackend, imap: IMAPServerFactory, data_dir: str, sender: IMailSender | None = None
) -> Deliverer:
    """A deliverer into ``backend`` that knows the users and quotas ``imap`` knows and
    shares its record of additions in flight and its count of commands running, running
    the users' Sieve scripts kept under ``data_dir`` (sending mail through ``sender``).
    UsageError when users cannot be looked up."""
    services = imap.services
    store = user_store(services.portal)
    if store is None:
        raise UsageError(
            "--lmtp: this backend checks sign-in elsewhere, so recipients cannot be looked "
            "up (with the proxy backend, use master-user mode)"
        )
    quota, ledger = services.settings.quota, services.quota
    policy = sieve_policy(data_dir, sender)
    events = (services.events, services.turns)
    lookup = store_lookup(store)
    metrics = services.metrics
    return Deliverer(backend, lookup, quota, ledger, policy, metrics, events, imap.in_flight)


def lmtp_factory(
    backend: IBackend,
    imap: IMAPServerFactory,
    clock: IReactorTime,
    data_dir: str,
    submission: str | None = None,
) -> LMTPFactory:
    """The LMTP service of the server whose IMAP side is ``imap`` (its connections
    counted with that side's); ``clock`` is the reactor (it connects to the ``submission``
    host, when there is one)."""
    try:
        sender = submitter(clock, submission)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    deliverer = deliverer_for(backend, imap, data_dir, sender)
    return LMTPFactory(deliverer, imap.settings, clock, limits=imap.connections)


def managesieve_factory(
    imap: IMAPServerFactory, data_dir: str, sends_mail: bool = False
) -> ManageSieveFactory:
    """The ManageSieve service of the server whose IMAP side is ``imap`` (its sign-in,
    its connections counted with that side's); ``sends_mail``: a submission host is set,
    so scripts may redirect."""
    store = sieve_store(data_dir)
    return ManageSieveFactory(imap.services, store, sends_mail, limits=imap.connections)
