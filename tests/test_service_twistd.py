"""``twistd imapserv`` as an operator runs it: zero configuration, logins, installs, plugins."""

from __future__ import annotations

import hashlib
import imaplib
import os
import queue
import re
import shutil
import signal
import site
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_service_plugins import write_backend_plugin

REPO = Path(__file__).resolve().parent.parent
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
LOOPBACK_ANY_PORT = ["--imap", "tcp:0:interface=127.0.0.1", "--imaps", "ssl:0:interface=127.0.0.1"]
PASSWORD = "correct horse battery staple"
STOPPED = (0, -signal.SIGTERM)  # twistd ends by re-raising the signal that stopped it


def source_env(*first: Path) -> dict[str, str]:
    """Run from this checkout (``first`` ahead of it on the path), unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([*map(str, first), str(REPO)])
    return env


def run(
    command: list[str], cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=check
    )


def twistd(
    args: list[str], cwd: Path, env: dict[str, str], python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """``twistd ARGS`` run to its end (for --help and for starts that must fail)."""
    return run([python, "-c", TWISTD, *args], cwd, env, check=False)


class Twistd:
    """A ``twistd -n --pidfile= imapserv ...`` subprocess whose log is read as it comes."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str], python: str = sys.executable
    ) -> None:
        command = [python, "-c", TWISTD, "-n", "--pidfile=", "imapserv", *args]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._finished = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first log line (past or future) matching ``pattern``."""
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._finished = True
                raise AssertionError(f"twistd exited waiting for {pattern!r}:\n{self.log}")
            self.lines.append(line)
            if match := regex.search(line):
                return match
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.log}")

    def listening(self) -> dict[str, int]:
        """Label ('IMAP'/'IMAPS') to port, from the startup log."""
        ports = {}
        for label in ("IMAP", "IMAPS"):
            ports[label] = int(self.wait_for(rf"\] {label} listening on 127\.0\.0\.1:(\d+)")[1])
        return ports

    def stop(self) -> int:
        """SIGTERM (SIGKILL if it lingers); the exit status, the whole log collected."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(20)
        while not self._finished:
            line = self._queue.get(timeout=10)
            if line is None:
                self._finished = True
            else:
                self.lines.append(line)
        return code


@pytest.fixture
def servers() -> Iterator[list[Twistd]]:
    started: list[Twistd] = []
    yield started
    for server in started:
        server.stop()


def add_user(data_dir: Path, name: str, cwd: Path, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "mailserv", "user", "add", name, "--password-stdin"]
    subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        input=PASSWORD + "\n",
        text=True,
        cwd=cwd,
        env=env,
        check=True,
        timeout=60,
    )


def ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_zero_config_start(tmp_path: Path, servers: list[Twistd]) -> None:
    """Nothing but ports: data dir, certificate and passwd-file appear; the log says where."""
    server = Twistd(LOOPBACK_ANY_PORT, tmp_path, source_env())
    servers.append(server)
    ports = server.listening()
    data = tmp_path / "imapserv-data"
    assert (data / "tls" / "cert.pem").is_file()
    assert (data / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (data / "passwd").stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700
    fingerprint = server.wait_for(r"SHA-256 fingerprint ([0-9A-F:]{95})")[1]
    assert str(data) in server.log
    # The certificate served on the IMAPS port is the one the log names.
    with socket.create_connection(("127.0.0.1", ports["IMAPS"]), timeout=10) as raw:
        context = ssl.create_default_context(cafile=data / "tls" / "cert.pem")
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
    assert hashlib.sha256(der).hexdigest().upper() == fingerprint.replace(":", "")
    assert server.stop() in STOPPED
    assert "Server Shut Down" in server.log


def test_login_on_every_listener(tmp_path: Path, servers: list[Twistd]) -> None:
    env = source_env()
    data = tmp_path / "imapserv-data"
    server = Twistd(LOOPBACK_ANY_PORT, tmp_path, env)
    servers.append(server)
    ports = server.listening()
    add_user(data, "alice", tmp_path, env)  # the running server sees the new user
    context = ssl.create_default_context(cafile=data / "tls" / "cert.pem")

    with imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=30) as plain:
        assert "STARTTLS" in plain.capabilities
        plain.starttls(context)
        assert plain.login("alice", PASSWORD)[0] == "OK"
        assert plain.select("INBOX")[0] == "OK"
        plain.logout()

    with imaplib.IMAP4_SSL("127.0.0.1", ports["IMAPS"], ssl_context=context, timeout=30) as imaps:
        assert imaps.login("alice", PASSWORD)[0] == "OK"
        imaps.logout()

    imaps = imaplib.IMAP4_SSL("127.0.0.1", ports["IMAPS"], ssl_context=context, timeout=30)
    with imaps, pytest.raises(imaplib.IMAP4.error):
        imaps.login("alice", "wrong password")


