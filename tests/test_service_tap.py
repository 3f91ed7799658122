"""mailserv.tap in process: option parsing, assembly, and the listeners it creates."""

from __future__ import annotations

import gc
import os
import stat
from pathlib import Path

import pytest
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage

import mailserv.backends.maildir
from mailserv.config import Config
from mailserv.imap.factory import IMAPServerFactory
from mailserv.imap.settings import ServerSettings
from mailserv.tap import BackendService, Options, build_server, build_service, makeService
from mailserv.tls import generate_self_signed


def parse(*args: str) -> Config:
    options = Options()
    options.parseOptions(list(args))
    return options.config


def test_options_defaults() -> None:
    assert parse() == Config()


def test_options_all(tmp_path: Path) -> None:
    config = parse(
        "--data-dir",
        str(tmp_path),
        "--imap",
        "tcp:1",
        "--imap",
        "tcp6:2",
        "--no-imaps",
        "--backend",
        "memory",
        "--backend-option",
        "a=b=c",
        "--backend-option",
        "x=y",
        "--limit",
        "max_line=100",
        "--limit",
        "idle_timeout=2.5",
        "--allow-plaintext-auth",
        "--passwd-file",
        "users",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    )
    assert config.data_dir == str(tmp_path)
    assert config.imap == ("tcp:1", "tcp6:2")
    assert config.imaps == ()
    assert dict(config.backend_options) == {"a": "b=c", "x": "y"}
    assert config.settings == ServerSettings(
        max_line=100, idle_timeout=2.5, allow_plaintext_auth=True
    )
    assert (config.passwd_path, config.tls_cert, config.tls_key) == ("users", "c.pem", "k.pem")


def test_options_config_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('backend = "memory"\nimaps = ["ssl:2993"]\n[limits]\nmax_line = 7\n')
    config = parse("--config", str(path), "--limit", "max_pipelined=3")
    assert config.imaps == ("ssl:2993",)
    assert config.settings.max_line == 7
    assert config.settings.max_pipelined == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "max_line=x"], "max_line must be a whole number"),
        (["--limit", "bogus=1"], "unknown limit 'bogus'"),
        (["--backend-option", "novalue"], "KEY=VALUE"),
        (["--no-imap", "--no-imaps"], "nothing to listen on"),
        (["--tls-cert", "c.pem"], "tls-cert and tls-key go together"),
        (["--config", "/nonexistent/m.toml"], "cannot read configuration file"),
    ],
)
def test_options_errors(args: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)


def test_help_documents_every_option() -> None:
    text = str(Options())
    for option in (
        "--data-dir",
        "--imap=",
        "--imaps=",
        "--no-imap",
        "--no-imaps",
        "--tls-cert",
        "--tls-key",
        "--passwd-file",
        "--backend=",
        "--backend-option",
        "--allow-plaintext-auth",
        "--limit",
        "--config",
        "--help-backends",
    ):
        assert option in text
    for field in ("max_line", "max_literal", "idle_timeout", "max_auth_failures"):
        assert field in text
    assert "tcp:1143:interface=127.0.0.1" in text
    assert "ssl:1993:interface=127.0.0.1" in text


def test_build_server_creates_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = Config(data_dir=str(data), settings=ServerSettings(max_line=4096))
    with capturedLogs() as events:
        parts = build_server(config)
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "passwd").st_mode) == 0o600
    assert (data / "passwd").read_bytes() == b""
    assert (data / "tls" / "cert.pem").is_file()
    assert isinstance(parts.factory, IMAPServerFactory)
    assert parts.factory.settings.max_line == 4096
    assert parts.factory.tls is parts.tls.options
    assert parts.tls.generated
    assert isinstance(parts.backend, mailserv.backends.maildir.MaildirBackend)
    text = "\n".join(str(e.get("log_format", "")).format(**e) for e in events)
    assert str(data) in text
    assert parts.tls.fingerprint in text
    # A second start keeps what is there.
    (data / "passwd").write_text("alice:{PLAIN}x\n")
    again = build_server(config)
    assert not again.tls.generated
    assert again.tls.fingerprint == parts.tls.fingerprint
    assert (data / "passwd").read_text() == "alice:{PLAIN}x\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (Config(backend="nope"), "unknown backend 'nope' \\(available: .*memory"),
        (Config(backend_options={"colour": "blue"}), "colour"),
        (Config(tls_cert="/nonexistent/c.pem", tls_key="/nonexistent/k.pem"), "cannot read"),
        (Config(passwd_file="/nonexistent/dir/passwd"), "/nonexistent/dir/passwd"),
    ],
)
def test_build_server_errors(tmp_path: Path, config: Config, message: str) -> None:
    import dataclasses

    config = dataclasses.replace(config, data_dir=str(tmp_path / "d"))
    with pytest.raises(usage.UsageError, match=message):
        build_server(config)


