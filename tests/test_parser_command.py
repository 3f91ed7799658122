"""parse_command: tag, command name, UID prefix and the argument grammar."""

from __future__ import annotations

import pytest

from mailserv.syntax.errors import ParseError
from mailserv.syntax.lexer import MAX_DEPTH, MAX_TOKENS, parse_command, parse_tokens
from mailserv.syntax.tokens import Atom, Command, ParenList, String


def args(raw: bytes) -> tuple[object, ...]:
    return parse_command(raw).args


def error(raw: bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_command(raw)
    return info.value


# -- tag and name -----------------------------------------------------------------------------


def test_simple_command() -> None:
    assert parse_command(b"a1 noop") == Command("a1", "NOOP", ())


def test_tag_may_hold_astring_chars() -> None:
    assert parse_command(b"A]1.x-y NOOP").tag == "A]1.x-y"
    assert parse_command(b"[tag] NOOP").tag == "[tag]"


@pytest.mark.parametrize(
    "raw", [b"* NOOP", b"+ NOOP", b"a+ NOOP", b" NOOP", b"a(b NOOP", b"a{ NOOP", b"\xe9 NOOP"]
)
def test_invalid_tags(raw: bytes) -> None:
    exc = error(raw)
    assert exc.tag is None and exc.text == "Invalid tag"


def test_empty_line() -> None:
    assert error(b"").text == "Empty command line"
    assert error(b"   ").tag is None


def test_missing_command_name() -> None:
    exc = error(b"a1")
    assert (exc.tag, exc.text) == ("a1", "Missing command name")
    assert error(b"a1 ").text == "Missing command name"


def test_invalid_command_name() -> None:
    assert error(b"a1 NO(OP").text == "Invalid command name"
    assert error(b'a1 "NOOP"').tag == "a1"
    assert error(b"a1  NOOP").text == "Invalid command name"


def test_uid_prefix() -> None:
    command = parse_command(b"x uid Fetch 1:* FLAGS")
    assert (command.name, command.uid) == ("FETCH", True)
    assert command.args == (Atom("1:*"), Atom("FLAGS"))
    for name in ("COPY", "MOVE", "SEARCH", "STORE", "EXPUNGE"):
        assert parse_command(b"x UID " + name.encode()).name == name


def test_uid_errors() -> None:
    assert error(b"x UID").text == "UID needs a command"
    assert error(b"x UID ").text == "UID needs a command"
    assert error(b"x UID LIST").text == "UID LIST is not a command"
    assert error(b"x UID UID FETCH").tag == "x"


# -- atoms ------------------------------------------------------------------------------------


def test_atoms_keep_case_and_specials() -> None:
    assert args(b"a X INBOX \\Seen 1:*,3 % foo* ]x NIL") == (
        Atom("INBOX"),
        Atom("\\Seen"),
        Atom("1:*,3"),
        Atom("%"),
        Atom("foo*"),
        Atom("]x"),
        Atom("NIL"),
    )


def test_bracket_atom_with_spaces_parens_and_quotes() -> None:
    assert args(b'a FETCH 1 BODY.PEEK[HEADER.FIELDS (FROM "TO")]<0.100>') == (
        Atom("1"),
        Atom('BODY.PEEK[HEADER.FIELDS (FROM "TO")]<0.100>'),
    )


def test_bracket_atom_in_list() -> None:
    assert args(b"a FETCH 1 (FLAGS BODY[1.2.MIME] BODY[] UID)") == (
        Atom("1"),
        ParenList((Atom("FLAGS"), Atom("BODY[1.2.MIME]"), Atom("BODY[]"), Atom("UID"))),
    )


def test_gmail_style_mailbox_atom() -> None:
    assert args(b"a SELECT [Gmail]/Sent") == (Atom("[Gmail]/Sent"),)


def test_unmatched_bracket_is_plain_atom_char() -> None:
    assert args(b"a X foo[bar baz") == (Atom("foo[bar"), Atom("baz"))
    assert args(b"a X a[b[c]]") == (Atom("a[b[c]]"),)


def test_utf8_atom_accepted_invalid_rejected() -> None:
    assert args("a SELECT Entwürfe".encode()) == (Atom("Entwürfe"),)
    assert error(b"a SELECT \xff\xfe").text == "Invalid UTF-8 in atom"


# -- strings ----------------------------------------------------------------------------------


def test_quoted_strings() -> None:
    assert args(b'a LOGIN "user name" "p\\"w\\\\d" ""') == (
        String(b"user name"),
        String(b'p"w\\d'),
        String(b""),
    )


def test_quoted_allows_8bit_and_brackets() -> None:
    assert args('a X "Grüße (x) [y] {3}"'.encode()) == (String("Grüße (x) [y] {3}".encode()),)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b'a X "abc', "Unterminated quoted string"),
        (b'a X "a\\x"', 'Invalid escape in quoted string (only \\\\ and \\" are allowed)'),
        (b'a X "a\x00b"', "NUL byte in quoted string"),
        (b'a X "a\rb"', "Unterminated quoted string"),
        (b'a X "a\nb"', "Unterminated quoted string"),
    ],
)
def test_quoted_errors(raw: bytes, text: str) -> None:
    assert error(raw).text == text


