"""YAML quoted scalars read as YAML 1.2 reads them: escapes and line folding. Pure.

``"ghcr.io/acme/app:\\x6catest"`` is ``ghcr.io/acme/app:latest`` to docker compose, so the
gate must judge the decoded text, never the text as written:

* **double-quoted**: every YAML escape (``\\0 \\a \\b \\t \\n \\v \\f \\r \\e \\<space> \\"
  \\/ \\\\ \\N \\_ \\L \\P``, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``, and a tab after ``\\``); any
  other escape, a code point that is no character (a surrogate, beyond U+10FFFF) or a raw
  control character is an error, never guessed;
* **single-quoted**: ``''`` is one ``'``, nothing else is special;
* **line folding** (both styles): a value that runs over lines loses the blanks around each
  line break; one break becomes a space, a break followed by ``k`` empty lines becomes ``k``
  newlines, and an escaped break (``\\`` at the end of a line) joins the lines with nothing.

:func:`read_quoted` raises :class:`ScalarError` for what YAML itself refuses, so the
caller can fail closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

_SIMPLE_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_BLANKS = " \t"


class ScalarError(Exception):
    """YAML cannot read the scalar; ``row`` is the 0-based line where reading stopped."""

    def __init__(self, why: str, row: int) -> None:
        super().__init__(why)
        self.why = why
        self.row = row


@dataclass(frozen=True, slots=True)
class Quoted:
    """A quoted scalar: its ``text``, and where it ends (the line of the closing quote,
    0-based, and the index just after that quote)."""

    text: str
    row: int
    col: int


def _is_document_marker(line: str) -> bool:
    return line[:3] in ("---", "...") and (len(line) == 3 or line[3] in " \t")


def read_quoted(lines: Sequence[str], row: int, col: int) -> Quoted:
    """The scalar whose opening quote (``"`` or ``'``) is at ``lines[row][col]``."""
    quote = lines[row][col]
    double = quote == '"'
    out: list[str] = []
    kept = 0  # len(out) up to the last character that a line break does not strip
    r, i = row, col + 1
    line = lines[r]
    while True:
        if i >= len(line):  # an unescaped line break: fold it
            del out[kept:]
            r, breaks = _next_line(lines, r, row)
            line = lines[r]
            i = len(line) - len(line.lstrip(_BLANKS))
            out.append("\n" * breaks if breaks else " ")
            kept = len(out)
            continue
        ch = line[i]
        if ch == quote:
            if not double and line[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                kept = len(out)
                continue
            return Quoted("".join(out), r, i + 1)
        if double and ch == "\\":
            if i + 1 >= len(line):  # an escaped line break: join with nothing
                r, breaks = _next_line(lines, r, row)
                line = lines[r]
                i = len(line) - len(line.lstrip(_BLANKS))
                out.append("\n" * breaks)
                kept = len(out)
                continue
            text, i = _escape(line, i, r)
            out.append(text)
            kept = len(out)
            continue
        if (ch < " " and ch != "\t") or ch == "\x7f":
            raise ScalarError(f"the quoted value holds a control character (U+{ord(ch):04X})", r)
        out.append(ch)
        i += 1
        if ch not in _BLANKS:
            kept = len(out)


def _next_line(lines: Sequence[str], r: int, opened: int) -> tuple[int, int]:
    """The next line with content after line ``r``, and how many empty lines came between."""
    breaks = 0
    r += 1
    while r < len(lines) and not lines[r].strip(_BLANKS):
        breaks += 1
        r += 1
    if r >= len(lines):
        raise ScalarError(f"the quoted value on line {opened + 1} is not closed", r - 1)
    if _is_document_marker(lines[r]):
        raise ScalarError(f"the quoted value on line {opened + 1} is not closed", r)
    return r, breaks


def _escape(line: str, i: int, row: int) -> tuple[str, int]:
    """The character the escape at ``line[i]`` (a backslash) stands for, and the index after."""
    code = line[i + 1]
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], i + 2
    width = _HEX_ESCAPES.get(code)
    if width is None:
        raise ScalarError(f"'\\{code}' is not a YAML escape", row)
    digits = line[i + 2 : i + 2 + width]
    if len(digits) != width or not set(digits) <= _HEX_DIGITS:
        raise ScalarError(f"'\\{code}{digits}' needs {width} hex digits", row)
    point = int(digits, 16)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        raise ScalarError(f"'\\{code}{digits}' is not a character", row)
    return chr(point), i + 2 + width
