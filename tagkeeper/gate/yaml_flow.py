"""YAML flow collections (``{image: x}``, ``[IMAGE=x]``, JSON), on one line or several.

:func:`scan_flow` reads the collection that opens at a position and reports the image
keys and ``NAME=value`` items in it. A collection it cannot follow (not closed, explicit
``?`` keys, text after it, a plain value that runs over lines, a quoted value YAML cannot
read...) is not skipped: every image key written in it is reported *unresolved*, so the
check fails closed. Quoted values are decoded by :mod:`tagkeeper.gate.yaml_scalars`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.gate.findings import Finding, Kind, is_image_name, make_finding
from tagkeeper.gate.yaml_scalars import ScalarError, read_quoted

if TYPE_CHECKING:
    from collections.abc import Mapping

# A block mapping key (``image:``, ``- image:``, ``"IMAGE":``) and what follows it.
BLOCK_KEY_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:-[ \t]+)?"
    r"""(?P<q>["']?)(?P<key>[A-Za-z0-9_]+)(?P=q)[ \t]*:(?:[ \t]+(?P<rest>.*)|[ \t]*)$"""
)

# Where a flow collection starts in block context: after block sequence dashes and an
# optional key (plain, or quoted as JSON writes it), and after YAML tags and anchors.
FLOW_START_RE = re.compile(
    r"""^[ \t]*(?:-[ \t]+)*"""
    r"""(?:(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{}\[\],:](?:[^:#]|:(?=\S))*?)"""
    r""":[ \t]+)?"""
    r"""(?:(?:![^\s]*|&[^\s]+)[ \t]+)*"""
    r"""(?P<open>[{\[])"""
)
# An image key written where the flow reader gave up: reported unresolved (fail closed).
_FLOW_IMAGE_KEY_RE = re.compile(
    r"""(?<![^\s{\[,])(?P<q>["']?)(?P<key>(?:[A-Za-z0-9_]*_)?image)(?P=q)[ \t]*:""",
    re.IGNORECASE,
)
_FLOW_ASSIGNMENT_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.DOTALL)
_FLOW_INDICATORS = ",[]{}"
_MAX_FLOW_DEPTH = 64  # deeper input is refused (unresolved), never a RecursionError


class _FlowError(Exception):
    """The flow collection cannot be read; ``row`` is the 0-based line where reading stopped."""

    def __init__(self, why: str, row: int) -> None:
        super().__init__(why)
        self.why = why
        self.row = row


@dataclass(frozen=True, slots=True)
class _Scalar:
    text: str
    row: int  # 0-based
    col: int  # 0-based, of the first character inside any quotes
    json_like: bool = False  # quoted: a ':' right after it is a value indicator
    problem: str | None = None


@dataclass(slots=True)
class _Flow:
    """A flow mapping (``pairs``) or sequence (``items``; ``a: b`` entries go to ``pairs``)."""

    pairs: list[tuple[_Node | None, _Node | None]] = field(default_factory=list)
    items: list[_Node] = field(default_factory=list)


_Node = _Scalar | _Flow


