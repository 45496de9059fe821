"""Configuration: defaults for every command from ``tagkeeper.toml`` or ``pyproject.toml``.

The first of these found walking up from the working directory wins:
``tagkeeper.toml`` (top-level keys) or ``pyproject.toml`` with a ``[tool.tagkeeper]``
table. Command-line flags override what it says. Keys use dashes, as flags do.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagkeeper.errors import ConfigError, UsageError

# key -> (expected python type(s), what is allowed, for the error message)
_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_LIST = (list,)

SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "image": ((str, list), "an image repository or a list of them"),
    "sha-length": (_INT, "an integer from 4 to 40"),
    "bare-version": (_BOOL, "true (tag 1.2.3) or false (tag v1.2.3)"),
    "aliases": (_BOOL, "true or false (emit floating v1.2 and v1 tags for releases)"),
    "dev-pointer": (_STR, "a tag name such as 'dev-latest' (opt-in moving dev pointer)"),
    "pr-sha": (_STR, "'head' or 'merge'"),
    "env": (_STR, "an environment name such as 'dev' or 'prod'"),
    "allow-prerelease": (_BOOL, "true or false"),
    "keep": (_INT, "a non-negative integer"),
    "keep-dev": (_INT, "a non-negative integer"),
    "keep-pr": (_INT, "a non-negative integer"),
    "keep-release": (_INT, "a non-negative integer"),
    "keep-prerelease": (_INT, "a non-negative integer"),
    "protect": (_LIST, "a list of glob patterns"),
    "min-age": (_STR, "a duration such as '1h', '30m', '2d' or '0'"),
    "untagged": (_STR, "'keep' or 'delete'"),
    "unmatched": (_STR, "'keep' or 'delete' (tags that match no channel)"),
    "max-delete": (_INT, "a non-negative integer"),
    "api-url": (_STR, "a URL"),
    "registry-url": (_STR, "a URL"),
    "ledger": (_STR, "a path to the deploy ledger database"),
}

_CHOICES = {"pr-sha": ("head", "merge"), "untagged": ("keep", "delete"),
            "unmatched": ("keep", "delete")}


@dataclass(frozen=True)
class Config:
    """Validated settings and the file they came from (``None``: no file found)."""

    values: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def get(self, key: str, default: Any = None) -> Any:
        if key not in SCHEMA:
            raise KeyError(key)  # a typo in the code, not in the user's file
        return self.values.get(key, default)

    def images(self) -> list[str]:
        image = self.values.get("image")
        if image is None:
            return []
        return [image] if isinstance(image, str) else list(image)


def _validate(data: Mapping[str, Any], source: Path, table: str) -> dict[str, Any]:
    where = f"{source}" + (f" [{table}]" if table else "")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SCHEMA:
            known = ", ".join(sorted(SCHEMA))
            raise ConfigError(
                f"{where}: unknown key {key!r}",
                hint=f"allowed keys are: {known}",
            )
        types, allowed = SCHEMA[key]
        ok = isinstance(value, types) and not (bool in types) ^ isinstance(value, bool)
        if ok and isinstance(value, list):
            ok = all(isinstance(item, str) for item in value)
        if ok and isinstance(value, int) and not isinstance(value, bool):
            low, high = (4, 40) if key == "sha-length" else (0, None)
            ok = value >= low and (high is None or value <= high)
        if ok and key in _CHOICES:
            ok = value in _CHOICES[key]
        if ok and key == "min-age":
            ok = _is_duration(value)
        if not ok:
            raise ConfigError(f"{where}: key {key!r} has value {value!r}; it must be {allowed}")
        out[key] = value
    return out


def load_file(path: Path) -> Config:
    """Load one configuration file (``tagkeeper.toml`` or ``pyproject.toml``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        section = tool.get("tagkeeper", {}) if isinstance(tool, dict) else {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [tool.tagkeeper] must be a table")
        return Config(_validate(section, path, "tool.tagkeeper"), path)
    return Config(_validate(data, path, ""), path)


def discover(start: Path) -> Config:
    """Find and load the configuration that applies in ``start`` (or an empty one)."""
    for folder in (start, *start.parents):
        candidate = folder / "tagkeeper.toml"
        if candidate.is_file():
            return load_file(candidate)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _has_section(pyproject):
            return load_file(pyproject)
    return Config()


def _has_section(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and "tagkeeper" in tool


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except UsageError:
        return False
    return True


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or ``0``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    if text == "0":
        return 0.0
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isascii() or not number.isdigit():
        raise UsageError(
            f"{text!r} is not a duration",
            hint="use a whole number and a unit: 90s, 30m, 1h, 2d, 1w (or 0)",
        )
    return float(int(number) * units[unit])
