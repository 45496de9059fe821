"""Finding image references in deploy files: text in, located references out.

Two forms are recognised in every file, so a shell script that writes a compose file
through a heredoc is covered as well as a plain ``.env`` file:

* **YAML keys**: ``image: <ref>`` (compose services, Kubernetes pods, workflow
  containers), and keys named ``IMAGE`` or ``*_IMAGE`` (``environment:`` and ``env:``
  maps), plain, single- or double-quoted, with comments, anchors (``&name``) and
  block scalars (``image: >-`` then the value on the next line). A key whose value is a
  nested mapping (Helm's ``image: {repository, tag}``) is not a reference and is skipped;
  flow mappings (``{image: x}``) are not read.
* **Assignments**: ``IMAGE=...`` or ``*_IMAGE=...`` (any letter case) at the start of a
  shell command: env files, ``export IMAGE=...``, ``readonly``/``local``/``declare``,
  ``env IMAGE=... cmd``, inline prefixes (``PROFILE=prod IMAGE=... ./deploy.sh``), after
  ``;``, ``&&``, ``||`` and ``|``, and compose ``environment:`` list items
  (``- IMAGE=...``). Shell quoting is honoured: ``$`` inside single quotes is literal.

Values that use variables are interpolated as docker compose and the shell do
(``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``,
``${VAR:+alt}``, ``$$``) when the caller supplies the variables. Without them, or when a
variable is missing, a command substitution or a GitHub expression is involved, the
finding is *unresolved*: its reason names the variable (and the default, when there is
one) and the check refuses it, since nobody can tell what it will deploy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tagkeeper.rules import Code, Policy, Verdict


class Kind(StrEnum):
    YAML_KEY = "yaml-key"
    ASSIGNMENT = "assignment"


@dataclass(frozen=True, slots=True)
class Finding:
    """One image reference found in a file.

    ``line`` and ``column`` are 1-based; the column is that of the value's first character
    (inside its quotes). ``raw`` is the value as written (quotes removed), ``text`` the value
    after interpolation; ``unresolved`` says why ``text`` cannot be known (then ``text`` is
    ``raw``).
    """

    file: str
    line: int
    column: int
    name: str
    raw: str
    text: str
    kind: Kind
    unresolved: str | None = None


_NAME_RE = re.compile(r"(?:[A-Za-z0-9_]*_)?image", re.IGNORECASE)
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
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX_WORDS = frozenset(
    {
        "export",
        "readonly",
        "local",
        "declare",
        "typeset",
        "env",
        "then",
        "do",
        "else",
        "elif",
        "if",
        "while",
        "until",
        "!",
        "{",
        "time",
        "exec",
        "command",
    }
)
_OPERATORS = ";&|()<>"


def is_image_name(name: str) -> bool:
    """True for the names whose values are image references: ``image``, ``*_image``."""
    return _NAME_RE.fullmatch(name) is not None


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
            end = _matching(template, i + 1, "{", "}")
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
            end = _matching(template, i + 1, "(", ")")
            stop = len(template) if end < 0 else end + 1
            problems.append(f"command substitution {template[i:stop]!r}")
            i = stop
        elif (match := _VAR_NAME_RE.match(template, i + 1)) is not None:
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


def _matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
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
    match = _VAR_NAME_RE.match(body)
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
    ``- NAME=value`` list items."""
    lines = text.splitlines()
    found: list[Finding] = []
    for index, line in enumerate(lines):
        listed = _YAML_LIST_ENV_RE.match(line)
        if listed and is_image_name(listed.group("name")):
            column = listed.start("value")
            found.append(
                _finding(
                    file,
                    index + 1,
                    column + 1,
                    name=listed.group("name"),
                    value=listed.group("value"),
                    kind=Kind.ASSIGNMENT,
                    problem=None,
                    variables=variables,
                )
            )
            continue
        match = _YAML_KEY_RE.match(line)
        if not match or not is_image_name(match.group("key")):
            continue
        rest = match.group("rest") or ""
        key_indent = _indent(line)
        parsed = _yaml_value(rest)
        line_no, base = index + 1, match.start("rest")
        if parsed is not None and _BLOCK_RE.fullmatch(parsed[0]):
            parsed = None  # a block scalar: the value is on the following lines
            block = True
        else:
            block = False
        if parsed is None:
            following = _next_content(lines, index)
            if following is None or _indent(lines[following]) <= key_indent:
                continue  # null value
            content = lines[following]
            head = content.strip()
            if not block and (
                _YAML_MAPPING_KEY_RE.match(head) or head == "-" or head.startswith(("- ", "-\t"))
            ):
                continue  # a nested mapping or a list, not a reference
            value = content.strip()
            if not block:
                value_parsed = _yaml_value(value)
                if value_parsed is None:
                    continue
                value = value_parsed[0]
            line_no, base = following + 1, _indent(content)
            parsed = (value, 0, None)
        value, offset, problem = parsed
        found.append(
            _finding(
                file,
                line_no,
                base + offset + 1,
                name=match.group("key"),
                value=value,
                kind=Kind.YAML_KEY,
                problem=problem,
                variables=variables,
            )
        )
    return found


# --------------------------------------------------------------------------- shell


