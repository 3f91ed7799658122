"""A tiny run of the benchmark, so ``python -m bench.run`` keeps working as the server
changes (the figures themselves are not checked here)."""

from __future__ import annotations

import pytest

from bench import qresync, run
from bench.harness import ServerProcess


def arguments(server: ServerProcess, *extra: str) -> list[str]:
    """The server's backend and its options as a bench's arguments, then ``extra``."""
    if server.backend.prepare is not None:
        pytest.skip("the benchmark starts plain backends only")
    argv = ["--backend", server.backend.name, *extra]
    for key, value in server.backend.options.items():
        argv += ["--backend-option", f"{key}={value}"]
    return argv


def test_bench_smoke(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    argv = arguments(server, "--messages", "40", "--connections", "5", "--idle-rounds", "5")
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    for operation in ("APPEND x40", "FETCH 1:* (BODYSTRUCTURE)", "IDLE latency", "memory per"):
        assert operation in out, out


def test_qresync_bench_smoke(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    argv = arguments(server, "--messages", "30", "--changes", "10", "--rounds", "1")
    assert qresync.main(argv) == 0
    out = capsys.readouterr().out
    for plan in ("QRESYNC: ENABLE", "CONDSTORE: SELECT", "plain: SELECT"):
        assert plan in out, out
