"""Text that came from outside (registries, token services, proxies, deploy history).

Registry error bodies, tag names and image config fields can hold line breaks,
terminal escape sequences and GitHub workflow commands (``::error::``, ``::add-mask::``,
``##[...]``). :func:`neutralise` is the one function that makes such text safe to put
in a message, a log line, a terminal or a CI log; the library applies it to every
outside string it puts into an error or a warning, and renderers apply it to the
outside strings they print (tags, digests from history, reasons). :func:`loads` reads
JSON from outside without letting a hostile document crash the run.
"""

from __future__ import annotations

import json
from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
DEFAULT_LIMIT = 500


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if ch.isprintable():  # not: controls, format characters (bidirectional overrides
        return ch  # such as U+202E), separators other than space, unassigned...
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def neutralise(text: str, *, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` on one line, safe to print anywhere.

    Every character that does not print as itself (controls, format characters, spaces
    other than the plain space, unassigned code points) is written as an escape (``\\n``,
    ``\\x1b``, ``\\u202e``; a backslash as ``\\\\``), so the text can neither end a line
    nor drive a terminal; ``::`` is written ``:\\x3a`` and ``##[`` ``#\\x23[``, so no part
    of it can be read as a GitHub workflow command. Text longer than ``limit``
    characters (after escaping) is cut, and says how much was left out.
    """
    out = "".join(map(_escape, text))
    out = out.replace("::", ":\\x3a").replace("##[", "#\\x23[")
    if limit is not None and len(out) > limit:
        left = len(out) - limit
        out = f"{out[:limit]}... ({left} more characters)"
    return out


def _escape_kept(ch: str) -> str:
    """:func:`_escape`, but line breaks, tabs and backslashes stay as they are."""
    return ch if ch in "\n\t\\" else _escape(ch)


def printable(text: str) -> str:
    """Output that may hold outside text (a message, a table, a report), safe to print.

    The safety net under :func:`neutralise`, applied once where the CLI writes: the
    lines stay as they are, but every other character that does not print as itself is
    escaped (``\\x1b``, ``\\r``, ``\\u202e``), ``##[`` is written ``#\\x23[`` and a line
    cannot start (after blanks) with ``::``, so nothing in it can drive a terminal or be
    read as a GitHub workflow command. Text that :func:`neutralise` made safe passes
    through unchanged.
    """
    out = "".join(map(_escape_kept, text)).replace("##[", "#\\x23[")
    if "::" not in out:
        return out
    lines = out.split("\n")
    for i, line in enumerate(lines):
        body = line.lstrip(" \t")
        if body.startswith("::"):
            lines[i] = line[: len(line) - len(body)] + ":\\x3a" + body[2:]
    return "\n".join(lines)


def json_text(document: str) -> str:
    """A JSON document's text with ``::`` and ``##[`` written as JSON escapes
    (``:\\u003a``, ``#\\u0023[``): the same data, but no line of it can be read as a
    workflow command when it is printed to a CI log (``json.dumps`` already escapes
    control characters)."""
    return document.replace("::", ":\\u003a").replace("##[", "#\\u0023[")


class NotJson(ValueError):
    """Bytes from outside that are not the JSON document expected (the reason says why)."""


def loads(data: bytes | str) -> Any:
    """JSON from outside: the document, or :class:`NotJson` with a reason.

    A document nested deeper than the interpreter recurses (a hostile ``[[[[...]]]]``) is
    refused as such rather than crashing the run, and so are bytes that are not UTF-8.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise NotJson("the JSON is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise NotJson(f"not JSON ({neutralise(str(exc), limit=120)})") from None
