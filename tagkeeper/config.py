"""Configuration: defaults for every command from ``tagkeeper.toml`` or ``pyproject.toml``.

The first of these found walking up from the working directory wins:
``tagkeeper.toml`` (top-level keys) or ``pyproject.toml`` with a ``[tool.tagkeeper]``
table. Command-line flags override what it says. Keys use dashes, as flags do.

Every value is checked when the file is loaded, with the rules the flags use, so a bad
value is a :class:`~tagkeeper.errors.ConfigError` naming the file, the key and what is
allowed, before any command acts on it.

A ``pyproject.toml`` that is not valid TOML is skipped during discovery (it may belong to
a tool that is still being edited) unless its text mentions a ``tool.tagkeeper`` table:
then its settings (``protect`` patterns above all) cannot be read, and guessing without
them could delete what they protect, so it is a ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tagkeeper.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from tagkeeper.deploy.spec import DeploySpec

# key -> (expected python type(s), what is allowed, for the error message)
_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_LIST = (list,)

SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "image": (
        (str, list),
        "an image repository without tag or digest (e.g. 'ghcr.io/owner/app'), "
        "or a non-empty list of them",
    ),
    "sha-length": (_INT, "an integer from 4 to 40"),
    "bare-version": (_BOOL, "true (tag 1.2.3) or false (tag v1.2.3)"),
    "aliases": (_BOOL, "true or false (emit floating v1.2 and v1 tags for releases)"),
    "dev-pointer": (
        _STR,
        "a tag name such as 'dev-latest' (opt-in moving dev pointer; not 'latest', "
        "a version or dev-<sha>/pr-<n>), or '' for none",
    ),
    "pr-sha": (_STR, "'head' or 'merge'"),
    "env": (
        _STR,
        "an environment name such as 'dev' or 'prod' (letters, digits, spaces, '.', '_', "
        "'-' and '/', starting with a letter or digit, not ending with a space, at most 255 "
        "characters)",
    ),
    "allow-prerelease": (_BOOL, "true or false"),
    "fail-dirty": (_BOOL, "true or false (tags: a dirty work tree is an error, not a warning)"),
    "keep": (_INT, "a non-negative integer"),
    "keep-dev": (_INT, "a non-negative integer"),
    "keep-pr": (_INT, "a non-negative integer"),
    "keep-release": (_INT, "a non-negative integer"),
    "keep-prerelease": (_INT, "a non-negative integer"),
    "keep-deploys": (
        _INT,
        "a non-negative integer (the last K successful deploys of each env to keep)",
    ),
    "protect": (_LIST, "a list of non-empty glob patterns, e.g. ['v*', 'stable']"),
    "min-age": (_STR, "a duration such as '1h', '30m', '2d' or '0' (at most 100 years)"),
    "older-than": (
        _STR,
        "a duration such as '30d' or '0' (at most 100 years): only older images are deleted",
    ),
    "protect-regex": (
        _LIST,
        "a list of Python regular expressions, each matched against the whole tag, "
        "e.g. ['v1\\.\\d+\\.\\d+', 'stable-.*']",
    ),
    "untagged": (_STR, "'keep' or 'delete'"),
    "version-scheme": (
        _STR,
        "'semver' (SemVer 2.0.0, the default) or 'pep440' (PEP 440 release tags, "
        "ordered by packaging.version)",
    ),
    "unmatched": (_STR, "'keep' or 'delete' (tags that match no channel)"),
    "max-delete": (_INT, "a non-negative integer"),
    "api-url": (_STR, "an https:// URL (http:// only for localhost)"),
    "registry-url": (_STR, "an https:// URL (http:// only for localhost)"),
    "ledger": (_STR, "a path to the deploy ledger database"),
    "pass-env": (
        _LIST,
        "a list of variable names or NAME* prefixes a deploy command gets, e.g. "
        "['PROFILE', 'APP_*']",
    ),
    "deploy": (
        (dict,),
        "a table of environments, each a table of deploy settings ([deploy.prod])",
    ),
}

_CHOICES = {
    "pr-sha": ("head", "merge"),
    "untagged": ("keep", "delete"),
    "version-scheme": ("semver", "pep440"),
    "unmatched": ("keep", "delete"),
}

# A tool.tagkeeper table in a file that is not valid TOML: [tool.tagkeeper], a
# [tool.tagkeeper.x] sub-table, or a dotted key tool.tagkeeper... = ...
_SECTION_TEXT_RE = re.compile(
    r"""^[ \t]*(?:\[[ \t]*tool[ \t]*\.[ \t]*["']?tagkeeper["']?[ \t]*[\].]"""
    r"""|tool[ \t]*\.[ \t]*["']?tagkeeper["']?[ \t]*[.=])""",
    re.MULTILINE,
)

T = TypeVar("T")

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION_SECONDS = 100 * 365 * 86400  # 100 years: beyond that is a typo


@dataclass(frozen=True)
class Config:
    """Validated settings, typed, and the file they came from (``None``: no file found).

    A key the file does not set is ``None`` (``image`` and ``deploy``: empty), so a
    command tells "not configured" from a configured value and falls back on its own
    default; :func:`pick` does that for a flag.
    """

    source: Path | None = None
    image: tuple[str, ...] = ()
    sha_length: int | None = None
    bare_version: bool | None = None
    aliases: bool | None = None
    dev_pointer: str | None = None
    pr_sha: Literal["head", "merge"] | None = None
    env: str | None = None
    allow_prerelease: bool | None = None
    fail_dirty: bool | None = None
    keep: int | None = None
    keep_dev: int | None = None
    keep_pr: int | None = None
    keep_release: int | None = None
    keep_prerelease: int | None = None
    keep_deploys: int | None = None
    protect: tuple[str, ...] | None = None
    min_age: str | None = None
    older_than: str | None = None
    protect_regex: tuple[str, ...] | None = None
    untagged: Literal["keep", "delete"] | None = None
    unmatched: Literal["keep", "delete"] | None = None
    version_scheme: Literal["semver", "pep440"] | None = None
    max_delete: int | None = None
    api_url: str | None = None
    registry_url: str | None = None
    ledger: str | None = None
    pass_env: tuple[str, ...] | None = None
    deploy: Mapping[str, DeploySpec] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], source: Path | None = None) -> Config:
        """A Config from ``values`` already checked by :func:`validate` (keys with dashes)."""
        given: dict[str, Any] = {}
        for key, value in values.items():
            if key not in SCHEMA or field_name(key) not in _FIELDS:
                # validate() refuses unknown keys first: this is a key of SCHEMA that
                # has no typed field yet (add one to Config)
                raise KeyError(key)
            typed = value
            if key == "image" and isinstance(value, str):
                typed = (value,)
            elif isinstance(value, list):
                typed = tuple(value)
            given[field_name(key)] = typed
        return cls(source=source, **given)

    def deploy_spec(self, environment: str) -> DeploySpec | None:
        """The ``[deploy.ENVIRONMENT]`` service description, ``None`` when there is none."""
        return self.deploy.get(environment)

    def images(self) -> list[str]:
        return list(self.image)


