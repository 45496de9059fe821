"""The escapes every printed line and every summary goes through, as properties: what
comes out cannot drive a terminal, be read as a workflow command or render as markup,
and still says what came in."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from tagkeeper.cli.gha import annotation, md_code, md_escape
from tagkeeper.untrusted import json_text, neutralise, printable

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
# text that leans on what matters here, and any text at all
_HOSTILE = st.lists(
    st.sampled_from(
        ["::", "##[", "\n", "\r", "\x1b[31m", "\u202e", "<img src=x>", "|", "`", "``", "\\",
         "[a](b)", "*", "_", "#", "- ", "1.", "&amp;", "<", ">", " ", "a", "é", "\t", "---"]
    )
).map("".join)  # fmt: skip
TEXT = st.one_of(_HOSTILE, st.text())


@given(TEXT)
def test_printable_output_keeps_its_lines_and_nothing_else(text: str) -> None:
    out = printable(text)
    assert out.count("\n") == text.count("\n")
    assert all(ch in "\n\t" or ch.isprintable() for ch in out)
    assert "##[" not in out
    assert not any(line.lstrip(" \t").startswith("::") for line in out.split("\n"))


@given(TEXT)
def test_neutralised_text_passes_printable_unchanged(text: str) -> None:
    once = neutralise(text, limit=None)
    assert printable(once) == once


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_leaves_plain_program_text_alone(text: str) -> None:
    if "##[" not in text and not text.lstrip(" ").startswith("::"):
        assert printable(text) == text


@given(
    st.recursive(
        st.none() | st.booleans() | TEXT, lambda c: st.lists(c) | st.dictionaries(TEXT, c)
    )
)
def test_json_text_is_the_same_document_with_no_workflow_command(document: object) -> None:
    for indent in (None, 2):
        text = json_text(json.dumps(document, indent=indent))
        assert json.loads(text) == document
        assert "::" not in text
        assert "##[" not in text


def _cell(markdown: str) -> list[object]:
    """The inline children of the one body cell of a one-column table around ``markdown``."""
    tokens = _MD.parse(f"| h |\n|---|\n| {markdown} |\n")
    cells = [t for t in tokens if t.type == "inline"]
    assert len(cells) == 2, markdown  # the header and one cell: no pipe split it
    assert sum(t.type == "td_open" for t in tokens) == 1
    return list(cells[1].children or [])


@given(TEXT)
def test_md_escape_renders_as_exactly_the_neutralised_text(text: str) -> None:
    children = _cell(md_escape(text))
    assert all(c.type in ("text", "softbreak") for c in children), children  # type: ignore[attr-defined]
    shown = "".join(c.content for c in children)  # type: ignore[attr-defined]
    assert shown == neutralise(text, limit=None).strip(" ")
    html = _MD.render(md_escape(text))
    assert "<" not in html.removeprefix("<p>").removesuffix("</p>\n")


@given(TEXT)
def test_md_code_is_one_code_span_of_the_neutralised_text(text: str) -> None:
    children = _cell(md_code(text))
    assert [c.type for c in children] == ["code_inline"]  # type: ignore[attr-defined]
    expected = neutralise(text, limit=None)
    got = children[0].content  # type: ignore[attr-defined]
    assert got == expected or (expected.strip(" ") == "" and got.strip(" ") == "")


@given(TEXT, TEXT)
def test_annotations_carry_outside_text_on_one_command_line(message: str, title: str) -> None:
    line = annotation("error", message, title=title)
    assert "\n" not in line
    assert "\r" not in line
    assert line.startswith("::error title=")
    assert all(ch == "\t" or ch.isprintable() for ch in line)
    data = line.split("::", 2)[2]
    for part in data.replace("%0A", "\n").replace("%0D", "\r").split("\n"):
        assert not part.lstrip(" \t").startswith("::")
