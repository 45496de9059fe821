"""Health and smoke checks as values, and the pure rules that judge an answer.

* :func:`judge_health`: healthy means a 2xx answer and, when the body is JSON with a
  ``status``, ``"UP"`` (Spring answers 200 for ``UNKNOWN``).
* :class:`SmokeCheck` and :func:`load_smoke`: the ``[[check]]`` tables of a TOML file,
  each checked when the file is read (:class:`~tagkeeper.errors.ConfigError`, exit 9,
  naming the file, the check and the key).
* :func:`render`: ``${VAR}`` in headers and bodies taken from the environment; every value
  put in is registered with the :class:`Masker`, which every output goes through.
* :func:`judge_smoke`: an answer against ``expect-status`` (default 2xx), ``expect-body``
  (a substring) and ``expect-json`` (dotted path -> value).

Text from the service (bodies, logs) is never shown raw: :func:`excerpt` keeps a short,
printable, masked piece of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tagkeeper.config import parse_duration
from tagkeeper.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

DEFAULT_SMOKE_TIMEOUT = 10.0  # a smoke request that takes longer is a failure, not a wait
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SMOKE_KEYS = frozenset(
    {"name", "path", "method", "headers", "body", "expect-status", "expect-body",
     "expect-json", "timeout"}
)  # fmt: skip
EXCERPT_CHARS = 160
MASK = "***"
SECRET_NAME_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")


class Masker:
    """Replaces every secret value it was given with ``***`` in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *values: str) -> None:
        # very short values would mask ordinary words; they are still never printed on
        # purpose, but scrubbing "1" out of every number would make output unreadable
        self._secrets.update(v for v in values if len(v) >= 3)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say they are secrets (masked in logs)."""
    return [
        value
        for name, value in env.items()
        if len(value) >= 6 and any(word in name.upper() for word in SECRET_NAME_WORDS)
    ]


def printable(text: str) -> str:
    """``text`` with control and bidi characters shown as ``?`` (never raw to a terminal)."""
    return _CONTROL_RE.sub("?", text.replace("\t", " "))


def excerpt(data: bytes | str, masker: Masker | None = None, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, masked piece of outside text for a message."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if masker is not None:
        text = masker.scrub(text)
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_lines(text: str, masker: Masker | None = None, limit: int = 400) -> list[str]:
    """A container's log as printable, masked lines (each cut at ``limit`` characters)."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = masker.scrub(raw) if masker is not None else raw
        line = printable(line)
        lines.append(line if len(line) <= limit else line[: limit - 3] + "...")
    return lines


# -- health ---------------------------------------------------------------------------------


def judge_health(status: int, body: bytes) -> tuple[bool, str]:
    """Whether one answer of a health path is healthy, and why not."""
    document = _json(body)
    reported = document.get("status") if isinstance(document, dict) else None
    if not 200 <= status <= 299:
        detail = f" (status {_shown_status(reported)})" if reported is not None else ""
        return False, f"answered {status}{detail}"
    if reported is not None and reported != "UP":
        return False, f"answered {status} with status {_shown_status(reported)}, not UP"
    return True, f"answered {status}" + (" with status UP" if reported is not None else "")


def _shown_status(value: object) -> str:
    return excerpt(value if isinstance(value, str) else json.dumps(value), limit=40)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


# -- smoke checks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmokeCheck:
    """One ``[[check]]``: a request and what its answer must be. ``${VAR}`` not yet replaced."""

    name: str
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    expect_status: tuple[int, ...] | None = None  # None: any 2xx
    expect_body: str | None = None
    expect_json: tuple[tuple[str, Any], ...] = ()
    timeout: float = DEFAULT_SMOKE_TIMEOUT

    def variables(self) -> set[str]:
        texts = [value for _, value in self.headers]
        if self.body is not None:
            texts.append(self.body)
        return {name for text in texts for name in _VAR_RE.findall(text)}


@dataclass(frozen=True, slots=True)
class Request:
    """A smoke check with its variables filled in: what is sent."""

    check: SmokeCheck
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    requests: tuple[Request, ...]
    masker: Masker = field(default_factory=Masker)


