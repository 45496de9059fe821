"""Shared pieces of the CLI: state, option types, output helpers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from tagkeeper.config import Config, discover, load_file
from tagkeeper.config import pick as pick  # noqa: PLC0414
from tagkeeper.untrusted import json_text, printable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tagkeeper.versioning import Scheme


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Read defaults from this file instead of the nearest tagkeeper.toml or "
        "pyproject.toml [tool.tagkeeper].",
        dir_okay=False,
    ),
]
FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Output format: text, json, or github.")
]


@dataclass
class State:
    """Per-invocation state, loaded lazily."""

    config_path: Path | None = None
    debug: bool = False  # --debug or $TAGKEEPER_DEBUG: errors show their cause chain
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            self._config = (
                load_file(self.config_path) if self.config_path else discover(Path.cwd())
            )
        return self._config


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # called without the root callback (library tests)
        obj = State()
        ctx.find_root().obj = obj
    return obj


# Every line the CLI prints goes through one of these: text from outside (tags, error
# bodies, history, files of the checkout) is neutralised where it is put into a message
# (tagkeeper.untrusted.neutralise), and these apply untrusted.printable on top, so
# nothing printed can drive a terminal or be read as a GitHub workflow command.


def error(message: str) -> None:
    """Print a message for people on stderr."""
    typer.echo(printable(f"tagkeeper: {message}"), err=True)


def info(message: str) -> None:
    """Print a line (or lines) for people on stderr."""
    typer.echo(printable(message), err=True)


def out(text: str, *, nl: bool = True) -> None:
    """Print text output on stdout."""
    typer.echo(printable(text), nl=nl)


def emit_json(payload: Any) -> None:
    """Print the machine payload on stdout."""
    import json

    text = json.dumps(payload, indent=2, sort_keys=False)
    sys.stdout.write(json_text(text) + "\n")


def url_setting(
    ctx: typer.Context,
    key: Literal["api-url", "registry-url"],
    flag: str | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """``--api-url``/``--registry-url`` when given, else the configuration's, which inside
    GitHub Actions may only name the run's own GitHub (see :mod:`tagkeeper.destinations`)."""
    from tagkeeper.destinations import configured_url

    env = os.environ if environ is None else environ
    return configured_url(key, flag, state(ctx).config(), env)


VersionSchemeOpt = Annotated[
    str | None,
    typer.Option(
        "--version-scheme",
        metavar="semver|pep440",
        help="What a release tag is and how releases are ordered: semver (SemVer 2.0.0) "
        "or pep440 (PEP 440: v1.2.3rc1, v1.2.3.post1); default: config 'version-scheme', "
        "else semver.",
        show_default=False,
    ),
]


def version_scheme(flag: str | None, config: Config) -> Scheme:
    """The version scheme a command uses: the flag, else the configuration, else SemVer."""
    from tagkeeper.versioning import check_scheme

    return check_scheme(flag if flag is not None else (config.version_scheme or "semver"))


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        show_default=False,
        help="GitHub token (default: $GITHUB_TOKEN, then $GH_TOKEN). Prefer the "
        "environment: flags show in process lists.",
    ),
]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        show_default=False,
        help="GitHub API URL (default: config 'api-url', $GITHUB_API_URL, else "
        "https://api.github.com).",
    ),
]
RegistryUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--registry-url",
        metavar="URL",
        show_default=False,
        help="Registry base (default: config 'registry-url', else https://ghcr.io).",
    ),
]
