"""Findings: image references located in a file, and the interpolation of their values.

A :class:`Finding` is what the YAML and shell readers (:mod:`tagkeeper.gate.scan`,
:mod:`tagkeeper.gate.shell`) report: where a value is, its name, the value as written and
as interpolated, and why it cannot be known when it cannot. Values are compose-style
templates, interpolated by :func:`expand` as docker compose and the shell do.

Text from a file is never printed as is: :func:`printable` escapes anything but printable
ASCII (a decoded ``\\e`` or newline could otherwise rewrite a terminal or inject a
workflow command into a CI log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


class Kind(StrEnum):
    YAML_KEY = "yaml-key"
    ASSIGNMENT = "assignment"


@dataclass(frozen=True, slots=True)
class Finding:
    """One image reference found in a file.

    ``line`` and ``column`` are 1-based; the column is that of the value's first character
    (inside its quotes). ``raw`` is the value as written (quotes removed, YAML escapes
    decoded), ``text`` the value after interpolation; ``unresolved`` says why ``text``
    cannot be known (then ``text`` is ``raw``); ``broken`` why the value cannot be read at
    all (a YAML escape that does not exist, say): it is then no reference.
    """

    file: str
    line: int
    column: int
    name: str
    raw: str
    text: str
    kind: Kind
    unresolved: str | None = None
    broken: str | None = None


_NAME_RE = re.compile(r"(?:[A-Za-z0-9_]*_)?image", re.IGNORECASE)
VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_image_name(name: str) -> bool:
    """True for the names whose values are image references: ``image``, ``*_image``."""
    return _NAME_RE.fullmatch(name) is not None


def printable(text: str) -> str:
    """``text`` when it is printable ASCII, else with every other character escaped."""
    if all(" " <= ch <= "~" for ch in text):
        return text
    return text.encode("unicode_escape").decode("ascii")


# --------------------------------------------------------------------------- interpolation


def expand(template: str, variables: Mapping[str, str] | None) -> tuple[str, list[str]]:
    """Interpolate ``template`` (compose syntax; ``$$`` is a literal ``$``).

    Returns the text and the problems that leave it unresolved (empty when resolved).
    ``variables=None`` means nothing is known: every variable is a problem.
    """
    out: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = matching(template, i + 1, "{", "}")
            if end < 0:
                problems.append(f"unterminated expansion {template[i:]!r}")
                break
            body = template[i + 2 : end]
            if body.startswith("{"):
                problems.append(
                    f"GitHub Actions expression {template[i : end + 1]!r} (known only in the run)"
                )
            else:
                value, more = _expand_braced(body, variables)
                out.append(value)
                problems.extend(more)
            i = end + 1
        elif nxt == "(":
            end = matching(template, i + 1, "(", ")")
            stop = len(template) if end < 0 else end + 1
            problems.append(f"command substitution {template[i:stop]!r}")
            i = stop
        elif (match := VAR_NAME_RE.match(template, i + 1)) is not None:
            value, more = _lookup(match.group(), "", "", variables)
            out.append(value)
            problems.extend(more)
            i = match.end()
        elif nxt and nxt in "0123456789@*#?!-":
            problems.append(f"shell parameter ${nxt}")
            i += 2
        else:
            out.append("$")
            i += 1
    return "".join(out), problems


def matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == open_ch:
            depth += 1
        elif text[index] == close_ch:
            depth -= 1
            if depth == 0:
                return index
    return -1


def _expand_braced(body: str, variables: Mapping[str, str] | None) -> tuple[str, list[str]]:
    match = VAR_NAME_RE.match(body)
    if match is None:
        return "", [f"unsupported expansion ${{{body}}}"]
    name, rest = match.group(), body[match.end() :]
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            return _lookup(name, op, rest[len(op) :], variables)
    if rest:
        return "", [f"unsupported expansion ${{{body}}}"]
    return _lookup(name, "", "", variables)


def _lookup(
    name: str, op: str, arg: str, variables: Mapping[str, str] | None
) -> tuple[str, list[str]]:
    if variables is None:
        if op in (":-", "-"):
            default, _ = expand(arg, None)
            return "", [f"${name} is not known (default {default!r})"]
        return "", [f"${name} is not known"]
    is_set = name in variables
    value = variables.get(name, "")
    present = is_set if op in ("", "-", "?", "+") else bool(value)
    if op in (":-", "-"):
        return (value, []) if present else expand(arg, variables)
    if op in (":+", "+"):
        return expand(arg, variables) if present else ("", [])
    if present:
        return value, []
    if op in (":?", "?"):
        return "", [f"${name} is required but not set" + (f" ({arg})" if arg else "")]
    return "", [f"${name} is not set"]


def make_finding(
    file: str,
    line: int,
    column: int,
    *,
    name: str,
    value: str,
    kind: Kind,
    problem: str | None,
    variables: Mapping[str, str] | None,
    raw: str | None = None,
    broken: str | None = None,
) -> Finding:
    """A finding for the compose-style template ``value`` (``raw``: as shown, default ``value``)."""
    shown = value if raw is None else raw
    if broken is not None:
        return Finding(file, line, column, name, shown, shown, kind, broken=broken)
    problems = [problem] if problem else []
    if not value:
        problems.append("the value is empty")
    text, more = expand(value, variables)
    problems.extend(more)
    return Finding(
        file,
        line,
        column,
        name,
        shown,
        shown if problems else text,
        kind,
        "; ".join(problems) if problems else None,
    )