def field_name(key: str) -> str:
    """The :class:`Config` field of a configuration key (``min-age`` -> ``min_age``)."""
    return key.replace("-", "_")


_FIELDS = frozenset(f.name for f in fields(Config))


def pick(flag: T | None, configured: T | None, default: T) -> T:
    """A flag's value when given, else the configuration's, else ``default``."""
    if flag is not None:
        return flag
    return configured if configured is not None else default


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``500ms``, ``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or ``0``.

    At most 100 years (:data:`MAX_DURATION_SECONDS`); anything longer is a
    :class:`UsageError`, as is anything that is not a whole number and a unit.
    """
    text = text.strip()
    if text == "0":
        return 0.0
    millis = text.endswith("ms")
    number, unit = (text[:-2], "s") if millis else (text[:-1], text[-1:])
    shown = text if len(text) <= 40 else text[:37] + "..."
    if unit not in DURATION_UNITS or not number.isascii() or not number.isdigit():
        raise UsageError(
            f"{shown!r} is not a duration",
            hint="use a whole number and a unit: 500ms, 90s, 30m, 1h, 2d, 1w (or 0)",
        )
    digits = number.lstrip("0") or "0"
    scale = DURATION_UNITS[unit] / (1000 if millis else 1)
    # compare lengths first: int() of thousands of digits is refused (and slow)
    if len(digits) > 15 or int(digits) * scale > MAX_DURATION_SECONDS:
        raise UsageError(
            f"duration {shown!r} is longer than 100 years",
            hint="use a duration such as 1h, 2d or 4w (at most 100 years)",
        )
    return int(digits) * DURATION_UNITS[unit] / (1000 if millis else 1)


# -- value checks: each raises UsageError saying why a (well-typed) value is refused --


def _check_image(value: str | list[str]) -> None:
    from tagkeeper.refs import parse_reference

    images = [value] if isinstance(value, str) else value
    if not images:
        raise UsageError("the list is empty")
    for image in images:
        ref = parse_reference(image)
        if ref.tag is not None or ref.digest is not None:
            raise UsageError(
                f"{image!r} names a tag or digest",
                hint=f"configure the repository only: {ref.repository}",
            )


def _check_env(value: str) -> None:
    # the one grammar every command applies (lazy: the rules load only when a file sets env)
    from tagkeeper.gate.rules import validate_env_name

    validate_env_name(value)


def _check_dev_pointer(value: str) -> None:
    if value == "":
        return  # no pointer, as --dev-pointer ''
    from tagkeeper.tags.compute import check_dev_pointer  # lazy: tagging is a bigger module

    check_dev_pointer(value)


def _check_protect(value: list[str]) -> None:
    for pattern in value:
        if not pattern.strip():
            raise UsageError("an empty pattern protects nothing", hint="remove it")


def _check_protect_regex(value: list[str]) -> None:
    from tagkeeper.retention.policy import check_protect_regex  # lazy: only files that set it

    for pattern in value:
        try:
            check_protect_regex(pattern)
        except UsageError as exc:
            # the flag's words, without the flag: this is the file's key
            raise UsageError(
                exc.message.replace("--protect-regex ", "", 1), hint=exc.hint
            ) from None


def _check_url(key: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        # lazy: only files that set a URL pay for importing the HTTP stack here
        from tagkeeper.transport import check_base_url

        check_base_url(value, what=key)

    return check


def _check_ledger(value: str) -> None:
    if not value.strip():
        raise UsageError("an empty path")


def _check_pass_env(value: list[str]) -> None:
    from tagkeeper.deploy.passenv import parse_patterns  # lazy: only files that set it

    parse_patterns(value, what="pass-env")


_CHECKS: dict[str, Callable[[Any], object]] = {
    "image": _check_image,
    "env": _check_env,
    "dev-pointer": _check_dev_pointer,
    "protect": _check_protect,
    "min-age": parse_duration,
    "older-than": parse_duration,
    "protect-regex": _check_protect_regex,
    "api-url": _check_url("api-url"),
    "registry-url": _check_url("registry-url"),
    "ledger": _check_ledger,
    "pass-env": _check_pass_env,
}


def _well_typed(key: str, value: Any) -> bool:
    types, _ = SCHEMA[key]
    ok = isinstance(value, types) and not (bool in types) ^ isinstance(value, bool)
    if ok and isinstance(value, list):
        ok = all(isinstance(item, str) for item in value)
    if ok and isinstance(value, int) and not isinstance(value, bool):
        low, high = (4, 40) if key == "sha-length" else (0, None)
        ok = value >= low and (high is None or value <= high)
    if ok and key in _CHOICES:
        ok = value in _CHOICES[key]
    return ok


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate(data: Mapping[str, Any], source: Path, table: str = "") -> dict[str, Any]:
    """``data`` checked key by key; :class:`ConfigError` naming file and key if not."""
    where = f"{source}" + (f" [{table}]" if table else "")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SCHEMA:
            known = ", ".join(sorted(SCHEMA))
            raise ConfigError(
                f"{where}: unknown key {key!r}",
                hint=f"allowed keys are: {known}",
            )
        allowed = SCHEMA[key][1]
        if key == "deploy" and isinstance(value, dict):
            # lazy: only files that describe a deploy pay for the deploy spec's module
            from tagkeeper.deploy.spec_toml import from_tables

            prefix = f"{table}.deploy" if table else "deploy"
            out[key] = from_tables(value, source=source, prefix=prefix)
            continue
        if not _well_typed(key, value):
            raise ConfigError(
                f"{where}: key {key!r} has value {_shown(value)}; it must be {allowed}"
            )
        check = _CHECKS.get(key)
        if check is not None:
            try:
                check(value)
            except UsageError as exc:
                raise ConfigError(
                    f"{where}: key {key!r} has value {_shown(value)} ({exc.message}); "
                    f"it must be {allowed}",
                    hint=exc.hint,
                ) from None
        out[key] = value
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    import tomllib  # only when there is a file to read: keeps the CLI's start-up short

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text", hint="save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc})", hint="fix the syntax at the line shown"
        ) from None


def _from_data(path: Path, data: dict[str, Any]) -> Config:
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        section = tool.get("tagkeeper", {}) if isinstance(tool, dict) else {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [tool.tagkeeper] must be a table")
        return Config.from_values(validate(section, path, "tool.tagkeeper"), path)
    return Config.from_values(validate(data, path), path)


def load_file(path: Path) -> Config:
    """Load one configuration file (``tagkeeper.toml`` or ``pyproject.toml``)."""
    return _from_data(path, _parse(path, _read(path)))


def discover(start: Path) -> Config:
    """Find and load the configuration that applies in ``start`` (or an empty one)."""
    for folder in (start, *start.parents):
        candidate = folder / "tagkeeper.toml"
        if candidate.is_file():
            return load_file(candidate)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            found = _pyproject_config(pyproject)
            if found is not None:
                return found
    return Config()


def _pyproject_config(path: Path) -> Config | None:
    """The ``[tool.tagkeeper]`` settings of ``path``; ``None`` when it has none.

    A file that cannot be read or parsed is skipped, unless its text shows a
    ``tool.tagkeeper`` table: that is a :class:`ConfigError` (see the module docs).
    """
    import tomllib

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        if _SECTION_TEXT_RE.search(raw.decode("utf-8", errors="replace")):
            _parse(path, raw)  # raises the ConfigError that says what is wrong
        return None
    tool = data.get("tool")
    if not (isinstance(tool, dict) and "tagkeeper" in tool):
        return None
    return _from_data(path, data)
