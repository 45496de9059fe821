"""Image assignments in shell scripts and env files: ``IMAGE=...`` where the shell reads it.

A ``NAME=value`` word sets a variable where the shell (or a program that runs commands)
reads assignments: at the start of a simple command (``PROFILE=prod IMAGE=... ./deploy.sh``,
env files, after ``;``, ``&&``, ``||``, ``|``, keywords such as ``then``), after a
declaration (``export``, ``readonly``, ``local``, ``declare``, ``typeset``), and after a
**command prefix** that runs the rest of the line, with its options looked through:
``sudo``, ``doas``, ``env``, ``nohup``, ``exec``, ``time``, ``command``, ``builtin``,
``nice``, ``timeout``, ``stdbuf``, ``ionice``, ``setsid``, ``chroot``, ``flock``,
``taskset``, in any order and nesting (``nohup sudo -E env -i IMAGE=... ./deploy.sh``).

Command lines handed over as one string are read as shell too: ``sh -c`` / ``bash -lc``
(and the other shells), ``su``/``runuser -c``, ``env -S``, ``flock -c``, ``eval`` and the
remote command of ``ssh HOST ...``. ``make`` arguments may be assignments
(``make deploy IMAGE=...``). A line ending in ``\\`` continues on the next one. In YAML,
list items (a CI ``script:`` entry) and the values of keys that hold a command (``run:``,
``script:``, ``command:``, ``entrypoint:``...) are read as command lines too.

Where the reader cannot tell what runs it does not give up, it fails closed: after an
unknown option of a prefix (it may or may not take an argument) or a command that is an
expansion (``$SUDO IMAGE=... ./deploy.sh``: ``$SUDO`` may be empty), every image
assignment in the rest of the command is reported. Shell quoting is honoured: ``$``
inside single quotes is literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

from tagkeeper.gate.findings import VAR_NAME_RE, Finding, Kind, is_image_name, make_finding
from tagkeeper.gate.findings import matching as _matching
from tagkeeper.gate.yaml_scalars import ScalarError, read_quoted

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_OPERATORS = ";&|()<>"
_REDIRECTS = frozenset({"<", ">", ">>", "<<", "<<<", "<>", ">|", ">&", "<&", "&>", "&>>", ">>&"})
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_DIGITS_RE = re.compile(r"--?[0-9]+")
_KEYWORDS = frozenset(
    {"if", "then", "do", "else", "elif", "while", "until", "!", "{", "}", "fi", "done", "esac"}
)
_DECLARATIONS = frozenset({"export", "readonly", "local", "declare", "typeset"})
_ASSIGNING_ARGUMENTS = frozenset({"make", "gmake", "xargs"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})
_MAX_DEPTH = 8  # strings inside strings inside ...: deeper ones are not read
_YAML_ITEM_RE = re.compile(r"[ \t]*(?:-[ \t]+)+")
_YAML_ENTRY_RE = re.compile(r"[ \t]*(?P<key>[A-Za-z_][A-Za-z0-9_-]*)[ \t]*:[ \t]+")
# YAML keys whose value is a shell command (GitHub Actions, GitLab CI, compose...)
_SCRIPT_KEYS = frozenset(
    {"run", "script", "before_script", "after_script", "command", "entrypoint", "cmd"}
)


@dataclass(frozen=True, slots=True)
class _Word:
    raw: str
    template: str  # compose-style template: literal '$' doubled, expansions kept
    start: int
    row: int = 0
    operator: bool = False
    expands: bool = False  # holds an unquoted or double-quoted expansion


# --------------------------------------------------------------------------- words


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
    if nxt and (VAR_NAME_RE.match(nxt) or nxt in "0123456789@*#?!-"):
        match = VAR_NAME_RE.match(line, i + 1)
        stop = match.end() if match else i + 2
        return line[i:stop], stop
    return "$$", i + 1


def _backtick(line: str, i: int) -> tuple[str, int]:
    end = line.find("`", i + 1)
    stop = len(line) if end < 0 else end + 1
    return "$(" + line[i + 1 : stop - 1] + ")", stop


def _double_quoted(line: str, i: int, template: list[str]) -> tuple[int, bool]:
    """Read a double-quoted string from ``i`` (after the quote): the closing index, and
    whether it holds an expansion."""
    n = len(line)
    expands = False
    while i < n and line[i] != '"':
        ch = line[i]
        if ch == "\\" and line[i + 1 : i + 2] in ("$", "`", '"', "\\"):
            template.append(_literal(line[i + 1]))
            i += 2
        elif ch in "$`":
            i = _expansion(line, i, template)
            expands = expands or template[-1] != "$$"
        else:
            template.append(_literal(ch))
            i += 1
    return i, expands


def _expansion(line: str, i: int, template: list[str]) -> int:
    """Append the ``$...`` or backtick expansion at ``i``; return the index after it."""
    segment, stop = _dollar(line, i) if line[i] == "$" else _backtick(line, i)
    template.append(segment)
    return stop


def _shell_words(line: str, row: int = 0) -> tuple[list[_Word], bool]:
    """The words and operators of ``line``, and whether it ends with a line continuation."""
    words: list[_Word] = []
    n = len(line)
    i = 0
    continued = False
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
            words.append(_Word(line[i:j], line[i:j], i, row, operator=True))
            i = j
            continue
        start = i
        template: list[str] = []
        expands = False
        while i < n and line[i] not in " \t\r" + _OPERATORS:
            ch = line[i]
            if ch == "\\":
                if i + 1 == n:
                    continued = True
                template.append(_literal(line[i + 1 : i + 2]))
                i += 2
            elif ch == "'":
                end = line.find("'", i + 1)
                end = n if end < 0 else end
                template.append(_literal(line[i + 1 : end]))
                i = end + 1
            elif ch == '"':
                i, inner = _double_quoted(line, i + 1, template)
                i += 1
                expands = expands or inner
            elif ch in "$`":
                i = _expansion(line, i, template)
                expands = expands or template[-1] != "$$"
            else:
                template.append(ch)
                i += 1
        i = min(i, n)
        if line[start:i] != "\\":  # a lone '\' before the line end: only the continuation
            words.append(_Word(line[start:i], "".join(template), start, row, expands=expands))
    return words, continued


def _value(word: _Word) -> str | None:
    """The word's text after quote removal; ``None`` when an expansion decides it."""
    return None if word.expands else _text(word)


