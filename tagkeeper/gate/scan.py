"""Finding image references in deploy files: text in, located references out.

Two forms are recognised in every file, so a shell script that writes a compose file
through a heredoc is covered as well as a plain ``.env`` file:

* **YAML keys**: ``image: <ref>`` (compose services, Kubernetes pods, workflow
  containers), and keys named ``IMAGE`` or ``*_IMAGE`` (``environment:`` and ``env:``
  maps), plain, single- or double-quoted, with comments, anchors (``&name``) and
  block scalars (``image: >-`` then the value on the next line). A key whose value is a
  nested mapping (Helm's ``image: {repository, tag}``) is not a reference and is skipped.
  Values are read as YAML reads them (:mod:`tagkeeper.gate.yaml_scalars`): escapes
  decoded (``"app:\\x6catest"`` is ``app:latest``), quoted and plain values that run over
  lines folded. A value YAML cannot read (``"\\q"``) is reported *broken*: no reference.
* **YAML flow collections**, on one line or several (``web: {image: x}``,
  ``- {image: x}``, a JSON compose file, ``environment: [IMAGE=x]``): the same keys and
  ``NAME=value`` items inside them (:mod:`tagkeeper.gate.yaml_flow`). One the reader
  cannot follow is not skipped: its image keys are reported *unresolved* (fail closed).
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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tagkeeper.gate.findings import (
    Finding,
    Kind,
    expand,
    is_image_name,
    make_finding,
    printable,
)
from tagkeeper.gate.rules import Code, Policy, Verdict
from tagkeeper.gate.shell import scan_shell
from tagkeeper.gate.yaml_flow import BLOCK_KEY_RE, FLOW_START_RE, scan_flow
from tagkeeper.gate.yaml_scalars import ScalarError, read_quoted

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

_YAML_LIST_ITEM_RE = re.compile(r"^[ \t]*-[ \t]+")
_YAML_LIST_ENV_RE = re.compile(
    r"""^[ \t]*-[ \t]+(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*?)[ \t]*(?:[ \t]#.*)?$"""
)
_ASSIGNMENT_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)", re.DOTALL)
_YAML_MAPPING_KEY_RE = re.compile(r"""^(?:-[ \t]+)?["']?[^\s#'"]+["']?[ \t]*:(?:[ \t]|$)""")
_BLOCK_RE = re.compile(r"[|>][-+0-9]*")
_PROPERTIES_RE = re.compile(r"(?:!!?[A-Za-z0-9_]*|&[^\s]+)[ \t]+")
_AFTER_QUOTE_RE = re.compile(r"[ \t]*(?:#.*)?")
_COMMENT_RE = re.compile(r"[ \t]#")


# --------------------------------------------------------------------------- YAML


