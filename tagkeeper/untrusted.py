"""Text that came from outside (registries, token services, proxies, deploy history).

Registry error bodies, tag names and image config fields can hold line breaks,
terminal escape sequences and GitHub workflow commands (``::error::``, ``::add-mask::``,
``##[...]``). :func:`neutralise` is the one function that makes such text safe to put
in a message, a log line, a terminal or a CI log; the library applies it to every
outside string it puts into an error or a warning, and renderers apply it to the
outside strings they print (tags, digests from history, reasons).
"""

from __future__ import annotations

import unicodedata

# unicodedata categories that never print as themselves: controls, format characters
# (bidirectional overrides such as U+202E), surrogates, private use, unassigned, and
# the line and paragraph separators
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
DEFAULT_LIMIT = 500


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if unicodedata.category(ch) not in _HIDDEN:
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def neutralise(text: str, *, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` on one line, safe to print anywhere.

    Control, format and other invisible characters are written as escapes (``\\n``,
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