def _text(word: _Word) -> str:
    """The word after quote removal, expansions left as written (``$VAR``): the command
    line a shell is handed, for a string passed to ``sh -c`` and the like."""
    return word.template.replace("$$", "$")


# --------------------------------------------------------------------------- prefixes


@dataclass(frozen=True, slots=True)
class _Prefix:
    """The options of a command prefix (``sudo``, ``env``...) and what follows them."""

    short_arg: str = ""  # short options that take an argument
    short_flag: str = ""  # short options that take none
    long_arg: frozenset[str] = frozenset()
    long_flag: frozenset[str] = frozenset()
    strings: frozenset[str] = frozenset()  # options whose argument is a command line
    operands: int = 0  # operands before the command (timeout DURATION, chroot DIR)
    numbers: bool = False  # -N / --N is an option (nice -10)
    dash: bool = False  # a lone '-' is an option (env -, su -)
    plus: bool = False  # +x options (sh +e)


def _names(names: str) -> frozenset[str]:
    """Option names, written as one space-separated constant."""
    return frozenset(names.split())


PREFIXES: dict[str, _Prefix] = {
    "sudo": _Prefix(
        short_arg="CDghpRrTtUu",
        short_flag="AbEeHiKklnPSsVv",
        long_arg=_names(
            "close-from chdir group host prompt chroot role type command-timeout other-user user"
        ),
        long_flag=_names(
            "askpass background bell edit help login remove-timestamp reset-timestamp list "
            "non-interactive preserve-groups preserve-env stdin shell set-home version validate"
        ),
    ),
    "doas": _Prefix(short_arg="aCu", short_flag="Lns"),
    "env": _Prefix(
        short_arg="uCS",
        short_flag="i0v",
        long_arg=_names("unset chdir split-string"),
        long_flag=_names(
            "ignore-environment null debug help version list-signal-handling block-signal "
            "default-signal ignore-signal"
        ),
        strings=_names("S split-string"),
        dash=True,
    ),
    "nohup": _Prefix(long_flag=_names("help version")),
    "exec": _Prefix(short_arg="a", short_flag="cl"),
    "time": _Prefix(
        short_arg="fo",
        short_flag="apvq",
        long_arg=_names("format output"),
        long_flag=_names("append verbose portability quiet help version"),
    ),
    "command": _Prefix(short_flag="pvV"),
    "builtin": _Prefix(),
    "nice": _Prefix(short_arg="n", long_arg=_names("adjustment"), numbers=True),
    "timeout": _Prefix(
        short_arg="sk",
        short_flag="v",
        long_arg=_names("signal kill-after"),
        long_flag=_names("foreground preserve-status verbose help version"),
        operands=1,
    ),
    "stdbuf": _Prefix(short_arg="ioe", long_arg=_names("input output error")),
    "ionice": _Prefix(
        short_arg="cnpPu",
        short_flag="t",
        long_arg=_names("class classdata pid pgid uid"),
        long_flag=_names("ignore"),
    ),
    "setsid": _Prefix(short_flag="cfw", long_flag=_names("ctty fork wait")),
    "chroot": _Prefix(
        long_arg=_names("userspec groups"), long_flag=_names("skip-chdir"), operands=1
    ),
    "flock": _Prefix(
        short_arg="wEc",
        short_flag="sxeunoFhV",
        long_arg=_names("timeout wait conflict-exit-code command"),
        long_flag=_names("shared exclusive unlock nonblock close no-fork"),
        strings=_names("c command"),
        operands=1,
    ),
    "taskset": _Prefix(short_flag="acp", long_flag=_names("all-tasks cpu-list"), operands=1),
}
_SHELL_OPTIONS = _Prefix(
    plus=True,
    short_arg="oO",
    short_flag="abefhkmnptuvxBCEHPTilrsDc",
    long_arg=_names("rcfile init-file"),
    long_flag=_names(
        "login noprofile norc posix restricted verbose version help noediting debugger "
        "dump-strings dump-po-strings pretty-print"
    ),
)
_SU_OPTIONS = _Prefix(
    short_arg="cgGsCw",
    short_flag="flmpPT",
    long_arg=_names("command session-command group supp-group shell whitelist-environment"),
    long_flag=_names("login preserve-environment pty fast help version"),
    strings=_names("c command session-command"),
    dash=True,
)
_SSH_OPTIONS = _Prefix(short_arg="BbcDEeFIiJLlmOoPpQRSWw", short_flag="46AaCfGgKkMNnqsTtVvXxYy")