@dataclass(frozen=True, slots=True)
class _Value:
    """A YAML value in block context: its text, where it starts (0-based), the last line it
    uses, why it cannot be known (``problem``) or read at all (``broken``)."""

    text: str
    row: int
    col: int
    end: int
    problem: str | None = None
    broken: str | None = None
    plain: bool = False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _next_content(lines: list[str], index: int) -> int | None:
    for j in range(index + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped and not stripped.startswith("#"):
            return j
    return None


def _read_value(lines: list[str], row: int, col: int, key_col: int) -> _Value | None:
    """The value that starts at ``lines[row][col]`` (after ``key:``); ``None`` for none.

    ``key_col``: the key's column; a plain value continues on the lines indented more.
    """
    line = lines[row]
    while match := _PROPERTIES_RE.match(line, col):  # YAML tags and anchors
        col = match.end()
    body = line[col:]
    if not body or body.startswith("#"):
        return None
    if body.startswith("*"):
        alias = body.split()[0]
        return _Value(alias, row, col, row, f"YAML alias {alias} (the anchored value is not read)")
    if body[0] in "\"'":
        try:
            quoted = read_quoted(lines, row, col)
        except ScalarError as exc:  # shown as written, inside its quotes on this line
            written = body[1:].rpartition(body[0])[0] or body[1:].rstrip()
            # where it ends is unknown: the lines after it are read as usual
            return _Value(written, row, col + 1, row, broken=exc.why)
        after = lines[quoted.row][quoted.col :]
        broken = None if _AFTER_QUOTE_RE.fullmatch(after) else "text after the closing quote"
        return _Value(quoted.text, row, col + 1, quoted.row, broken=broken)
    comment = _COMMENT_RE.search(body)
    text = (body[: comment.start()] if comment else body).rstrip()
    if _BLOCK_RE.fullmatch(text):  # a block scalar header: the caller reads the lines
        return _Value(text, row, col, row, plain=True)
    end, broken = row, None
    breaks = 0
    for j in range(row + 1, len(lines)):  # a plain value folds the lines indented more
        stripped = lines[j].strip(" \t")
        if not stripped:
            breaks += 1
            continue
        if _indent(lines[j]) <= key_col:
            break
        if comment is not None or stripped.startswith("#"):
            more = j if not stripped.startswith("#") else _next_content(lines, j)
            if more is not None and _indent(lines[more]) > key_col:
                broken = "a plain value that goes on after a comment"
            break
        comment = _COMMENT_RE.search(stripped)
        text += ("\n" * breaks if breaks else " ") + (
            stripped[: comment.start()] if comment else stripped
        ).rstrip()
        breaks, end = 0, j
    return _Value(text, row, col, end, broken=broken, plain=True)


def _block_scalar(lines: list[str], row: int, style: str, key_col: int) -> _Value | None:
    """A literal (``|``) or folded (``>``) block scalar after line ``row``."""
    content: list[int] = []
    for j in range(row + 1, len(lines)):
        if not lines[j].strip():
            continue
        if _indent(lines[j]) <= key_col:
            break
        content.append(j)
    if not content:
        return None
    first = content[0]
    joiner = "\n" if style.startswith("|") else " "
    text = joiner.join(lines[j].strip() for j in content)
    return _Value(text, first, _indent(lines[first]), content[-1])


def scan_yaml(text: str, file: str, variables: Mapping[str, str] | None = None) -> list[Finding]:
    """Image references under YAML keys (``image``, ``IMAGE``, ``*_IMAGE``) and in
    ``- NAME=value`` list items, in block style and inside flow collections."""
    lines = text.splitlines()
    found: list[Finding] = []
    skip_to = 0  # lines before this one belong to a value or flow collection already read
    block_only_to = 0  # lines before this one belong to one that could not be read
    for index, line in enumerate(lines):
        if index < skip_to:
            continue
        flow = FLOW_START_RE.match(line) if index >= block_only_to else None
        if flow:
            flow_found, last, readable = scan_flow(
                lines, index, flow.start("open"), file, variables
            )
            found.extend(flow_found)
            if readable:
                skip_to = last + 1
            else:  # its other lines are still read as block YAML, each once
                block_only_to = last + 1
            continue
        read = _block_finding(lines, index, file, variables)
        if read is not None:
            finding, last = read
            found.append(finding)
            skip_to = last + 1
    return found


def _list_item(
    lines: list[str], index: int, file: str, variables: Mapping[str, str] | None
) -> tuple[Finding, int] | None:
    """A ``- NAME=value`` item (plain or quoted) of a compose ``environment:`` list."""
    line = lines[index]
    item = _YAML_LIST_ITEM_RE.match(line)
    if item is None:
        return None
    col = item.end()
    if line[col : col + 1] not in ('"', "'"):
        listed = _YAML_LIST_ENV_RE.match(line)
        if listed is None or not is_image_name(listed.group("name")):
            return None
        finding = make_finding(
            file,
            index + 1,
            listed.start("value") + 1,
            name=listed.group("name"),
            value=listed.group("value"),
            kind=Kind.ASSIGNMENT,
            problem=None,
            variables=variables,
        )
        return finding, index
    try:
        quoted = read_quoted(lines, index, col)
    except ScalarError as exc:
        head = _ASSIGNMENT_RE.match(line, col + 1)
        if head is None or not is_image_name(head.group("name")):
            return None
        broken = make_finding(
            file,
            index + 1,
            head.start("value") + 1,
            name=head.group("name"),
            value=line[head.start("value") :].strip(),
            kind=Kind.ASSIGNMENT,
            problem=None,
            variables=variables,
            broken=exc.why,
        )
        return broken, index
    assignment = _ASSIGNMENT_RE.fullmatch(quoted.text)
    if assignment is None or not is_image_name(assignment.group("name")):
        return None
    after = lines[quoted.row][quoted.col :]
    finding = make_finding(
        file,
        index + 1,
        col + 1 + assignment.start("value") + 1,
        name=assignment.group("name"),
        value=assignment.group("value"),
        kind=Kind.ASSIGNMENT,
        problem=None,
        variables=variables,
        broken=None if _AFTER_QUOTE_RE.fullmatch(after) else "text after the closing quote",
    )
    return finding, quoted.row


def _block_finding(
    lines: list[str], index: int, file: str, variables: Mapping[str, str] | None
) -> tuple[Finding, int] | None:
    """The finding on line ``index``, and the last line its value uses."""
    listed = _list_item(lines, index, file, variables)
    if listed is not None:
        return listed
    line = lines[index]
    match = BLOCK_KEY_RE.match(line)
    if not match or not is_image_name(match.group("key")):
        return None
    key_col = match.start("key") - len(match.group("q"))
    value: _Value | None = None
    if match.group("rest"):
        value = _read_value(lines, index, match.start("rest"), key_col)
    if value is not None and value.plain and _BLOCK_RE.fullmatch(value.text):
        value = _block_scalar(lines, value.row, value.text, key_col)
        if value is None:
            return None
    elif value is None:  # the value is on the following lines
        following = _next_content(lines, index)
        if following is None or _indent(lines[following]) <= _indent(line):
            return None  # null value
        head = lines[following].strip()
        if (
            _YAML_MAPPING_KEY_RE.match(head)
            or head == "-"
            or head.startswith(("- ", "-\t"))
            or FLOW_START_RE.match(head)
        ):
            return None  # a nested mapping or a list, not a reference
        value = _read_value(lines, following, _indent(lines[following]), key_col)
        if value is None:
            return None
    finding = make_finding(
        file,
        value.row + 1,
        value.col + 1,
        name=match.group("key"),
        value=value.text,
        kind=Kind.YAML_KEY,
        problem=value.problem,
        variables=variables,
        broken=value.broken,
    )
    return finding, value.end


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
    """Judge each finding: a broken one is refused as ``unparseable``, an unresolved one
    as ``unresolved``. The reference shown is escaped to printable ASCII."""
    verdicts: list[Verdict] = []
    for finding in findings:
        if finding.broken is not None:
            verdict = Verdict(
                printable(finding.raw),
                False,
                Code.UNPARSEABLE,
                f"not an image reference: YAML cannot read this value ({finding.broken})",
            )
        elif finding.unresolved is not None:
            verdict = Verdict(
                printable(finding.raw),
                False,
                Code.UNRESOLVED,
                f"cannot tell what this deploys: {finding.unresolved}; check the resolved "
                "value (for example `docker compose config | tagkeeper check --file -`) "
                "or pass the variables (--var NAME=VALUE, --resolve-env)",
            )
        else:
            verdict = replace(policy.judge_text(finding.text), ref=printable(finding.text))
        verdicts.append(verdict.at(finding.file, finding.line, finding.column))
    return verdicts


# --------------------------------------------------------------------------- whose images


_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def canonical_repository(repository: str) -> str:
    """A repository as Docker names it: ``postgres`` and ``index.docker.io/library/postgres``
    are ``docker.io/library/postgres``; ``acme/app`` is ``docker.io/acme/app``."""
    first, _, rest = repository.partition("/")
    has_host = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not has_host:
        first, rest = "docker.io", repository
    elif first in _DOCKER_HUB:
        first = "docker.io"
    if first == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return f"{first}/{rest}"


def repositories(names: Iterable[str], *, what: str = "--only") -> frozenset[str]:
    """``names`` checked as image repositories (no tag, no digest) and made canonical;
    a :class:`~tagkeeper.errors.UsageError` naming ``what`` for one that is not."""
    from tagkeeper.errors import UsageError
    from tagkeeper.refs import parse_reference

    found: set[str] = set()
    for name in names:
        try:
            ref = parse_reference(name)
        except UsageError as exc:
            raise UsageError(f"{what} {exc.message}", hint=exc.hint) from None
        if ref.tag is not None or ref.digest is not None:
            raise UsageError(
                f"{what} {name!r} names a tag or digest",
                hint=f"name the repository only: {what} {ref.repository}",
            )
        found.add(canonical_repository(ref.repository))
    return frozenset(found)


def select_findings(
    findings: Iterable[Finding], only: frozenset[str]
) -> tuple[list[Finding], list[Finding]]:
    """``(judged, skipped)``: with ``only`` (canonical repositories, see
    :func:`repositories`), a finding that names another repository is skipped. One that
    cannot be read, resolved or parsed is judged: nobody can tell it is not one of them."""
    from tagkeeper.errors import UsageError
    from tagkeeper.refs import parse_reference

    judged: list[Finding] = []
    skipped: list[Finding] = []
    for finding in findings:
        if not only or finding.broken is not None or finding.unresolved is not None:
            judged.append(finding)
            continue
        try:
            repository = canonical_repository(parse_reference(finding.text).repository)
        except UsageError:
            judged.append(finding)
            continue
        (judged if repository in only else skipped).append(finding)
    return judged, skipped
