"""``--metrics`` (Prometheus, scraped over HTTP and read with prometheus-client's parser) and
``--log-format json`` (one JSON object per line, one ``login`` event per attempt)."""

from __future__ import annotations

import json
import os
import smtplib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapserver import new_user  # type: ignore[import-not-found]  # tests/, on sys.path
from prometheus_client.parser import text_string_to_metric_families
from test_service_workers import SPECS, STARTUP, wait_for  # type: ignore[import-not-found]
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from bench.harness import BackendSpec, RawClient, ServerProcess, free_port, quote
from mailserv.config import ConfigError, load_config
from mailserv.events.metrics import PrometheusMetrics, SnapshotPages, WorkerMetrics

USER = new_user()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Metered:
    """A server with ``--metrics`` on a port of its own and JSON logs."""

    def __init__(self, server: ServerProcess, port: int) -> None:
        self.server = server
        self.port = port
        self.lmtp_port = 0

    def scrape(self) -> Samples:
        url = f"http://127.0.0.1:{self.port}/metrics"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    text = answer.read().decode("utf-8")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples

    def events(self) -> list[dict[str, object]]:
        lines = self.server.log_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def metered(tmp_path: Path, spec: BackendSpec, *args: str) -> tuple[Metered, ServerProcess]:
    """The server, not started, with USER in its passwd-file (no ``mailserv user add``
    process: a plain-text password is what a test needs)."""
    port = free_port()
    extra = ["--metrics", f"tcp:{port}:interface=127.0.0.1", "--log-format", "json", *args]
    server = ServerProcess(tmp_path / "data", spec, {"auth_failure_delay": 0.01}, extra)
    server.data_dir.mkdir(parents=True)
    passwd = server.data_dir / "passwd"
    passwd.write_text(f"{USER.name}:{{PLAIN}}{USER.password}::::::\n")
    passwd.chmod(0o600)
    return Metered(server, port), server


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (over the workers)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    lmtp = f"tcp:{free_port()}:interface=127.0.0.1"
    found, server = metered(
        tmp_path_factory.mktemp("metrics"), BackendSpec("memory"), "--lmtp", lmtp
    )
    found.lmtp_port = int(lmtp.split(":")[1])
    server.start()
    try:
        yield found
    finally:
        server.stop()


def signed_in(found: Metered, name: str, password: str) -> RawClient:
    client = RawClient.connect(found.server.imap_port, timeout=20)
    assert client.login(name, password).ok
    return client


def test_commands_logins_and_connections_are_counted(single: Metered) -> None:
    user = USER
    before = single.scrape()
    selected = signed_in(single, user.name, user.password)
    assert not selected.command("SELECT Nowhere").ok
    assert selected.command("SELECT INBOX").ok
    idle = signed_in(single, user.name, user.password)
    idle.send("i IDLE\r\n")
    assert idle.read_line().startswith(b"+")
    waiting = RawClient.connect(single.server.imap_port, timeout=20)
    assert not waiting.command(f"LOGIN {quote(user.name)} wrong").ok
    assert not waiting.command("FOO").ok  # unknown: answered, not counted by name
    after = single.scrape()

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    mech = "LOGIN-COMMAND"
    assert grew("mailserv_logins_total", mechanism=mech, result="ok") == 2
    assert grew("mailserv_logins_total", mechanism=mech, result="failed") == 1
    assert grew("mailserv_login_delay_seconds_count") == 1
    latency = "mailserv_command_duration_seconds_count"
    assert grew(latency, command="LOGIN", result="OK") == 2
    assert grew(latency, command="LOGIN", result="NO") == 1
    assert grew(latency, command="SELECT", result="OK") == 1
    assert grew(latency, command="SELECT", result="NO") == 1
    assert grew("mailserv_backend_errors_total", kind="MailboxNotFound") == 1
    assert total(after, latency, command="FOO") == 0
    gauge = "mailserv_connections"
    assert total(after, gauge, listener="imap", state="selected") == 1
    assert total(after, gauge, listener="imap", state="idle") == 1
    assert total(after, gauge, listener="imap", state="not_authenticated") == 1
    idle.send("DONE\r\n")
    for client in (selected, idle, waiting):
        client.close()