@dataclass(slots=True)
class _Options:
    """What reading a prefix's options found."""

    end: int  # index of the first word after the options (and operands)
    understood: bool = True  # False: an option tagkeeper does not know (or an expansion)
    strings: list[tuple[str, _Word, int]] = field(default_factory=list)  # text, word, offset
    flags: set[str] = field(default_factory=set)  # the short flags seen (sh -c)


def _option(words: Sequence[_Word], i: int, text: str, spec: _Prefix, found: _Options) -> int:
    """Read the option ``text`` (``words[i]``, starting with ``-``): how many words it
    takes, or 0 when ``spec`` does not know it."""
    word = words[i]
    following = words[i + 1] if i + 1 < len(words) else None
    if spec.numbers and _DIGITS_RE.fullmatch(text):
        return 1
    if text.startswith("--"):
        name, equals, inline = text[2:].partition("=")
        if name in spec.long_flag:
            return 1
        if name not in spec.long_arg:
            return 0
        if name in spec.strings and equals:
            found.strings.append((inline, word, word.raw.find("=") + 1))
        elif name in spec.strings and following is not None:
            found.strings.append((_text(following), following, 0))
        return 1 if equals else 2
    for j, letter in enumerate(text[1:], start=1):
        if letter in spec.short_arg:
            rest = text[j + 1 :]
            if letter in spec.strings and rest:
                found.strings.append((rest, word, word.raw.find(letter) + 1))
            elif letter in spec.strings and following is not None:
                found.strings.append((_text(following), following, 0))
            return 1 if rest else 2
        if letter not in spec.short_flag:
            return 0
        found.flags.add(letter)
    return 1


