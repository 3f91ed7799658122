"""A tiny run of the benchmark, so ``python -m bench.run`` keeps working as the server
changes (the figures themselves are not checked here)."""

from __future__ import annotations

import pytest

from bench import qresync, run
from bench.harness import ServerProcess


def test_bench_smoke(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    if server.backend.prepare is not None:
        pytest.skip("the benchmark starts plain backends only")
    argv = ["--backend", server.backend.name, "--messages", "40", "--connections", "5"]
    argv += ["--idle-rounds", "5"]
    for key, value in server.backend.options.items():
        argv += ["--backend-option", f"{key}={value}"]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    for operation in ("APPEND x40", "FETCH 1:* (BODYSTRUCTURE)", "IDLE latency", "memory per"):
        assert operation in out, out


def test_qresync_bench_smoke(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    if server.backend.prepare is not None:
        pytest.skip("the benchmark starts plain backends only")
    argv = ["--backend", server.backend.name, "--messages", "30", "--changes", "10"]
    argv += ["--rounds", "1"]
    for key, value in server.backend.options.items():
        argv += ["--backend-option", f"{key}={value}"]
    assert qresync.main(argv) == 0
    out = capsys.readouterr().out
    for plan in ("QRESYNC: ENABLE", "CONDSTORE: SELECT", "plain: SELECT"):
        assert plan in out, out
