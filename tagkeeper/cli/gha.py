"""GitHub Actions runtime files: step outputs, the step summary, and annotations."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping


def in_actions(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def _delimiter(value: str) -> str:
    import secrets

    while True:
        candidate = f"ghadelimiter_{secrets.token_hex(16)}"
        if candidate not in value:
            return candidate


def format_outputs(outputs: Mapping[str, str]) -> str:
    """Render ``name=value`` lines, using a random heredoc delimiter for multi-line values."""
    chunks: list[str] = []
    for name, value in outputs.items():
        if not name or "\n" in name or "=" in name or "<<" in name:
            raise UsageError(f"{name!r} is not a valid step output name")
        if "\n" in value or "\r" in value:
            delim = _delimiter(value)
            chunks.append(f"{name}<<{delim}\n{value}\n{delim}\n")
        else:
            chunks.append(f"{name}={value}\n")
    return "".join(chunks)


def _runtime_file(variable: str, environ: Mapping[str, str] | None) -> Path:
    env = os.environ if environ is None else environ
    path = env.get(variable)
    if not path:
        raise UsageError(
            f"${variable} is not set",
            hint="--format github works inside a GitHub Actions step; use json or text elsewhere",
        )
    return Path(path)


def _append(variable: str, path: Path, text: str) -> None:
    """Append ``text`` to a runtime file; :class:`UsageError` when it cannot be written."""
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        if isinstance(exc, IsADirectoryError):
            reason = "it is a directory"
        elif isinstance(exc, FileNotFoundError):
            reason = "its folder does not exist"
        else:
            reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"cannot write ${variable} ({path}): {reason}",
            hint=f"${variable} is set by the GitHub Actions runner to a file it reads after "
            "the step; outside a runner, unset it or point it at a writable file",
        ) from None


def write_outputs(outputs: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT``."""
    text = format_outputs(outputs)
    _append("GITHUB_OUTPUT", _runtime_file("GITHUB_OUTPUT", environ), text)


def append_summary(markdown: str, environ: Mapping[str, str] | None = None) -> None:
    """Append Markdown to the job summary (``$GITHUB_STEP_SUMMARY``) when there is one."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    _append("GITHUB_STEP_SUMMARY", Path(path), text)


def preflight(environ: Mapping[str, str] | None = None) -> None:
    """Check, before acting, that ``--format github`` will be able to write its files.

    ``$GITHUB_OUTPUT`` must be set and writable; ``$GITHUB_STEP_SUMMARY`` writable when
    set. Raises the :class:`UsageError` that :func:`write_outputs` or
    :func:`append_summary` would raise later; writes nothing.
    """
    env = os.environ if environ is None else environ
    _append("GITHUB_OUTPUT", _runtime_file("GITHUB_OUTPUT", env), "")
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        _append("GITHUB_STEP_SUMMARY", Path(summary), "")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str, message: str, *, file: str | None = None, line: int | None = None,
    title: str | None = None,
) -> str:
    """A ``::error``/``::warning``/``::notice`` workflow command, safely escaped.

    Each part is made :func:`~tagkeeper.untrusted.printable` first (no terminal escapes,
    no line of the message read as another workflow command), then escaped as the
    runner reads it: the message's lines stay lines of the annotation.
    """
    from tagkeeper.untrusted import printable

    if level not in ("error", "warning", "notice"):
        raise ValueError(level)
    props = []
    if file is not None:
        props.append(f"file={_escape_property(printable(file))}")
    if line is not None:
        props.append(f"line={line}")
    if title is not None:
        props.append(f"title={_escape_property(printable(title))}")
    head = f"::{level}" + (" " + ",".join(props) if props else "")
    return f"{head}::{_escape_data(printable(message))}"


# What gives outside text markup in (GitHub-flavoured) Markdown: inline syntax (code,
# emphasis, links and images need ``[``, table cells ``|``), escaped with a backslash as
# CommonMark allows, and HTML's own characters, written as character references. A line
# that starts with other punctuation (``#``, ``-``, ``+``, ``=``, ``1.``) could start a
# heading or a list: that first character is escaped too.
_MD_INLINE = frozenset("\\`*_[]|~")
_HTML_REFERENCES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;"}
_ORDERED = re.compile(r"^(\d{1,9})([.)])")


def md_escape(text: str) -> str:
    """``text`` as plain Markdown text (a table cell, a sentence): one line, no HTML,
    no Markdown markup (links, images, emphasis, code, table pipes, a heading or list at
    the start), no control characters.

    Every summary puts what came from outside through this or :func:`md_code`.
    """
    from tagkeeper.untrusted import neutralise

    safe = neutralise(text, limit=None)
    out = "".join(
        _HTML_REFERENCES.get(ch) or (f"\\{ch}" if ch in _MD_INLINE else ch) for ch in safe
    )
    if out[:1] in "#-+=!.:;,/?@$%^'(){}" and out[:1]:
        out = f"\\{out}"
    return _ORDERED.sub(r"\1\\\2", out)


def md_code(text: str) -> str:
    """``text`` as a Markdown code span, safe in a table cell: one line, no control
    characters, a fence longer than any run of backticks inside, ``|`` escaped (GitHub
    reads ``\\|`` as a pipe inside a table's code span)."""
    from tagkeeper.untrusted import neutralise

    body = neutralise(text, limit=None).replace("|", "\\|")
    runs = [len(run) for run in re.findall(r"`+", body)]
    fence = "`" * (max(runs, default=0) + 1)
    if not body or body.startswith(("`", " ")) or body.endswith(("`", " ")):
        body = f" {body} "
    return f"{fence}{body}{fence}"