def test_literals() -> None:
    assert args(b'a LOGIN {3}\r\nf"o {4+}\r\n\r\n\x00x ~{2}\r\n\xff\x00 {0}\r\n') == (
        String(b'f"o', literal=True),
        String(b"\r\n\x00x", literal=True),
        String(b"\xff\x00", literal=True, literal8=True),
        String(b"", literal=True),
    )


def test_literal_with_bare_lf_header() -> None:
    assert args(b"a LOGIN {1}\nx y") == (String(b"x", literal=True), Atom("y"))


def test_literal_leading_zeros() -> None:
    assert args(b"a X {003}\r\nabc") == (String(b"abc", literal=True),)


def test_literal_in_list() -> None:
    assert args(b"a X (a {1}\r\nb c)") == (
        ParenList((Atom("a"), String(b"b", literal=True), Atom("c"))),
    )


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a X {5}", "Literal header without data"),
        (b"a X {5}\r\nabc", "Literal data truncated"),
        (b"a X {" + b"9" * 30 + b"}\r\nabc", "Literal data truncated"),
        (b"a X {5} y", "Invalid literal (a literal header {n} must end the line)"),
        (b"a X {x}\r\n", "Invalid literal (a literal header {n} must end the line)"),
        (b"a X {3}\r\nabcd", "Missing space between arguments"),
        (b"a X foo{3}\r\nabc", "Missing space between arguments"),
    ],
)
def test_literal_errors(raw: bytes, text: str) -> None:
    assert error(raw).text == text


# -- lists and spacing ------------------------------------------------------------------------


def test_nested_lists() -> None:
    assert args(b'a X () (a (b "c") ()) d') == (
        ParenList(()),
        ParenList((Atom("a"), ParenList((Atom("b"), String(b"c"))), ParenList(()))),
        Atom("d"),
    )


def test_depth_limit() -> None:
    ok = b"a X " + b"(" * MAX_DEPTH + b")" * MAX_DEPTH
    assert isinstance(args(ok)[0], ParenList)
    deep = b"a X " + b"(" * (MAX_DEPTH + 1) + b")" * (MAX_DEPTH + 1)
    assert error(deep).text == "Parenthesised lists nested too deeply"
    flat_deep = b"a X " + b"(" * MAX_DEPTH + b"(a b)" + b")" * MAX_DEPTH
    assert error(flat_deep).text == "Parenthesised lists nested too deeply"


def test_token_limit() -> None:
    assert len(args(b"a X" + b" a" * MAX_TOKENS)) == MAX_TOKENS
    assert error(b"a X" + b" a" * (MAX_TOKENS + 1)).text == "Too many arguments"
    assert error(b"a X (" + b"a " * MAX_TOKENS + b"a)").text == "Too many arguments"
    assert error(b"a X" + b' "a"' * (MAX_TOKENS + 1)).text == "Too many arguments"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a X (a", "Missing ')'"),
        (b"a X ((a) b", "Missing ')'"),
        (b"a X a)", "Unexpected ')'"),
        (b"a X  a", "Extra space between arguments"),
        (b"a X a  b", "Extra space between arguments"),
        (b"a X ( a)", "Unexpected space after '('"),
        (b"a X ( )", "Unexpected space after '('"),
        (b"a X (a )", "Unexpected space before ')'"),
        (b"a X (a  b)", "Extra space between arguments"),
        (b'a X a"b"', "Missing space between arguments"),
        (b"a X (a)(b)", "Missing space between arguments"),
        (b"a X (a)b", "Missing space between arguments"),
        (b'a X "a"b', "Missing space between arguments"),
        (b"a X a\tb", "Invalid character 0x09"),
        (b"a X a\x00", "NUL byte in command"),
        (b"a X a\rb", "Unexpected line break"),
        (b"a X \x7f", "Invalid character 0x7f"),
    ],
)
def test_syntax_errors(raw: bytes, text: str) -> None:
    exc = error(raw)
    assert (exc.tag, exc.text) == ("a", text)


def test_trailing_spaces_tolerated() -> None:
    assert args(b"a X a ") == (Atom("a"),)
    assert args(b"a X (a)   ") == (ParenList((Atom("a"),)),)
    assert parse_command(b"a NOOP  ").args == ()


def test_parse_error_is_value_error() -> None:
    assert issubclass(ParseError, ValueError)


def test_parse_tokens() -> None:
    assert parse_tokens(b'(FROM "TO")') == (ParenList((Atom("FROM"), String(b"TO"))),)
    assert parse_tokens(b"") == ()
    with pytest.raises(ParseError):
        parse_tokens(b" a")


# -- long lines (speed is measured by bench/, not here) ---------------------------------------


def test_long_lines_parse() -> None:
    sequence = ",".join(str(n) for n in range(1, 20000, 2)).encode()[:65000].rstrip(b",")
    assert parse_command(b"a UID FETCH " + sequence + b" (FLAGS UID)").uid
    assert parse_command(b'a LOGIN "' + b"x" * 65000 + b'" y').name == "LOGIN"
    assert len(parse_command(b"a X " + b"[" * 65000).args) == 1
    assert len(parse_command(b"a SEARCH" + b" a" * 32000).args) == 32000
    assert len(parse_command(b"a SEARCH" + b' "a"' * 16000).args) == 16000
    assert len(parse_command(b"a SEARCH" + b" (a)" * 16000).args) == 16000
