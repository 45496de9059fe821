"""Finding image references in deploy files: text in, located references out.

Two forms are recognised in every file, so a shell script that writes a compose file
through a heredoc is covered as well as a plain ``.env`` file:

* **YAML keys**: ``image: <ref>`` (compose services, Kubernetes pods, workflow
  containers), and keys named ``IMAGE`` or ``*_IMAGE`` (``environment:`` and ``env:``
  maps), plain, single- or double-quoted, with comments, anchors (``&name``) and
  block scalars (``image: >-`` then the value on the next line). A key whose value is a
  nested mapping (Helm's ``image: {repository, tag}``) is not a reference and is skipped.
* **YAML flow collections**, on one line or several (``web: {image: x}``,
  ``- {image: x}``, a JSON compose file, ``environment: [IMAGE=x]``): the same keys and
  ``NAME=value`` items inside them. A flow collection the reader cannot follow (not
  closed, explicit ``?`` keys, text after it, a value that runs over lines...) is not
  skipped: every image key written in it is reported *unresolved*, so the check fails
  closed.
* **Assignments**: ``IMAGE=...`` or ``*_IMAGE=...`` (any letter case) where a shell sets
  them (:mod:`tagkeeper.gate.shell`: command starts, declarations, command prefixes such as
  ``sudo``, ``env`` and ``nohup``, ``sh -c`` strings...), and compose ``environment:`` list
  items (``- IMAGE=...``).

Values that use variables are interpolated as docker compose and the shell do
(``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
``${VAR:+alt}``, ``$$``) when the caller supplies the variables. Without them, or when a
variable is missing, a command substitution or a GitHub expression is involved, the
finding is *unresolved*: its reason names the variable (and the default, when there is
one) and the check refuses it, since nobody can tell what it will deploy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.gate.findings import Finding, Kind, expand, is_image_name, make_finding
from tagkeeper.gate.rules import Code, Policy, Verdict
from tagkeeper.gate.shell import scan_shell

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "Finding",
    "Kind",
    "expand",
    "is_image_name",
    "judge_findings",
    "scan_shell",
    "scan_text",
    "scan_yaml",
]


_YAML_KEY_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:-[ \t]+)?"
    r"""(?P<q>["']?)(?P<key>[A-Za-z0-9_]+)(?P=q)[ \t]*:(?:[ \t]+(?P<rest>.*)|[ \t]*)$"""
)
_YAML_LIST_ENV_RE = re.compile(
    r"""^[ \t]*-[ \t]+(?P<q>["']?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*?)(?P=q)"""
    r"""[ \t]*(?:[ \t]#.*)?$"""
)
_YAML_MAPPING_KEY_RE = re.compile(r"""^(?:-[ \t]+)?["']?[^\s#'"]+["']?[ \t]*:(?:[ \t]|$)""")
_BLOCK_RE = re.compile(r"[|>][-+0-9]*")
# --------------------------------------------------------------------------- YAML


def _yaml_value(rest: str) -> tuple[str, int, str | None] | None:
    """(value, offset of its first character in ``rest``, problem); None for no value."""
    offset = 0
    while True:  # YAML tags and anchors before the value
        stripped = rest[offset:]
        match = re.match(r"(?:!!?[A-Za-z0-9_]*|&[^\s]+)[ \t]+", stripped)
        if not match:
            break
        offset += match.end()
    body = rest[offset:]
    if not body or body.startswith("#"):
        return None
    if body.startswith("*"):
        alias = body.split()[0]
        return alias, offset, f"YAML alias {alias} (the anchored value is not read)"
    if body[0] == '"':
        chars: list[str] = []
        i = 1
        while i < len(body) and body[i] != '"':
            if body[i] == "\\" and i + 1 < len(body):
                escaped = body[i + 1]
                chars.append({"n": "\n", "t": "\t", "0": "\0"}.get(escaped, escaped))
                i += 2
            else:
                chars.append(body[i])
                i += 1
        if i >= len(body):
            return "".join(chars), offset + 1, "a quoted value that does not end on its line"
        return "".join(chars), offset + 1, None
    if body[0] == "'":
        chars = []
        i = 1
        while i < len(body):
            if body[i] == "'":
                if body[i + 1 : i + 2] == "'":
                    chars.append("'")
                    i += 2
                    continue
                break
            chars.append(body[i])
            i += 1
        if i >= len(body):
            return "".join(chars), offset + 1, "a quoted value that does not end on its line"
        return "".join(chars), offset + 1, None
    comment = re.search(r"[ \t]#", body)
    value = (body[: comment.start()] if comment else body).rstrip()
    return value, offset, None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _next_content(lines: list[str], index: int) -> int | None:
    for j in range(index + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped and not stripped.startswith("#"):
            return j
    return None


def scan_yaml(text: str, file: str, variables: Mapping[str, str] | None = None) -> list[Finding]:
    """Image references under YAML keys (``image``, ``IMAGE``, ``*_IMAGE``) and in
    ``- NAME=value`` list items, in block style and inside flow collections."""
    lines = text.splitlines()
    found: list[Finding] = []
    skip_to = 0  # lines before this one belong to a flow collection already read
    block_only_to = 0  # lines before this one belong to one that could not be read
    for index, line in enumerate(lines):
        if index < skip_to:
            continue
        flow = _FLOW_START_RE.match(line) if index >= block_only_to else None
        if flow:
            flow_found, last, readable = _scan_flow(
                lines, index, flow.start("open"), file, variables
            )
            found.extend(flow_found)
            if readable:
                skip_to = last + 1
            else:  # its other lines are still read as block YAML, each once
                block_only_to = last + 1
            continue
        finding = _blockmake_finding(lines, index, file, variables)
        if finding is not None:
            found.append(finding)
    return found


def _blockmake_finding(
    lines: list[str], index: int, file: str, variables: Mapping[str, str] | None
) -> Finding | None:
    line = lines[index]
    listed = _YAML_LIST_ENV_RE.match(line)
    if listed and is_image_name(listed.group("name")):
        return make_finding(
            file,
            index + 1,
            listed.start("value") + 1,
            name=listed.group("name"),
            value=listed.group("value"),
            kind=Kind.ASSIGNMENT,
            problem=None,
            variables=variables,
        )
    match = _YAML_KEY_RE.match(line)
    if not match or not is_image_name(match.group("key")):
        return None
    key_indent = _indent(line)
    parsed = _yaml_value(match.group("rest") or "")
    line_no, base = index + 1, match.start("rest")
    block = parsed is not None and _BLOCK_RE.fullmatch(parsed[0]) is not None
    if parsed is None or block:  # the value is on the following lines
        following = _next_content(lines, index)
        if following is None or _indent(lines[following]) <= key_indent:
            return None  # null value
        content = lines[following]
        head = content.strip()
        value = head
        if not block:
            if (
                _YAML_MAPPING_KEY_RE.match(head)
                or head == "-"
                or head.startswith(("- ", "-\t"))
                or _FLOW_START_RE.match(head)
            ):
                return None  # a nested mapping or a list, not a reference
            value_parsed = _yaml_value(head)
            if value_parsed is None:
                return None
            value = value_parsed[0]
        line_no, base = following + 1, _indent(content)
        parsed = (value, 0, None)
    value, offset, problem = parsed
    return make_finding(
        file,
        line_no,
        base + offset + 1,
        name=match.group("key"),
        value=value,
        kind=Kind.YAML_KEY,
        problem=problem,
        variables=variables,
    )


# --------------------------------------------------------------------------- YAML flow

# Where a flow collection starts in block context: after block sequence dashes and an
# optional key (plain, or quoted as JSON writes it), and after YAML tags and anchors.
_FLOW_START_RE = re.compile(
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
        self.col += 1
        chars: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail(f"the quoted value on line {row + 1} is not closed")
            if ch == "\n":
                chars.append(" ")
                self.row += 1
                self.col = 0
            elif ch == quote and quote == "'" and self.peek(1) == "'":
                chars.append("'")
                self.col += 2
            elif ch == quote:
                self.col += 1
                break
            elif ch == "\\" and quote == '"' and self.peek(1) != "\n":
                escaped = self.peek(1)
                chars.append({"n": "\n", "t": "\t", "0": "\0"}.get(escaped, escaped))
                self.col += 2
            else:
                chars.append(ch)
                self.col += 1
        problem = "a quoted value that spans lines" if self.row != row else None
        return _Scalar("".join(chars), row, col, json_like=True, problem=problem)

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


def _scan_flow(
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
            block_key = _YAML_KEY_RE.match(line)
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


# --------------------------------------------------------------------------- together


def scan_text(
    text: str, file: str = "<text>", variables: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every image reference in ``text`` (YAML keys and assignments), in file order."""
    # where both read a value (a NAME=value item of a flow sequence), YAML knows its extent
    found = {(f.line, f.column): f for f in scan_yaml(text, file, variables)}
    for finding in scan_shell(text, file, variables):
        found.setdefault((finding.line, finding.column), finding)
    return [found[key] for key in sorted(found)]


def judge_findings(findings: Iterable[Finding], policy: Policy) -> list[Verdict]:
    """Judge each finding; an unresolved one is refused with code ``unresolved``."""
    verdicts: list[Verdict] = []
    for finding in findings:
        if finding.unresolved is not None:
            verdict = Verdict(
                finding.raw,
                False,
                Code.UNRESOLVED,
                f"cannot tell what this deploys: {finding.unresolved}; check the resolved "
                "value (for example `docker compose config | tagkeeper check --file -`) "
                "or pass the variables (--var NAME=VALUE, --resolve-env)",
            )
        else:
            verdict = policy.judge_text(finding.text)
        verdicts.append(verdict.at(finding.file, finding.line, finding.column))
    return verdicts