def test_deliveries_are_counted_by_result(single: Metered) -> None:
    before = single.scrape()
    message = b"From: a@example.org\r\nSubject: counted\r\n\r\nHello.\r\n"
    with smtplib.LMTP("127.0.0.1", single.lmtp_port, timeout=20) as lmtp:
        refused = lmtp.sendmail("a@example.org", [USER.name, "nobody-here"], message)
    assert list(refused) == ["nobody-here"]  # refused at RCPT: not a delivery
    after = single.scrape()
    name = "mailserv_deliveries_total"
    grew = total(after, name, result="delivered") - total(before, name, result="delivered")
    assert grew == 1
    assert total(after, name) - total(before, name) == 1


def test_imaps_connections_carry_their_listener(single: Metered) -> None:
    server = single.server
    tls = server.ssl_context()
    client = RawClient.connect(server.imaps_port, ssl_context=tls, server_hostname="localhost")
    try:
        samples = single.scrape()
        want = {"listener": "imaps", "state": "not_authenticated"}
        assert total(samples, "mailserv_connections", **want) == 1
    finally:
        client.close()


def test_one_json_login_event_per_attempt_and_never_the_password(single: Metered) -> None:
    user = USER
    seen = len(single.events())
    signed_in(single, user.name, user.password).close()
    wrong = RawClient.connect(single.server.imap_port, timeout=20)
    secret = "Not-The-Password-" + user.password
    wrong.send(f"a LOGIN {quote(user.name)} {quote(secret)}\r\n")
    assert not wrong.read_until_tagged("a").ok
    wrong.close()
    logins = [e for e in single.events()[seen:] if e.get("event") == "login"]
    assert [e["result"] for e in logins] == ["ok", "failed"]
    for event in logins:
        assert event["mechanism"] == "LOGIN-COMMAND"
        assert event["address"] == "127.0.0.1"
        assert event["log_level"]["name"] == "info"  # type: ignore[index]
        assert user.name in str(event["text"])
    text = single.server.log_text()
    assert user.password not in text and secret not in text


def test_workers_metrics_are_served_by_the_master(tmp_path: Path) -> None:
    found, server = metered(tmp_path, SPECS["maildir"], "--workers", "2")
    server.start()
    try:

        def accepting() -> set[object]:
            events = found.events()
            return {e.get("worker") for e in events if "IMAPS listening" in str(e["text"])} - {None}

        wait_for(lambda: accepting() == {1, 2}, STARTUP)  # every child's backend has started
        user = USER
        for _ in range(6):  # the kernel spreads them over the workers
            signed_in(found, user.name, user.password).close()
        samples = found.scrape()
        workers = {dict(ls)["worker"] for (n, ls) in samples if n == "mailserv_connections"}
        assert workers == {"1", "2"}
        ok = {"mechanism": "LOGIN-COMMAND", "result": "ok"}
        assert total(samples, "mailserv_logins_total", **ok) == 6
        logins = [e for e in found.events() if e.get("event") == "login"]
        assert len(logins) == 6
        assert {e["worker"] for e in logins} <= {1, 2}
    finally:
        server.stop()


def test_a_snapshot_larger_than_an_amp_value_comes_in_pages() -> None:
    """The master's side of a scrape against a child's pages, in one process: a registry
    whose snapshot needs several pages (random label values do not compress)."""
    child = PrometheusMetrics()
    for _ in range(3000):
        child.delivery(os.urandom(16).hex())
    pages = SnapshotPages(child.registry)
    assert pages.page(0)[1] > 1

    async def page(number: int) -> tuple[bytes, int]:
        return pages.page(number)

    master = WorkerMetrics(lambda: [("7", page)], Clock())
    Deferred.fromCoroutine(master.refresh())
    deliveries = [
        s for f in master.collect() for s in f.samples if s.name == "mailserv_deliveries_total"
    ]
    assert len(deliveries) == 3000 and {s.labels["worker"] for s in deliveries} == {"7"}


def test_metrics_and_log_format_options_are_checked() -> None:
    assert load_config({"metrics": "tcp:0", "log-format": "json"}).metrics == "tcp:0"
    with pytest.raises(ConfigError, match="log-format must be text or json"):
        load_config({"log-format": "xml"})
