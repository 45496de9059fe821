"""YAML values are judged as YAML reads them: escapes decoded, lines folded.

The oracle is ruamel.yaml, a real YAML 1.2 parser: on random quoted scalars (every
escape, blanks, empty lines, escaped line breaks) the scanner reads what it reads, and
refuses what it refuses.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from tagkeeper.gate.findings import printable
from tagkeeper.gate.rules import Code, policy_for
from tagkeeper.gate.scan import judge_findings, scan_text
from tagkeeper.gate.yaml_scalars import ScalarError, read_quoted

LATEST = "ghcr.io/acme/app:latest"


def verdict_of(text: str, env: str = "prod") -> tuple[str, Code]:
    found = scan_text(text, "compose.yml")
    assert len(found) == 1, found
    (verdict,) = judge_findings(found, policy_for(env))
    return found[0].text, verdict.code


@pytest.mark.parametrize(
    "value",
    [
        r'"ghcr.io/acme/app:\x6catest"',  # the case of the issue
        r'"ghcr.io/acme/app:\x6Catest"',
        r'"ghcr.io/acme/app:\u006catest"',
        r'"ghcr.io/acme/app:\U0000006catest"',
        r'"ghcr.io\/acme\/app:latest"',
        r'"\x67hcr.io/acme/app:latest"',
        r'"ghcr.io/acme/app:\x4cATEST"',  # LATEST, any letter case
        '"ghcr.io/acme/app:\\\n    latest"',  # an escaped line break joins with nothing
        '"ghcr.io/acme/app:\\\n\tlatest"',
        "'ghcr.io/acme/app:latest'",
    ],
)
@pytest.mark.parametrize("key", ["image", "IMAGE", "APP_IMAGE"])
def test_escapes_and_folding_are_decoded_before_judging(value: str, key: str) -> None:
    for text in (
        f"services:\n  web:\n    {key}: {value}\n",
        f"services:\n  web:\n    {key}:\n      {value}\n",  # the value on the next line
        f"services:\n  web: {{{key}: {value}}}\n",  # in a flow mapping
    ):
        decoded, code = verdict_of(text, "dev")  # latest is refused even by dev rules
        assert decoded.lower() == LATEST, text
        assert code is Code.LATEST, text


@pytest.mark.parametrize(
    "item",
    [r'- "IMAGE=ghcr.io/acme/app:\x6catest"', "- 'IMAGE=ghcr.io/acme/app:latest'"],
)
def test_quoted_environment_list_items_are_decoded(item: str) -> None:
    text = f"services:\n  web:\n    environment:\n      {item}\n"
    decoded, code = verdict_of(text, "dev")
    assert (decoded, code) == (LATEST, Code.LATEST)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('image: "ghcr.io/acme/app:\\qlatest"\n', "'\\q' is not a YAML escape"),
        ('image: "ghcr.io/acme/app:\\x6"\n', "needs 2 hex digits"),
        ('image: "ghcr.io/acme/app:\\ud800"\n', "is not a character"),
        ('image: "ghcr.io/acme/app:\\U00110000"\n', "is not a character"),
        ('image: "ghcr.io/acme/app:v1.2.3\n', "not closed"),
        ('image: "ghcr.io/acme/app:v1.2.3" latest\n', "text after the closing quote"),
        ('- "IMAGE=ghcr.io/acme/app:\\q"\n', "'\\q' is not a YAML escape"),
    ],
)
def test_a_value_yaml_cannot_read_fails_closed_as_unparseable(text: str, why: str) -> None:
    found = scan_text(text, "compose.yml")
    (finding,) = [f for f in found if f.broken is not None]
    assert why in (finding.broken or "")
    for env in ("prod", "dev"):
        (verdict,) = judge_findings([finding], policy_for(env))
        assert verdict.code is Code.UNPARSEABLE
        assert "YAML cannot read" in verdict.message


@pytest.mark.parametrize(
    "text",
    [
        # a plain value that runs over lines is folded: a space, never a reference
        "image: ghcr.io/acme/app:v1.2.3\n  latest\n",
        "services:\n  web:\n    image: ghcr.io/acme/app:v1.2.3\n      :latest\n",
        # a block scalar on several lines: newlines or spaces, never a reference
        "image: >-\n  ghcr.io/acme/app:v1.2.3\n  latest\n",
        "image: |\n  ghcr.io/acme/app:v1.2.3\n  latest\n",
        # quoted values fold too; an empty line is a newline
        'image: "ghcr.io/acme/app:v1.2.3\n  latest"\n',
        "image: 'ghcr.io/acme/app:v1.2.3\n\n  latest'\n",
        # NEL, no-break space, line and paragraph separators
        'image: "ghcr.io/acme/app:v1.2.3\\N"\n',
        'image: "ghcr.io/acme/app:v1.2.3\\_"\n',
        'image: "ghcr.io/acme/app:v1.2.3\\L"\n',
        'image: "ghcr.io/acme/app:v1.2.3\\ "\n',
    ],
)
def test_values_that_yaml_reads_with_blanks_are_never_accepted(text: str) -> None:
    found = scan_text(text, "compose.yml")
    (verdict,) = judge_findings(found, policy_for("prod"))
    assert not verdict.ok
    assert verdict.code in (Code.UNPARSEABLE, Code.UNRESOLVED), verdict


def test_a_plain_value_followed_by_a_sibling_key_is_one_line() -> None:
    text = "services:\n  web:\n    image: ghcr.io/acme/app:v1.2.3\n    ports: [80]\n"
    assert verdict_of(text) == ("ghcr.io/acme/app:v1.2.3", Code.OK)
    listed = "services:\n  - image: ghcr.io/acme/app:v1.2.3\n    ports: [80]\n"
    assert verdict_of(listed) == ("ghcr.io/acme/app:v1.2.3", Code.OK)


@pytest.mark.parametrize(
    "value",
    [
        '"ghcr.io/acme/app:v1\\e[2J\\e[31mOK"',
        '"x\\n::error::injected"',
        '"x\\r\\n::add-mask::x"',
        '"x\\u202eok"',
        '"x\\u2028::warning::y"',
    ],
)
def test_decoded_control_characters_are_never_printed(value: str) -> None:
    found = scan_text(f"image: {value}\n", "compose.yml")
    (verdict,) = judge_findings(found, policy_for("prod"))
    assert not verdict.ok
    assert verdict.ref.isascii()
    assert verdict.ref.isprintable()
    assert "\n" not in verdict.message


def test_printable_escapes_everything_but_printable_ascii() -> None:
    assert printable("ghcr.io/o/app:v1.2.3") == "ghcr.io/o/app:v1.2.3"
    assert printable("a\x1b[2Jb\n\u202e") == "a\\x1b[2Jb\\n\\u202e"


# -- the oracle ---------------------------------------------------------------------------

_YAML = YAML(typ="safe", pure=True)
_DOUBLE_PIECES = [
    "a",
    "Z",
    "9",
    ":",
    "/",
    "#",
    "'",
    " ",
    "\t",
    "\\x6c",
    "\\x4C",
    "\\u00e9",
    "\\u0041",
    "\\U0001F600",
    "\\n",
    "\\t",
    "\\\t",
    "\\\\",
    '\\"',
    "\\/",
    "\\N",
    "\\_",
    "\\L",
    "\\P",
    "\\e",
    "\\ ",
    "\\0",
    "\\a",
    "\\b",
    "\\v",
    "\\f",
    "\\r",
    "\\q",  # not an escape: both must refuse
    "\\x4",  # too short
    "\n  ",
    "\n\n  ",
    "\n \t",
    "\\\n  ",
    "\\\n\n   ",
    " \n  ",
]
_SINGLE_PIECES = ["a", "Z", ":", "/", "''", '"', " ", "\t", "\\", "\n  ", "\n\n  ", " \n  "]


def _oracle(document: str) -> str | None:
    try:
        loaded = _YAML.load(document)
    except YAMLError:
        return None
    assert isinstance(loaded, dict)
    value = loaded["image"]
    assert isinstance(value, str)
    return value


def _ours(document: str) -> str | None:
    try:
        return read_quoted(document.splitlines(), 0, len("image: ")).text
    except ScalarError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_DOUBLE_PIECES), max_size=12))
def test_double_quoted_scalars_read_as_ruamel_reads_them(pieces: list[str]) -> None:
    document = 'image: "' + "".join(pieces) + '"\n'
    assert _ours(document) == _oracle(document), document


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_SINGLE_PIECES), max_size=12))
def test_single_quoted_scalars_read_as_ruamel_reads_them(pieces: list[str]) -> None:
    document = "image: '" + "".join(pieces) + "'\n"
    assert _ours(document) == _oracle(document), document


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_DOUBLE_PIECES[:34]), min_size=1, max_size=8))
def test_the_check_judges_what_yaml_reads(pieces: list[str]) -> None:
    document = 'image: "ghcr.io/acme/app:' + "".join(pieces) + '"\n'
    expected = _oracle(document)
    found = scan_text(document, "compose.yml")
    (verdict,) = judge_findings(found, policy_for("prod"))
    if expected is None:
        assert verdict.code is Code.UNPARSEABLE
    else:
        assert found[0].text == expected
        assert verdict.ok == policy_for("prod").judge_text(expected).ok


def test_lines_after_a_value_yaml_cannot_read_are_still_read() -> None:
    text = 'a:\n  image: "ghcr.io/acme/app:v1.2.3\nb:\n  image: ghcr.io/acme/b:latest\n'
    found = scan_text(text, "compose.yml")
    assert [(f.line, f.broken is not None) for f in found] == [(2, True), (4, False)]
