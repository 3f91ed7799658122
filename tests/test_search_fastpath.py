"""SEARCH over 10,000 messages stays on the metadata fast path (bench/ measures the time)."""

from __future__ import annotations

from datetime import datetime, timedelta

from test_search_support import UTC, Ctx, meta, run, toks

from mailserv.imap.search.parse import parse_search

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "invoice",
    "meeting",
    "report",
    "Grüße",
    "lunch",
    "update",
]


def test_subject_and_from_over_10k_messages() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    metas = [
        meta(
            uid,
            {"\\Seen"} if uid % 3 else set(),
            internaldate=start + timedelta(hours=uid),
            subject=" ".join(WORDS[(uid * k) % len(WORDS)] for k in range(1, 9)) + f" #{uid}",
            from_=f'"User {uid % 97}" <user{uid % 97}@example.org>',
        )
        for uid in range(1, 10_001)
    ]
    ctx = Ctx([m.uid for m in metas])
    for items in (
        ("SUBJECT", b"invoice"),
        ("FROM", b"USER42@"),
        ("CHARSET", "UTF-8", "OR", "SUBJECT", "GR\xdcSSE".encode(), "FROM", b"user7"),
    ):
        program = parse_search(toks(*items))
        assert run(program, metas, ctx)
    assert ctx.loads == []