class _FlowReader:
    """Reads one YAML flow collection, which may span lines, from ``lines[row][col]``."""

    def __init__(self, lines: list[str], row: int, col: int) -> None:
        self.lines = lines
        self.row = row
        self.col = col
        self.depth = 0

    def peek(self, ahead: int = 0) -> str:
        """The character at the cursor (``"\\n"`` at a line end, ``""`` at the end)."""
        if self.row >= len(self.lines):
            return ""
        line = self.lines[self.row]
        i = self.col + ahead
        return line[i] if i < len(line) else "\n"

    def fail(self, why: str) -> _FlowError:
        return _FlowError(why, min(self.row, len(self.lines) - 1))

    def skip_space(self) -> None:
        """Past blanks, line ends and comments (a ``#`` after a blank or at a line start)."""
        while self.row < len(self.lines):
            line = self.lines[self.row]
            while self.col < len(line) and line[self.col] in " \t":
                self.col += 1
            at_comment = self.col < len(line) and line[self.col] == "#"
            if at_comment and (self.col == 0 or line[self.col - 1] in " \t"):
                self.col = len(line)
            if self.col < len(line):
                return
            self.row += 1
            self.col = 0

    def collection(self) -> _Flow:
        close = "}" if self.peek() == "{" else "]"
        mapping = close == "}"
        opened = self.row + 1
        self.depth += 1
        if self.depth > _MAX_FLOW_DEPTH:
            raise self.fail(f"flow collections nested deeper than {_MAX_FLOW_DEPTH} levels")
        self.col += 1
        flow = _Flow()
        while True:
            self.skip_space()
            ch = self.peek()
            if ch == close:
                self.col += 1
                self.depth -= 1
                return flow
            if ch == "":
                raise self.fail(f"the flow collection opened on line {opened} is not closed")
            if ch in (",", "]", "}"):
                raise self.fail(f"unexpected {ch!r} in the flow collection opened on line {opened}")
            key = self.node()
            self.skip_space()
            if self._at_value_indicator(key):
                self.col += 1
                self.skip_space()
                value = None if self.peek() in (",", close) else self.node()
                flow.pairs.append((key, value))
            elif mapping:
                flow.pairs.append((key, None))
            elif key is not None:
                flow.items.append(key)
            self.skip_space()
            ch = self.peek()
            if ch == ",":
                self.col += 1
            elif ch != close:
                raise self.fail(
                    f"expected ',' or {close!r} in the flow collection opened on line {opened}"
                    + (f", found {ch!r}" if ch not in ("", "\n") else "")
                )

    def _at_value_indicator(self, key: _Node | None) -> bool:
        if self.peek() != ":":
            return False
        if key is None or isinstance(key, _Flow) or key.json_like:
            return True
        return self.peek(1) in " \t\n" + _FLOW_INDICATORS

    def node(self) -> _Node | None:
        self.skip_space()
        while self.peek() in ("!", "&"):  # tags and anchors: skipped
            line = self.lines[self.row]
            while self.col < len(line) and line[self.col] not in " \t" + _FLOW_INDICATORS:
                self.col += 1
            self.skip_space()
        ch = self.peek()
        if ch in ("{", "["):
            return self.collection()
        if ch in ("", ",", "]", "}"):
            return None
        if ch == "*":
            line = self.lines[self.row]
            start = self.col
            while self.col < len(line) and line[self.col] not in " \t" + _FLOW_INDICATORS:
                self.col += 1
            alias = line[start : self.col]
            return _Scalar(
                alias,
                self.row,
                start,
                problem=f"YAML alias {alias} (the anchored value is not read)",
            )
        if ch in ('"', "'"):
            return self.quoted(ch)
        if ch in "#|>%@`" or (ch in "?-" and self.peek(1) in " \t\n"):
            raise self.fail(f"{ch!r} cannot start a value inside a flow collection")
        return self.plain()

    def quoted(self, quote: str) -> _Scalar:
        row, col = self.row, self.col + 1
        try:
            value = read_quoted(self.lines, self.row, self.col)
        except ScalarError as exc:
            raise _FlowError(f"YAML cannot read the quoted value: {exc.why}", exc.row) from None
        self.row, self.col = value.row, value.col
        return _Scalar(value.text, row, col, json_like=True)

    def plain(self) -> _Scalar:
        row, col = self.row, self.col
        parts: list[str] = []
        problem = None
        while True:
            line = self.lines[self.row]
            start = i = self.col
            while i < len(line):
                ch = line[i]
                next_ch = line[i + 1] if i + 1 < len(line) else "\n"
                if ch in _FLOW_INDICATORS or (ch == ":" and next_ch in " \t\n" + _FLOW_INDICATORS):
                    break
                if ch == "#" and i > start and line[i - 1] in " \t":
                    break
                i += 1
            parts.append(line[start:i].strip(" \t"))
            self.col = i
            if i < len(line):
                break
            self.skip_space()
            ch = self.peek()
            if ch in ("", ",", "]", "}") or (ch == ":" and self.peek(1) in " \t\n,[]{}"):
                break
            problem = "a plain value that continues on the next line"
        return _Scalar(" ".join(part for part in parts if part), row, col, problem=problem)