@pytest.mark.skipif(not ports_free(1143, 1993), reason="1143 or 1993 is taken on this machine")
def test_truly_no_options(tmp_path: Path, servers: list[Twistd]) -> None:
    server = Twistd([], tmp_path, source_env())
    servers.append(server)
    assert server.listening() == {"IMAP": 1143, "IMAPS": 1993}
    with imaplib.IMAP4("127.0.0.1", 1143, timeout=30) as client:
        assert client.welcome.startswith(b"* OK")
    assert server.stop() in STOPPED


def test_configuration_error_is_one_line(tmp_path: Path) -> None:
    result = twistd(["-n", "--pidfile=", "imapserv", "--backend", "nope"], tmp_path, source_env())
    assert result.returncode == 1
    assert "twistd imapserv: unknown backend 'nope' (available: maildir, memory" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--imap", f"tcp:{port}:interface=127.0.0.1", "--no-imaps"]
        result = twistd(["-n", "--pidfile=", "imapserv", *args], tmp_path, source_env())
    assert result.returncode != 0
    assert f"Couldn't listen on 127.0.0.1:{port}" in result.stdout + result.stderr


def test_third_party_backend_on_pythonpath(tmp_path: Path, servers: list[Twistd]) -> None:
    write_backend_plugin(tmp_path / "extra", "pathstore")
    args = ["--backend", "pathstore", "--backend-option", "greeting=hi", *LOOPBACK_ANY_PORT]
    server = Twistd(args, tmp_path, source_env(tmp_path / "extra"))
    servers.append(server)
    server.listening()
    assert "Backend pathstore" in server.log


# -- installation into a fresh virtualenv ------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv (system packages visible, so no network) with mailserv pip-installed."""
    root = tmp_path_factory.mktemp("venv")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "dropin.cache", "*.egg-info")
    for name in ("mailserv", "twisted"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.rst"):
        shutil.copy(REPO / name, source / name)
    env = root / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True, timeout=120
    )
    # --system-site-packages shows the base interpreter's packages; when the tests run in a
    # virtualenv themselves (the usual place), what they installed (Twisted, wheel...) is in
    # that one's site-packages instead: make those visible too.
    outer = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (site_packages(env) / "outer-environment.pth").write_text("\n".join(outer) + "\n")
    pip_install(env, source)
    return env


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pip_install(env: Path, project: Path) -> None:
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--no-build-isolation", "--no-index", str(project)],
        check=True,
        cwd=project,
        env=clean_env(),
        timeout=300,
    )


def site_packages(env: Path) -> Path:
    (found,) = env.glob("lib/python*/site-packages")
    return found


def test_installed_layout(venv: Path) -> None:
    site = site_packages(venv)
    assert (site / "twisted" / "plugins" / "mailserv_imapserv.py").is_file()
    assert not (site / "twisted" / "plugins" / "__init__.py").exists()
    assert not (site / "twisted" / "__init__.py").exists()
    assert (site / "mailserv" / "plugins" / "builtin.py").is_file()
    assert not list(site.glob("mailserv/**/dropin.cache"))
    assert (venv / "bin" / "mailserv").is_file()


def test_twistd_help_lists_imapserv(venv: Path, tmp_path: Path) -> None:
    result = twistd(["--help"], tmp_path, clean_env(), python=str(venv / "bin" / "python"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s+imapserv\s+An IMAP4rev1 server", result.stdout, re.M), result.stdout


def test_third_party_distribution(venv: Path, tmp_path: Path, servers: list[Twistd]) -> None:
    """A separately installed distribution that only drops a module into mailserv/plugins."""
    project = tmp_path / "thirdparty-dist"
    write_backend_plugin(project, "distributed")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "mailserv-distributed-store"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["mailserv.plugins"]\n'
    )
    pip_install(venv, project)
    site = site_packages(venv)
    assert (site / "mailserv" / "plugins" / "distributed_store.py").is_file()

    python = str(venv / "bin" / "python")
    listing = twistd(["imapserv", "--help-backends"], tmp_path, clean_env(), python=python)
    assert "distributed: Throwaway test backend" in listing.stdout
    assert "greeting: Accepted and ignored." in listing.stdout
    assert "memory:" in listing.stdout

    args = ["--backend", "distributed", *LOOPBACK_ANY_PORT]
    server = Twistd(args, tmp_path, clean_env(), python=python)
    servers.append(server)
    server.listening()
    assert "Backend distributed" in server.log
    assert (
        str(site / "mailserv")
        in run(
            [python, "-c", "import mailserv.tap; print(mailserv.tap.__file__)"],
            tmp_path,
            clean_env(),
        ).stdout
    )
