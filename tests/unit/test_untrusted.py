"""Text and JSON from outside: neutralised before it is printed, read without crashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import RegistryError, UsageError
from tagkeeper.secret import Secret, check_credential
from tagkeeper.untrusted import NotJson, loads, neutralise


@given(st.text())
def test_neutralised_text_is_one_line_that_cannot_drive_a_terminal_or_a_ci_log(
    text: str,
) -> None:
    out = neutralise(text, limit=None)
    assert "\n" not in out
    assert "\r" not in out
    assert all(ch.isprintable() for ch in out)
    assert "::" not in out
    assert "##[" not in out


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_stays_readable(text: str) -> None:
    out = neutralise(text, limit=None)
    if "\\" not in text and "::" not in text and "##[" not in text:
        assert out == text


def test_escapes_are_readable_and_long_text_is_cut() -> None:
    assert neutralise("a\nb\x1b[31mc\u202ed") == "a\\nb\\x1b[31mc\\u202ed"
    assert neutralise("::error::x") == ":\\x3aerror:\\x3ax"
    assert neutralise("##[warning]x") == "#\\x23[warning]x"
    assert neutralise("x" * 50, limit=10) == "x" * 10 + "... (40 more characters)"


def test_json_from_outside_never_crashes_the_run() -> None:
    assert loads(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(NotJson, match="nested too deeply"):
        loads(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(NotJson, match="not JSON"):
        loads(b"<html>")
    with pytest.raises(NotJson):
        loads(b"\xff\xfe")


@pytest.mark.parametrize(
    ("value", "kind", "ok"),
    [
        ("ghp_abcDEF123", "token", True),
        ("eyJhbGciOi.J9.x-_+/=", "token", True),
        ("ghp_ab\ncd", "token", False),
        ("ghp ab", "token", False),
        ("ghp_\x00", "token", False),
        ("tok\u00e9n", "token", False),
        ("pass word é", "password", True),
        ("pass\rword", "password", False),
        ("pass\u2028word", "password", False),
    ],
)
def test_credentials_are_checked_at_the_door(value: str, kind: str, ok: bool) -> None:
    secret = Secret(value)
    if ok:
        check_credential(secret, what="the token", kind=kind)  # type: ignore[arg-type]
        return
    with pytest.raises(UsageError) as given_by_user:
        check_credential(secret, what="the token", kind=kind)  # type: ignore[arg-type]
    assert value not in given_by_user.value.diagnostics()
    with pytest.raises(RegistryError) as sent_by_a_server:
        check_credential(secret, what="the token", kind=kind, outside=True)  # type: ignore[arg-type]
    assert value not in sent_by_a_server.value.diagnostics()