def scan_flow(
    lines: list[str], row: int, col: int, file: str, variables: Mapping[str, str] | None
) -> tuple[list[Finding], int, bool]:
    """The findings of the flow collection at ``lines[row][col]``, the last line it uses,
    and whether it could be read.

    A collection the reader cannot follow is not skipped: every image key written in the
    lines it read is reported unresolved (block keys on lines of their own excepted: the
    caller reads those lines as block YAML).
    """
    reader = _FlowReader(lines, row, col)
    try:
        flow = reader.collection()
        rest = lines[reader.row][reader.col :]
        if rest.strip() and not re.match(r"[ \t]+#", rest):
            raise reader.fail(f"text after the flow collection that ends on line {reader.row + 1}")
    except _FlowError as exc:
        return _unreadable_flow(lines, row, col, exc, file), exc.row, False
    found: list[Finding] = []
    _flow_findings(flow, file, variables, found)
    return found, reader.row, True


def _flow_findings(
    flow: _Flow, file: str, variables: Mapping[str, str] | None, found: list[Finding]
) -> None:
    for key, value in flow.pairs:
        if isinstance(key, _Scalar) and is_image_name(key.text):
            if isinstance(value, _Scalar):
                found.append(
                    make_finding(
                        file,
                        value.row + 1,
                        value.col + 1,
                        name=key.text,
                        value=value.text,
                        kind=Kind.YAML_KEY,
                        problem=value.problem,
                        variables=variables,
                    )
                )
            # no value is null, a collection is not a reference (Helm's {repository, tag})
        elif isinstance(key, _Scalar) and value is None and not key.json_like:
            name, colon, _ = key.text.partition(":")
            if colon and is_image_name(name):  # {image:x} is one key "image:x" with no value
                found.append(
                    Finding(
                        file,
                        key.row + 1,
                        key.col + 1,
                        name,
                        key.text,
                        key.text,
                        Kind.YAML_KEY,
                        f"{key.text!r} has no space after ':', so YAML "
                        "reads it as a key with no value, not as an image",
                    )
                )
        for node in (key, value):
            if isinstance(node, _Flow):
                _flow_findings(node, file, variables, found)
    for item in flow.items:
        if isinstance(item, _Flow):
            _flow_findings(item, file, variables, found)
            continue
        assignment = _FLOW_ASSIGNMENT_RE.fullmatch(item.text)
        if assignment and is_image_name(assignment.group("name")):
            found.append(
                make_finding(
                    file,
                    item.row + 1,
                    item.col + assignment.start("value") + 1,
                    name=assignment.group("name"),
                    value=assignment.group("value"),
                    kind=Kind.ASSIGNMENT,
                    problem=item.problem,
                    variables=variables,
                )
            )


def _unreadable_flow(
    lines: list[str], row: int, col: int, error: _FlowError, file: str
) -> list[Finding]:
    found: list[Finding] = []
    for index in range(row, error.row + 1):
        line = lines[index]
        for match in _FLOW_IMAGE_KEY_RE.finditer(line, col if index == row else 0):
            block_key = BLOCK_KEY_RE.match(line)
            if index != row and block_key and block_key.start("key") == match.start("key"):
                continue  # a block key line: read as block YAML, like any other line
            rest = line[match.start("key") :].strip()
            shown = rest if len(rest) <= 80 else rest[:77] + "..."
            found.append(
                Finding(
                    file,
                    index + 1,
                    match.start("key") + 1,
                    match.group("key"),
                    shown,
                    shown,
                    Kind.YAML_KEY,
                    f"a YAML flow collection that tagkeeper cannot read ({error.why})",
                )
            )
    return found
