"""PREVIEW (RFC 8970): the text chosen and cut (units), FETCH PREVIEW and PREVIEW (LAZY) over
real sockets on every backend, and a store written before previews were kept."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import fields
from pathlib import Path

import pytest
from imapserver import Connector, new_user

from bench import messages
from bench.harness import BackendSpec, RawClient, ServerProcess, fetches
from mailserv.backends.maildir.index import FILENAME as INDEX
from mailserv.message import store
from mailserv.message.info import MessageInfo
from mailserv.message.lazyinfo import LazyInfo
from mailserv.message.parse import parse_message
from mailserv.message.preview import LENGTH, READ_LIMIT, make_preview


def mime(*parts: tuple[str, str, bytes], kind: str = "mixed") -> bytes:
    """A multipart message of ``(content type, transfer encoding, body)`` parts."""
    out = [
        b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/" + kind.encode() + b'; boundary="b"\r\n\r\n'
    ]
    for ctype, encoding, body in parts:
        out.append(
            b"--b\r\nContent-Type: " + ctype.encode() + b"\r\n"
            b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body + b"\r\n"
        )
    return b"".join(out) + b"--b--\r\n"


def preview(raw: bytes) -> str | None:
    return parse_message(raw).preview


# -- what the preview is ---------------------------------------------------------------------


def test_plain_text_collapsed_and_quotes_left_out() -> None:
    body = "Hi Bob,\n\n> what about lunch?\n>> earlier\nNoon   works.\n\tAlice\n"
    raw = messages.plain(body=body)
    assert preview(raw) == "Hi Bob, Noon works. Alice"


def test_alternative_takes_the_plain_part_even_after_the_html() -> None:
    raw = mime(
        ("text/html", "7bit", b"<p>HTML version</p>"),
        ("text/plain", "quoted-printable", b"Plain =C3=A9t=C3=A9 version=\r\n!"),
        kind="alternative",
    )
    assert preview(raw) == "Plain été version!"  # no charset: UTF-8 is tried first
    raw = raw.replace(b"Content-Type: text/plain", b"Content-Type: text/plain; charset=latin-1")
    assert preview(raw) == "Plain Ã©tÃ© version!"


def test_html_only_loses_markup_scripts_and_entities() -> None:
    html = (
        b"<html><head><title>T</title><style>p {color: red}</style></head><body>"
        b"<script>alert(1)</script><p>Fish &amp; chips<br>at <b>noon</b></p>"
        b"<!-- c --></body></html>"
    )
    raw = mime(("text/html", "base64", base64.encodebytes(html)))
    assert preview(raw) == "Fish & chips at noon"


def test_attachment_before_the_text_is_skipped() -> None:
    raw = mime(
        ("application/pdf", "base64", base64.encodebytes(b"%PDF-1.4 binary")),
        ("text/plain", "7bit", b"See the attached file."),
    )
    assert preview(raw) == "See the attached file."


def test_no_text_part_gives_an_empty_preview() -> None:
    raw = mime(("image/png", "base64", base64.encodebytes(b"\x89PNG....")))
    assert preview(raw) == ""


def test_cut_to_length_and_only_the_start_of_a_huge_part_is_read() -> None:
    raw = messages.plain(body="word " * 200_000)
    text = preview(raw)
    assert text is not None and len(text) == LENGTH - 1 and text.endswith("word")
    info = parse_message(raw)
    tail_only = raw[: info.root.body_start] + b" " * READ_LIMIT + b"hidden words"
    assert make_preview(tail_only, parse_message(tail_only)) == ""


def test_records_keep_the_preview_and_older_ones_load_without() -> None:
    info = parse_message(messages.plain(body="Kept text"))
    assert store.loads(store.dumps(info)) == info
    assert info.preview == "Kept text"
    old = store.NO_PREVIEW_MARKER + store.dumps(info)[len(store.MARKER) :].rsplit(b",", 3)[0]
    assert store.loads(old + b"]").preview is None
    with pytest.raises(store.UnknownFormat):
        store.loads(store.MARKER + store.dumps(info)[len(store.MARKER) : -1] + b",7]")


def test_the_sql_backends_lazy_records_read_every_field() -> None:
    info = parse_message(messages.plain(body="Lazy"))
    lazy = LazyInfo(store.dumps(info))
    assert {f.name: getattr(lazy, f.name) for f in fields(MessageInfo)} == {
        f.name: getattr(info, f.name) for f in fields(MessageInfo)
    }


# -- over IMAP, every backend --------------------------------------------------------------


def previews(client: RawClient, command: str) -> dict[int, object]:
    response = client.command(command)
    assert response.ok, response.line
    return {seq: items.get("PREVIEW") for seq, items in fetches(response).items()}


def test_fetch_preview_every_form(connect: Connector) -> None:
    connect.append(
        [
            messages.plain(body="First message text"),
            messages.plain(body="Zweite Nachricht: grüße", charset="utf-8"),
            mime(("image/png", "base64", b"AAAA")),
        ]
    )
    client = connect.selected()
    assert b"PREVIEW" in client.command("CAPABILITY").data("CAPABILITY")[0].split()
    expected = {1: b"First message text", 2: "Zweite Nachricht: grüße".encode(), 3: b""}
    assert previews(client, "FETCH 1:3 PREVIEW") == expected
    assert previews(client, "FETCH 1:3 (PREVIEW (LAZY))") == expected
    assert previews(client, "FETCH 1:3 PREVIEW (LAZY)") == expected
    assert previews(client, "UID FETCH 1:* (FLAGS PREVIEW (lazy) UID)") == expected
    assert previews(client, "FETCH 2 (PREVIEW (LAZY)) (CHANGEDSINCE 0)") == {2: expected[2]}
    response = client.command("FETCH 1 (PREVIEW)")
    assert b"FLAGS" not in response.untagged[0]  # a preview does not set \Seen


def test_imapclient_fetches_previews(connect: Connector) -> None:
    connect.append([messages.plain(body="Through imapclient")])
    imap = connect.imapclient()
    imap.select_folder("INBOX")
    ((_, data),) = imap.fetch("1", ["PREVIEW"]).items()
    assert data[b"PREVIEW"] == b"Through imapclient"


@pytest.mark.one_backend  # the engine refuses these before any backend is asked
def test_bad_preview_requests(connect: Connector) -> None:
    connect.append([messages.plain()])
    client = connect.selected()
    for items in ["PREVIEW[1]", "PREVIEW<0.10>", "PREVIEW (FOO)", "PREVIEW ()", "(PREVIEW (L x))"]:
        response = client.command(f"FETCH 1 {items}")
        assert response.status == "BAD", (items, response.line)
    assert client.command("NOOP").ok


# -- a store from before previews were kept --------------------------------------------------


def test_a_store_without_previews_computes_them_when_asked(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", BackendSpec("maildir"))
    server.start()
    try:
        user = new_user()
        server.add_user(user.name, user.password)
        client = RawClient.connect(server.imap_port)
        client.login(user.name, user.password)
        assert client.command_with_literal("APPEND INBOX ", messages.plain(body="Old mail")).ok
        client.close()
        server.stop()
        index = server.data_dir / "mail" / user.name / "Maildir" / INDEX
        with sqlite3.connect(index) as db:
            ((record,),) = db.execute("SELECT info FROM message").fetchall()
            info = store.loads(record)
            old = store.NO_PREVIEW_MARKER + store.dumps(info)[len(store.MARKER) :]
            old = old.rsplit(b",", 3)[0] + b"]"  # no preview, EMAILID, THREADID
            db.execute("UPDATE message SET info = ?", (old,))
        db.close()
        server.start()
        client = RawClient.connect(server.imap_port, timeout=60)  # a loaded machine's restart
        client.login(user.name, user.password)
        assert client.command("SELECT INBOX").ok
        assert previews(client, "FETCH 1 (PREVIEW (LAZY))") == {1: None}
        assert previews(client, "FETCH 1 PREVIEW") == {1: b"Old mail"}
        client.close()
    finally:
        server.stop()
