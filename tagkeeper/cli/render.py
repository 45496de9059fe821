"""The one place where the CLI escapes what it prints, for each kind of output.

Every renderer of every command calls these instead of escaping on its own:

* :func:`text`: a value in a line for people (a terminal, a CI log): outside text
  (tags, reasons quoting a registry, error words) goes through
  :func:`tagkeeper.untrusted.neutralise`, so it can neither end the line, drive the
  terminal nor start a workflow command.
* :func:`md`: a value in Markdown (a table cell, a list item of a step summary or a
  report file): neutralised, then Markdown and HTML made literal (GitHub renders HTML
  in summaries).
* :func:`code`: a value shown as inline code in Markdown.

JSON needs no escaping here: ``json.dumps`` escapes control characters and the
document is parsed, never rendered.
"""

from __future__ import annotations

from tagkeeper.untrusted import neutralise

__all__ = ["code", "md", "text"]

_MD_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "|": "\\|",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "[": "\\[",
        "]": "\\]",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
    }
)


def text(value: str, *, limit: int | None = None) -> str:
    """``value`` fit for one line on a terminal or in a CI log (see the module docs)."""
    return neutralise(value, limit=limit)


def md(value: str) -> str:
    """``value`` as literal Markdown text (a table cell, a list item): one line, no
    markup, no HTML."""
    return neutralise(value, limit=None).translate(_MD_SPECIAL)


def code(value: str) -> str:
    """``value`` as inline code in Markdown (a digest, a tag, an image name)."""
    shown = neutralise(value, limit=None).replace("|", "\\|")
    fence = "``" if "`" in shown else "`"
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"
