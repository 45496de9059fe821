"""GitHub Actions runtime files: step outputs, the step summary, and annotations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tagkeeper.errors import UsageError


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


def write_outputs(outputs: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT``."""
    text = format_outputs(outputs)
    with _runtime_file("GITHUB_OUTPUT", environ).open("a", encoding="utf-8") as fh:
        fh.write(text)


def append_summary(markdown: str, environ: Mapping[str, str] | None = None) -> None:
    """Append Markdown to the job summary (``$GITHUB_STEP_SUMMARY``) when there is one."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str, message: str, *, file: str | None = None, line: int | None = None,
    title: str | None = None,
) -> str:
    """A ``::error``/``::warning``/``::notice`` workflow command, safely escaped."""
    if level not in ("error", "warning", "notice"):
        raise ValueError(level)
    props = []
    if file is not None:
        props.append(f"file={_escape_property(file)}")
    if line is not None:
        props.append(f"line={line}")
    if title is not None:
        props.append(f"title={_escape_property(title)}")
    head = f"::{level}" + (" " + ",".join(props) if props else "")
    return f"{head}::{_escape_data(message)}"


def md_escape(text: str) -> str:
    """Escape text for a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "\\`")
