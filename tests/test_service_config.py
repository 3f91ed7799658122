"""mailserv.config: defaults, TOML file, command line, and the errors an operator sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailserv.config import (
    DEFAULT_IMAP,
    DEFAULT_IMAPS,
    Config,
    ConfigError,
    load_config,
    parse_assignment,
    parse_limit,
)
from mailserv.imap.settings import ServerSettings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mailserv.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults() -> None:
    config = load_config({})
    assert config == Config()
    assert config.data_dir == "imapserv-data"
    assert config.imap == DEFAULT_IMAP == ("tcp:1143:interface=127.0.0.1",)
    assert config.imaps == DEFAULT_IMAPS == ("ssl:1993:interface=127.0.0.1",)
    assert config.backend == "maildir"
    assert dict(config.backend_options) == {}
    assert config.settings == ServerSettings()
    assert config.passwd_path == os.path.join("imapserv-data", "passwd")
    assert config.tls_cert is None and config.tls_key is None


def test_file_then_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
data-dir = "/srv/mail"
imap = ["tcp:143", "tcp6:143"]
imaps = ["ssl:993"]
backend = "memory"
passwd-file = "/etc/mailserv/passwd"
allow-plaintext-auth = true

[backend-option]
path = "/var/mail"
workers = 4
sync = false

[limits]
max_line = 1000
idle_timeout = 60
""",
    )
    config = load_config(
        {
            "imap": ["tcp:1143"],
            "backend-option": {"workers": "8"},
            "limits": {"max_pipelined": 5, "max_line": 2000},
        },
        path,
    )
    assert config.data_dir == "/srv/mail"
    assert config.imap == ("tcp:1143",)  # a list given later replaces the earlier one
    assert config.imaps == ("ssl:993",)
    assert config.passwd_path == "/etc/mailserv/passwd"
    # tables merge key by key, the command line winning
    assert dict(config.backend_options) == {"path": "/var/mail", "workers": "8", "sync": "false"}
    assert config.settings.max_line == 2000
    assert config.settings.max_pipelined == 5
    assert config.settings.idle_timeout == 60.0
    assert isinstance(config.settings.idle_timeout, float)
    assert config.settings.allow_plaintext_auth is True


def test_relative_paths_in_a_file_are_relative_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, 'data-dir = "data"\ntls-cert = "c.pem"\ntls-key = "k.pem"\n')
    config = load_config({"passwd-file": "users"}, path)
    assert config.data_dir == str(tmp_path / "data")
    assert config.tls_cert == str(tmp_path / "c.pem")
    assert config.tls_key == str(tmp_path / "k.pem")
    assert config.passwd_file == "users"  # the command line keeps the working directory


def test_no_imap_and_later_layers(tmp_path: Path) -> None:
    assert load_config({"no-imap": True}).imap == ()
    assert load_config({"no-imaps": True}).imaps == ()
    assert load_config({"no-imap": False}).imap == DEFAULT_IMAP
    path = write(tmp_path, "no-imap = true\nimaps = []\n")
    assert load_config({}, path).imap == ()
    assert load_config({}, path).imaps == ()
    assert load_config({"imap": ["tcp:1"]}, path).imap == ("tcp:1",)
    with pytest.raises(ConfigError, match="imap and no-imap together"):
        load_config({"imap": ["tcp:1"], "no-imap": True})


def test_direct_construction_is_frozen_too() -> None:
    options = {"a": "b"}
    config = Config(imap=["tcp:1"], backend_options=options)  # type: ignore[arg-type]
    options["a"] = "changed"
    assert config.imap == ("tcp:1",)
    assert dict(config.backend_options) == {"a": "b"}


def test_frozen() -> None:
    config = load_config({"backend-option": {"a": "b"}})
    with pytest.raises(AttributeError):
        config.backend = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.backend_options["a"] = "c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('imapp = ["tcp:1"]', "unknown key 'imapp'"),
        ("config = 'other.toml'", "unknown key 'config'"),
        ("[limits]\nmax_lines = 5", "unknown limit 'max_lines'"),
        ('[limits]\nmax_line = "5"', "limit max_line must be a whole number"),
        ("[limits]\nmax_line = 5.5", "must be a whole number"),
        ("[limits]\nmax_line = true", "must be a whole number"),
        ('[limits]\nidle_timeout = "5"', "limit idle_timeout must be a number"),
        ("[limits]\nmax_line = -1", "finite number >= 0"),
        ("[limits]\nidle_timeout = inf", "finite number >= 0"),
        ("[limits]\nallow_plaintext_auth = 1", "must be true or false"),
        ('imap = "tcp:1"', "imap must be a list of endpoint strings"),
        ("imap = [1]", "imap must be a list of endpoint strings"),
        ("data-dir = 5", "data-dir must be a non-empty path"),
        ('backend = ""', "backend must be a backend name"),
        ("allow-plaintext-auth = 'yes'", "allow-plaintext-auth must be true or false"),
        ("backend-option = 5", "backend-option must be a table"),
        ("[backend-option]\nx = [1]", "backend-option.x must be a string"),
        ('tls-cert = "c.pem"', "tls-cert and tls-key go together"),
        ("imap = [", "invalid TOML"),
    ],
)
def test_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        load_config({}, path)
    if "together" not in message:
        assert path in str(info.value)  # the operator is told which file


def test_unknown_key_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, write(tmp_path, "port = 1"))
    for key in ("data-dir", "imap", "imaps", "backend-option", "limits", "passwd-file"):
        assert key in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config({}, str(tmp_path / "absent.toml"))


def test_parse_limit_types_by_field() -> None:
    assert parse_limit("max_line=100") == ("max_line", 100)
    assert parse_limit("idle_timeout=2.5") == ("idle_timeout", 2.5)
    assert parse_limit("idle_timeout=3") == ("idle_timeout", 3.0)
    assert parse_limit("allow_plaintext_auth=yes") == ("allow_plaintext_auth", True)
    assert parse_limit("allow_plaintext_auth=off") == ("allow_plaintext_auth", False)
    for bad, message in [
        ("max_line", "KEY=VALUE"),
        ("=5", "KEY=VALUE"),
        ("nope=1", "unknown limit 'nope'"),
        ("max_line=ten", "must be a whole number"),
        ("max_line=1.5", "must be a whole number"),
        ("idle_timeout=soon", "must be a number"),
        ("max_line=-3", ">= 0"),
        ("idle_timeout=nan", "finite"),
        ("allow_plaintext_auth=maybe", "true or false"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_limit(bad)


def test_parse_assignment_keeps_equals_in_value() -> None:
    assert parse_assignment("dsn=host=db port=5432", "--backend-option") == (
        "dsn",
        "host=db port=5432",
    )
    with pytest.raises(ConfigError, match="--backend-option expects KEY=VALUE"):
        parse_assignment("novalue", "--backend-option")