def test_make_service_exits_with_a_message(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--backend", "nope"])
    with pytest.raises(SystemExit) as info:
        makeService(options)
    assert str(info.value).startswith("twistd imapserv: unknown backend 'nope'")


def test_listeners(tmp_path: Path) -> None:
    cert, key = generate_self_signed(["localhost"])
    (tmp_path / "own.pem").write_bytes(key + cert)
    config = Config(
        data_dir=str(tmp_path / "d"),
        imap=("tcp:1143:interface=127.0.0.1", r"tcp:0:interface=\:\:1"),
        imaps=(
            "ssl:1993:interface=127.0.0.1",
            "tcp:2993",
            f"ssl:3993:privateKey={tmp_path / 'own.pem'}",
        ),
    )
    reactor = MemoryReactorClock()  # the collector policy's timer (own process)
    service = build_service(config, reactor)
    with capturedLogs() as events:
        service.privilegedStartService()
        service.startService()
    plain = [(port, factory, interface) for port, factory, _, interface in reactor.tcpServers]
    assert len(plain) == 4
    imap_factories = [factory for _, factory, _ in plain]
    assert isinstance(imap_factories[0], IMAPServerFactory)
    assert imap_factories[1] is imap_factories[0]
    for wrapped in imap_factories[2:]:
        assert isinstance(wrapped, TLSMemoryBIOFactory)
        assert wrapped.wrappedFactory is imap_factories[0]
    assert [(port, interface) for port, _, interface in plain] == [
        (1143, "127.0.0.1"),
        (0, "::1"),
        (1993, "127.0.0.1"),
        (2993, ""),
    ]
    # An ssl: endpoint with its own key is left to Twisted's own TLS.
    assert len(reactor.sslServers) == 1
    port, factory, _, _, _ = reactor.sslServers[0]
    assert (port, factory) == (3993, imap_factories[0])
    messages = [e["log_format"].format(**e) for e in events if "label" in e]
    assert len(messages) == 5
    assert messages[0].startswith("IMAP listening on ")
    assert messages[2].startswith("IMAPS listening on ")
    service.stopService()


def test_bad_endpoint(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path), imap=("tcp:notaport",))
    with pytest.raises(usage.UsageError, match="--imap 'tcp:notaport'"):
        build_service(config, MemoryReactor())
    config = Config(data_dir=str(tmp_path), imaps=("bogus:1",))
    with pytest.raises(usage.UsageError, match="--imaps 'bogus:1'"):
        build_service(config, MemoryReactor())


class _Backend:
    def __init__(self, start_result: object) -> None:
        self.start_result = start_result
        self.calls: list[str] = []

    def start(self) -> object:
        self.calls.append("start")
        return succeed(None) if self.start_result is None else self.start_result

    def stop(self) -> object:
        self.calls.append("stop")
        return succeed(None)


def test_backend_started_and_stopped_with_the_service() -> None:
    backend = _Backend(None)
    reactor = MemoryReactor()
    service = BackendService(backend, reactor)  # type: ignore[arg-type]
    service.startService()
    assert backend.calls == ["start"]
    stopped = service.stopService()
    assert backend.calls == ["start", "stop"]
    assert isinstance(stopped, Deferred)
    assert reactor.whenRunningHooks == []


def test_a_coroutine_stop_is_awaited_after_the_sessions_are_closed() -> None:
    # The backend contract's stop() is a coroutine function: the service must run it, not
    # drop the coroutine (it did, once sessions were closed first: the store never stopped).
    class AsyncBackend(_Backend):
        async def stop(self) -> None:  # type: ignore[override]
            self.calls.append("stop")

    backend = AsyncBackend(None)
    reactor = MemoryReactor()
    factory = IMAPServerFactory(Portal(None), clock=reactor)  # type: ignore[arg-type]
    service = BackendService(backend, reactor, factory=factory)  # type: ignore[arg-type]
    service.startService()
    stopped = service.stopService()
    assert backend.calls == ["start", "stop"]
    assert stopped.called


def test_backend_start_failure_stops_the_reactor() -> None:
    failing: Deferred[None] = Deferred()
    backend = _Backend(failing)
    reactor = MemoryReactor()
    service = BackendService(backend, reactor)  # type: ignore[arg-type]
    with capturedLogs() as events:
        service.startService()
        failing.errback(RuntimeError("database unreachable"))
    assert any("failed to start" in e.get("log_format", "") for e in events)
    assert len(reactor.whenRunningHooks) == 1
    hook, _, _ = reactor.whenRunningHooks[0]
    assert hook == reactor.stop


def test_backend_start_may_be_a_coroutine() -> None:
    started: list[bool] = []

    class AsyncBackend(_Backend):
        async def start(self) -> None:  # type: ignore[override]
            started.append(True)

    service = BackendService(AsyncBackend(None), MemoryReactor())  # type: ignore[arg-type]
    service.startService()
    assert started == [True]


@pytest.mark.parametrize("own_process", [False, True])
def test_what_lives_at_start_leaves_the_collectors_sight_in_our_own_process(
    own_process: bool,
) -> None:
    """twistd imapserv (own_process) puts the collector policy on once the backend is up
    (what is alive then is frozen) and takes it off with the service; an application
    embedding the service keeps its objects in the collector's sight and its gc hooks."""
    gc.unfreeze()
    hooks = list(gc.callbacks)
    starting: Deferred[None] = Deferred()
    service = BackendService(_Backend(starting), MemoryReactorClock(), own_process=own_process)  # type: ignore[arg-type]
    try:
        service.startService()
        assert gc.get_freeze_count() == 0  # not before the backend is up
        starting.callback(None)
        assert (gc.get_freeze_count() > 0) is own_process
        assert (len(gc.callbacks) == len(hooks) + 1) is own_process
        assert (service.collector is not None) is own_process
        service.stopService()
        assert gc.callbacks == hooks
    finally:
        if service.collector is not None:
            service.collector.stop()
        gc.unfreeze()
