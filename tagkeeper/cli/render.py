"""The one place the CLI's renderers escape what they print, for each kind of output.

Every renderer calls these instead of escaping on its own:

* :func:`text`: a value in a line for people (a terminal, a CI log): outside text
  (tags, reasons quoting a registry, error words) goes through
  :func:`tagkeeper.untrusted.neutralise`, so it can neither end the line, drive the
  terminal nor start a workflow command (the CLI's writers add
  :func:`tagkeeper.untrusted.printable` on top).
* :func:`md`: a value as Markdown text (a table cell, a list item of a step summary or
  a report file), and :func:`code`: a value as a code span; both are the Actions
  module's Markdown escapes (:func:`tagkeeper.cli.gha.md_escape`,
  :func:`tagkeeper.cli.gha.md_code`), so every summary escapes alike.

JSON needs no escaping here: ``json.dumps`` escapes control characters and the CLI's
JSON writer the rest (:func:`tagkeeper.untrusted.json_text`).
"""

from __future__ import annotations

from tagkeeper.cli.gha import md_code, md_escape
from tagkeeper.untrusted import neutralise

__all__ = ["code", "md", "text"]


def text(value: str, *, limit: int | None = None) -> str:
    """``value`` fit for one line on a terminal or in a CI log (see the module docs)."""
    return neutralise(value, limit=limit)


def md(value: str) -> str:
    """``value`` as literal Markdown text: one line, no markup, no HTML."""
    return md_escape(value)


def code(value: str) -> str:
    """``value`` as inline code in Markdown (a digest, a tag, an image name)."""
    return md_code(value)