def _options(words: Sequence[_Word], i: int, spec: _Prefix, *, operands: bool = True) -> _Options:
    """Skip the options of ``spec`` (and its operands) from ``words[i]``."""
    found = _Options(i)
    while i < len(words):
        if words[i].operator:  # a redirection among the options, and its target
            i += 2
            continue
        text = _value(words[i])
        if text is None:  # an expansion: what it holds cannot be told
            found.end, found.understood = i, False
            return found
        if text == "--":
            i += 1
            break
        if text == "-" and spec.dash:
            i += 1
            continue
        if spec.plus and text.startswith("+") and len(text) > 1:
            text = "-" + text[1:]
        if not text.startswith("-") or text == "-":
            break
        taken = _option(words, i, text, spec, found)
        if not taken:
            found.end, found.understood = i, False
            return found
        i += taken
    found.end = i
    if operands and spec.operands:
        for _ in range(spec.operands):
            if i < len(words) and not words[i].operator:
                i += 1
        # options may follow the operands too (flock FILE -c CMD)
        more = _options(words, i, spec, operands=False)
        found.end, found.understood = more.end, more.understood
        found.strings.extend(more.strings)
        found.flags |= more.flags
    return found


# --------------------------------------------------------------------------- commands


class _Mode(Enum):
    START = "start"  # assignments, then a command word
    DECLARE = "declare"  # after export/readonly/...: every word may be an assignment
    LENIENT = "lenient"  # what runs is unknown: every image assignment counts


@dataclass(frozen=True, slots=True)
class _Context:
    file: str
    variables: Mapping[str, str] | None
    line_offset: int = 0  # column of a nested string's first character, 0-based
    depth: int = 0


def _assignment(word: _Word, ctx: _Context) -> Finding | None:
    match = _ASSIGN_RE.match(word.raw)
    if match is None or not is_image_name(match.group(1)):
        return None
    name, append = match.group(1), match.group(2)
    cut = match.end()
    template = word.template[cut:]
    column = ctx.line_offset + word.start + cut + 1
    if word.raw[cut:][:1] in ("'", '"'):
        column += 1
    return make_finding(
        ctx.file,
        word.row + 1,
        column,
        name=name,
        value=template,
        raw=template.replace("$$", "$"),
        kind=Kind.ASSIGNMENT,
        problem=f"'+=' appends to the value ${name} had before" if append else None,
        variables=ctx.variables,
    )


def _is_assignment(word: _Word) -> bool:
    return not word.operator and _ASSIGN_RE.match(word.raw) is not None


def _command(words: Sequence[_Word], ctx: _Context) -> list[Finding]:
    """The image assignments of one simple command (its words, redirections included)."""
    found: list[Finding] = []
    mode = _Mode.START
    i = 0
    while i < len(words):
        word = words[i]
        if word.operator:  # a redirection: its target is no command
            i += 2
            continue
        if word.raw.isdigit() and i + 1 < len(words):
            nxt = words[i + 1]
            if nxt.operator and nxt.row == word.row and nxt.start == word.start + len(word.raw):
                i += 1  # the file descriptor of '2>&1'
                continue
        if mode is not _Mode.START or _is_assignment(word):
            finding = _assignment(word, ctx)
            if finding is not None:
                found.append(finding)
            i += 1
            continue
        name = _value(word)
        if name is None:  # '$SUDO IMAGE=... ./deploy.sh': $SUDO may be empty
            mode = _Mode.LENIENT
            i += 1
            continue
        name = name.rpartition("/")[2]
        if name in _KEYWORDS:
            i += 1
        elif name in _DECLARATIONS:
            mode, i = _Mode.DECLARE, i + 1
        elif name in _ASSIGNING_ARGUMENTS:
            mode, i = _Mode.LENIENT, i + 1
        elif name in PREFIXES:
            options = _options(words, i + 1, PREFIXES[name])
            found.extend(_strings(options, ctx))
            if not options.understood:
                mode = _Mode.LENIENT
            i = options.end
        else:
            found.extend(_runs_a_string(name, words, i + 1, ctx))
            return found  # a command: the rest are its arguments
    return found