@dataclass(frozen=True, slots=True)
class _Word:
    raw: str
    template: str  # compose-style template: literal '$' doubled, expansions kept
    start: int
    operator: bool = False


def _literal(text: str) -> str:
    return text.replace("$", "$$")


def _dollar(line: str, i: int) -> tuple[str, int]:
    nxt = line[i + 1 : i + 2]
    if nxt == "{":
        end = _matching(line, i + 1, "{", "}")
        stop = len(line) if end < 0 else end + 1
        return line[i:stop], stop
    if nxt == "(":
        end = _matching(line, i + 1, "(", ")")
        stop = len(line) if end < 0 else end + 1
        return line[i:stop], stop
    if nxt == "$":
        return "${$}", i + 2
    if nxt and (_VAR_NAME_RE.match(nxt) or nxt in "0123456789@*#?!-"):
        match = _VAR_NAME_RE.match(line, i + 1)
        stop = match.end() if match else i + 2
        return line[i:stop], stop
    return "$$", i + 1


def _backtick(line: str, i: int) -> tuple[str, int]:
    end = line.find("`", i + 1)
    stop = len(line) if end < 0 else end + 1
    return "$(" + line[i + 1 : stop - 1] + ")", stop


def _double_quoted(line: str, i: int, template: list[str]) -> int:
    """Read a double-quoted string from ``i`` (after the quote); return the closing index."""
    n = len(line)
    while i < n and line[i] != '"':
        ch = line[i]
        if ch == "\\" and line[i + 1 : i + 2] in ("$", "`", '"', "\\"):
            template.append(_literal(line[i + 1]))
            i += 2
        elif ch == "$":
            segment, i = _dollar(line, i)
            template.append(segment)
        elif ch == "`":
            segment, i = _backtick(line, i)
            template.append(segment)
        else:
            template.append(_literal(ch))
            i += 1
    return i


def _shell_words(line: str) -> list[_Word]:
    words: list[_Word] = []
    n = len(line)
    i = 0
    while i < n:
        ch = line[i]
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            break
        if ch in _OPERATORS:
            j = i + 1
            while ch not in "()" and j < n and line[j] in "&|;<>":
                j += 1
            words.append(_Word(line[i:j], line[i:j], i, operator=True))
            i = j
            continue
        start = i
        template: list[str] = []
        while i < n and line[i] not in " \t\r" + _OPERATORS:
            ch = line[i]
            if ch == "\\":
                template.append(_literal(line[i + 1 : i + 2]))
                i += 2
            elif ch == "'":
                end = line.find("'", i + 1)
                end = n if end < 0 else end
                template.append(_literal(line[i + 1 : end]))
                i = end + 1
            elif ch == '"':
                i = _double_quoted(line, i + 1, template) + 1
            elif ch == "$":
                segment, i = _dollar(line, i)
                template.append(segment)
            elif ch == "`":
                segment, i = _backtick(line, i)
                template.append(segment)
            else:
                template.append(ch)
                i += 1
        i = min(i, n)
        words.append(_Word(line[start:i], "".join(template), start))
    return words


def scan_shell(text: str, file: str, variables: Mapping[str, str] | None = None) -> list[Finding]:
    """``IMAGE=``-style assignments at the start of shell commands and in env files."""
    found: list[Finding] = []
    for index, line in enumerate(text.splitlines()):
        if re.match(r"[ \t]*-[ \t]", line):
            continue  # a YAML list item; scan_yaml reads those
        at_start = True
        for word in _shell_words(line):
            if word.operator:
                at_start = word.raw not in ("<", ">", ">>", "<<", "<<<", ">&", "<&")
                continue
            if not at_start:
                continue
            assign = _ASSIGN_RE.match(word.raw)
            if assign:
                name = assign.group(1)
                if is_image_name(name):
                    found.append(_shell_finding(file, index + 1, word, name, variables))
                continue
            if word.raw in _PREFIX_WORDS or (word.raw.startswith("-") and len(word.raw) > 1):
                continue
            at_start = False
    return found


def _shell_finding(
    file: str, line: int, word: _Word, name: str, variables: Mapping[str, str] | None
) -> Finding:
    value_raw = word.raw[len(name) + 1 :]
    template = word.template[len(name) + 1 :]
    column = word.start + len(name) + 1 + 1
    if value_raw[:1] in ("'", '"'):
        column += 1
    raw = template.replace("$$", "$")
    problems: list[str] = []
    if not template:
        problems.append("the value is empty")
    text, more = expand(template, variables)
    problems.extend(more)
    return Finding(
        file,
        line,
        column,
        name,
        raw,
        raw if problems else text,
        Kind.ASSIGNMENT,
        "; ".join(problems) if problems else None,
    )


# --------------------------------------------------------------------------- together


def _finding(
    file: str,
    line: int,
    column: int,
    *,
    name: str,
    value: str,
    kind: Kind,
    problem: str | None,
    variables: Mapping[str, str] | None,
) -> Finding:
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
        value,
        value if problems else text,
        kind,
        "; ".join(problems) if problems else None,
    )


def scan_text(
    text: str, file: str = "<text>", variables: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every image reference in ``text`` (YAML keys and assignments), in file order."""
    found = {(f.line, f.column): f for f in scan_shell(text, file, variables)}
    for finding in scan_yaml(text, file, variables):
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