def render(checks: Sequence[SmokeCheck], environ: Mapping[str, str]) -> Rendered:
    """Fill ``${VAR}`` from ``environ``; :class:`UsageError` naming an unset variable.

    Every value substituted is a secret from then on: the returned masker hides it.
    """
    masker = Masker()
    requests: list[Request] = []
    for check in checks:
        missing = sorted(name for name in check.variables() if name not in environ)
        if missing:
            raise UsageError(
                f"smoke check {check.name!r} uses ${{{missing[0]}}}, which is not set",
                hint="export it before running (its value is masked in every output)",
            )

        def fill(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                value = environ[match[1]]
                masker.add(value)
                return value

            return _VAR_RE.sub(one, text)

        headers = tuple((name, fill(value)) for name, value in check.headers)
        body = fill(check.body) if check.body is not None else None
        requests.append(Request(check, headers, body))
    return Rendered(tuple(requests), masker)


def judge_smoke(check: SmokeCheck, status: int, body: bytes, masker: Masker) -> tuple[bool, str]:
    """Whether the answer to ``check`` is what it expects, and why not."""
    expected = check.expect_status
    if expected is None:
        if not 200 <= status <= 299:
            return False, f"answered {status}, expected 2xx; body: {excerpt(body, masker)!r}"
    elif status not in expected:
        wanted = " or ".join(str(code) for code in expected)
        return False, f"answered {status}, expected {wanted}; body: {excerpt(body, masker)!r}"
    if check.expect_body is not None:
        text = body.decode("utf-8", errors="replace")
        if check.expect_body not in text:
            return False, (
                f"the body does not contain {excerpt(check.expect_body, masker, 60)!r}; "
                f"body: {excerpt(body, masker)!r}"
            )
    if check.expect_json:
        document = _json(body)
        if document is None:
            return False, f"the body is not JSON: {excerpt(body, masker)!r}"
        for path, want in check.expect_json:
            found, value = _dig(document, path)
            if not found:
                return False, f"the JSON answer has no {path!r}"
            if not _same(value, want):
                return False, (
                    f"{path} is {excerpt(json.dumps(value), masker, 60)}, expected "
                    f"{excerpt(json.dumps(want), masker, 60)}"
                )
    return True, f"answered {status}"


def _dig(document: Any, path: str) -> tuple[bool, Any]:
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _same(value: Any, want: Any) -> bool:
    # JSON true is not 1, and 1 is 1.0: compare types the way a reader of the file means
    if isinstance(want, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(want, bool) and value == want
    return bool(value == want)


# -- the smoke file -------------------------------------------------------------------------


def load_smoke(path: Path) -> tuple[SmokeCheck, ...]:
    """The ``[[check]]`` tables of ``path``; :class:`ConfigError` naming what is wrong."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such smoke check file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"check"})
    if extra:
        raise ConfigError(
            f"{path}: unknown table or key {extra[0]!r}",
            hint="a smoke file holds [[check]] tables only",
        )
    tables = data.get("check", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: 'check' must be [[check]] tables")
    checks = [parse_check(table, f"{path} [[check]] #{n}") for n, table in enumerate(tables, 1)]
    names = [check.name for check in checks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: two checks are named {name!r}", hint="name each one")
    return tuple(checks)


def parse_check(table: Mapping[str, Any], where: str) -> SmokeCheck:
    """One ``[[check]]`` table; ``where`` names it in errors."""

    def refuse(key: str, value: Any, allowed: str) -> ConfigError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ConfigError(f"{where}: key {key!r} has value {shown}; it must be {allowed}")

    unknown = sorted(set(table) - _SMOKE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}",
            hint=f"allowed keys are: {', '.join(sorted(_SMOKE_KEYS))}",
        )
    path = table.get("path")
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise refuse("path", path, "a path starting with '/', e.g. \"/api/public/stats\"")
    method = table.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise refuse("method", method, " ".join(sorted(METHODS)))
    method = method.upper()
    headers = table.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and _HEADER_RE.fullmatch(k) and isinstance(v, str)
        and "\n" not in v and "\r" not in v
        for k, v in headers.items()
    ):  # fmt: skip
        raise refuse("headers", headers, "a table of header names to one-line strings")
    body = table.get("body")
    if body is not None and not isinstance(body, str):
        raise refuse("body", body, "a string")
    status = table.get("expect-status")
    if status is not None:
        codes = [status] if not isinstance(status, list) else status
        if not codes or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            raise refuse("expect-status", status, "an HTTP status or a list of them")
        status = tuple(codes)
    expect_body = table.get("expect-body")
    if expect_body is not None and (not isinstance(expect_body, str) or not expect_body):
        raise refuse("expect-body", expect_body, "a non-empty string the body must contain")
    expect_json = table.get("expect-json", {})
    if not isinstance(expect_json, dict) or not all(
        isinstance(k, str) and k and all(k.split(".")) for k in expect_json
    ):
        raise refuse("expect-json", expect_json, "a table of dotted paths to values")
    timeout = table.get("timeout", "10s")
    try:
        seconds = parse_duration(timeout) if isinstance(timeout, str) else -1.0
    except UsageError:
        seconds = -1.0
    if seconds <= 0:
        raise refuse("timeout", timeout, 'a duration such as "5s" or "500ms"')
    name = table.get("name", f"{method} {path}")
    if not isinstance(name, str) or not name.strip() or printable(name) != name:
        raise refuse("name", name, "a non-empty one-line string")
    return SmokeCheck(
        name=name,
        path=path,
        method=method,
        headers=tuple(headers.items()),
        body=body,
        expect_status=status,
        expect_body=expect_body,
        expect_json=tuple(expect_json.items()),
        timeout=seconds,
    )