def _runs_a_string(name: str, words: Sequence[_Word], i: int, ctx: _Context) -> list[Finding]:
    """Findings in the command line that ``name`` (a shell, su, ssh, eval) is handed."""
    if name in _SHELLS:
        if name == "busybox":
            if i >= len(words) or _value(words[i]) not in _SHELLS:
                return []
            i += 1
        options = _options(words, i, _SHELL_OPTIONS)
        at_string = options.end < len(words) and (
            options.understood or _value(words[options.end]) is None  # -c "$CMD ..."
        )
        if "c" in options.flags and at_string:
            nested = words[options.end]
            return _strings(_Options(options.end, strings=[(_text(nested), nested, 0)]), ctx)
        if not at_string:  # an option tagkeeper does not know: any later word may be it
            rest = [(_text(w), w, 0) for w in words[options.end + 1 :] if not w.operator]
            return _strings(_Options(options.end, strings=rest), ctx)
        return []
    if name in ("su", "runuser"):
        # su permutes its options: '-c' may come after the user
        found: list[Finding] = []
        while i < len(words):
            options = _options(words, i, _SU_OPTIONS, operands=False)
            found.extend(_strings(options, ctx))
            i = max(options.end, i) + 1
        return found
    if name == "ssh":
        options = _options(words, i, _SSH_OPTIONS)
        if not options.understood:  # where the remote command starts is unknown
            return [f for w in words[options.end :] if (f := _assignment(w, ctx)) is not None]
        remote = [w for w in words[options.end + 1 :] if not w.operator]
        if not remote:
            return []
        text = " ".join(_text(w) for w in remote)  # the remote shell reads them as one line
        return _strings(_Options(0, strings=[(text, remote[0], 0)]), ctx)
    if name == "eval":
        args = [w for w in words[i:] if not w.operator]
        if not args:
            return []
        text = " ".join(_text(w) for w in args)
        return _strings(_Options(0, strings=[(text, args[0], 0)]), ctx)
    return []


def _strings(options: _Options, ctx: _Context) -> list[Finding]:
    """Findings in command lines passed as strings (``-c 'IMAGE=... ./deploy.sh'``)."""
    if ctx.depth >= _MAX_DEPTH:
        return []
    found: list[Finding] = []
    for text, word, offset in options.strings:
        # the string's first character: after the option's name, inside a simple quote
        column = word.start + offset
        if word.raw[offset : offset + 1] in ("'", '"') and "\\" not in word.raw:
            column += 1
        nested = _Context(ctx.file, ctx.variables, ctx.line_offset + column, ctx.depth + 1)
        found.extend(_line_commands(text, word.row, nested))
    return found


def _line_commands(text: str, row: int, ctx: _Context) -> list[Finding]:
    words, _ = _shell_words(text, row)
    found: list[Finding] = []
    for command in _split(words):
        found.extend(_command(command, ctx))
    return found


def _split(words: Sequence[_Word]) -> list[list[_Word]]:
    """Simple commands: words between control operators (redirections stay inside)."""
    commands: list[list[_Word]] = [[]]
    for word in words:
        if word.operator and word.raw not in _REDIRECTS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _yaml_script(line: str) -> tuple[str, int] | None:
    """The command in a YAML line that holds one, and its column (0-based).

    A list item (``- sudo IMAGE=... ./deploy.sh``, a CI ``script:`` entry) and the value
    of a key that holds a command (``run: ...``, ``- run: ...``) are read as shell; a
    quoted value is decoded as YAML first. ``("", 0)`` for any other list item line.
    """
    item = _YAML_ITEM_RE.match(line)
    start = item.end() if item else 0
    entry = _YAML_ENTRY_RE.match(line, start)
    if entry is not None:
        if entry.group("key") not in _SCRIPT_KEYS:
            return ("", 0) if item else None
        start = entry.end()
    elif item is None:
        return None
    if line[start : start + 1] in ("'", '"'):
        try:
            return read_quoted([line], 0, start).text, start + 1
        except ScalarError:
            return "", 0  # YAML cannot read it; scan_yaml says so where it matters
    return line[start:], start


def scan_shell(text: str, file: str, variables: Mapping[str, str] | None = None) -> list[Finding]:
    """``IMAGE=``-style assignments where shell commands and env files set them."""
    ctx = _Context(file, variables)
    found: list[Finding] = []
    pending: list[_Word] = []  # a command continued on the next line
    for index, line in enumerate(text.splitlines()):
        script = None if pending else _yaml_script(line)
        if script is not None:  # a command inside YAML: read on its own
            command_line, column = script
            found.extend(_line_commands(command_line, index, replace(ctx, line_offset=column)))
            continue
        words, continued = _shell_words(line, index)
        commands = _split([*pending, *words])
        ended = not words or (words[-1].operator and words[-1].raw not in _REDIRECTS)
        pending = commands.pop() if continued and commands and not ended else []
        for command in commands:
            found.extend(_command(command, ctx))
    if pending:
        found.extend(_command(pending, ctx))
    return found
