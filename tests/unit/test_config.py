"""Configuration files: discovery, every key's validation, and errors naming file and key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.config import (
    MAX_DURATION_SECONDS,
    SCHEMA,
    Config,
    discover,
    load_file,
    parse_duration,
    validate,
)
from tagkeeper.errors import ConfigError, ExitCode, UsageError

if TYPE_CHECKING:
    from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- discovery


def test_no_file_anywhere_is_an_empty_configuration(tmp_path: Path) -> None:
    config = discover(tmp_path)
    # a parent of tmp_path could hold a stray file; what matters is that none here counts
    assert config.source is None or not config.source.is_relative_to(tmp_path)


def test_tagkeeper_toml_wins_over_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    write(tmp_path / "tagkeeper.toml", "keep = 3\n")
    write(tmp_path / "pyproject.toml", "[tool.tagkeeper]\nkeep = 9\n")
    config = discover(tmp_path)
    assert config.source == tmp_path / "tagkeeper.toml"
    assert config.keep == 3


def test_pyproject_section_is_read_with_dashed_keys(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.tagkeeper]\nimage = "ghcr.io/o/app"\n'
        'protect = ["v*", "stable"]\nmin-age = "2d"\n',
    )
    config = discover(tmp_path)
    assert config.source == tmp_path / "pyproject.toml"
    assert config.images() == ["ghcr.io/o/app"]
    assert config.protect == ("v*", "stable")
    assert config.min_age == "2d"
    assert config.keep is None  # an unset key: the caller's default applies


def test_discovery_walks_up_and_the_nearest_file_wins(tmp_path: Path) -> None:
    write(tmp_path / "tagkeeper.toml", "keep = 1\n")
    write(tmp_path / "svc" / "pyproject.toml", "[tool.tagkeeper]\nkeep = 2\n")
    deep = tmp_path / "svc" / "src" / "pkg"
    deep.mkdir(parents=True)
    assert discover(deep).keep == 2
    assert discover(deep).source == tmp_path / "svc" / "pyproject.toml"
    other = tmp_path / "other" / "deeper"
    other.mkdir(parents=True)
    assert discover(other).source == tmp_path / "tagkeeper.toml"


def test_a_pyproject_without_the_section_is_passed_over(tmp_path: Path) -> None:
    write(tmp_path / "tagkeeper.toml", "keep = 4\n")
    write(tmp_path / "app" / "pyproject.toml", '[project]\nname = "app"\n[tool.ruff]\n')
    assert discover(tmp_path / "app").source == tmp_path / "tagkeeper.toml"


def test_a_broken_pyproject_without_our_section_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "tagkeeper.toml", "keep = 4\n")
    write(tmp_path / "app" / "pyproject.toml", "[project\nname = 'app'\n")
    assert discover(tmp_path / "app").keep == 4


@pytest.mark.parametrize(
    "text",
    [
        '[tool.tagkeeper]\nprotect = ["v*"\n',  # unclosed array in our own table
        '[project\n\n[tool.tagkeeper]\nprotect = ["v*"]\n',  # broken elsewhere in the file
        "[tool.tagkeeper.extra]\nx = \n",
        '[ tool . "tagkeeper" ]\nkeep = = 1\n',
        "[tool]\nx = [\ntool.tagkeeper.keep = 1\n",
    ],
)
def test_a_broken_pyproject_with_our_section_is_an_error_naming_it(
    tmp_path: Path, text: str
) -> None:
    write(tmp_path / "tagkeeper.toml", 'protect = ["never-used"]\n')  # must not be used
    path = write(tmp_path / "app" / "pyproject.toml", text)
    with pytest.raises(ConfigError) as info:
        discover(tmp_path / "app")
    assert str(path) in info.value.message
    assert "not valid TOML" in info.value.message


def test_a_pyproject_that_is_not_utf8_but_has_our_section_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b"[tool.tagkeeper]\nprotect = ['caf\xe9']\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        discover(tmp_path)
    assert str(path) in info.value.message


def test_a_broken_tagkeeper_toml_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "tagkeeper.toml", "keep = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        discover(tmp_path)
    assert str(path) in info.value.message


def test_an_explicit_file_is_read_whatever_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "ci" / "prune.toml", "keep = 7\n")
    assert load_file(path) == Config(source=path, keep=7)
    py = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert load_file(py) == Config(source=py)  # a pyproject without the section: no settings
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_file(tmp_path / "ci")


def test_the_section_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", 'tool = { tagkeeper = "yes" }\n')
    with pytest.raises(ConfigError, match=r"\[tool.tagkeeper\] must be a table"):
        load_file(path)


def test_the_cli_config_option_replaces_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "tagkeeper.toml", 'env = "dev"\n')  # discovered: dev rules
    explicit = write(tmp_path / "strict.toml", 'env = "prod"\n')
    assert main(["check", "app:dev-3f2a9c1"]) == ExitCode.OK
    assert main(["--config", str(explicit), "check", "app:dev-3f2a9c1"]) == ExitCode.POLICY
    capsys.readouterr()
    assert main(["--config", str(tmp_path / "nope.toml"), "check", "app:v1.0.0"]) == 9
    assert "nope.toml: no such configuration file" in capsys.readouterr().err


# ---------------------------------------------------------------------------- validation

GOOD: list[tuple[str, Any]] = [
    ("image", "ghcr.io/o/app"),
    ("image", ["ghcr.io/o/app", "registry.example.com:5000/team/app", "app"]),
    ("sha-length", 4),
    ("sha-length", 40),
    ("bare-version", True),
    ("aliases", False),
    ("dev-pointer", "dev-latest"),
    ("dev-pointer", ""),  # no pointer, as --dev-pointer ''
    ("pr-sha", "merge"),
    ("env", "prod"),
    ("env", "eu-west/staging 2"),
    ("allow-prerelease", True),
    ("fail-dirty", True),
    ("keep", 0),
    ("keep-dev", 3),
    ("keep-pr", 1),
    ("keep-release", 10),
    ("keep-prerelease", 2),
    ("keep-deploys", 0),
    ("keep-deploys", 5),
    ("protect", []),
    ("protect", ["v*", "stable"]),
    ("min-age", "0"),
    ("min-age", "36500d"),  # exactly 100 years
    ("older-than", "30d"),
    ("older-than", "0"),
    ("protect-regex", []),
    ("protect-regex", [r"v1\.\d+\.\d+", "stable-.*"]),
    ("untagged", "keep"),
    ("version-scheme", "semver"),
    ("version-scheme", "pep440"),
    ("unmatched", "delete"),
    ("max-delete", 0),
    ("api-url", "https://ghe.example.com/api/v3"),
    ("registry-url", "http://127.0.0.1:5000"),
    ("ledger", "deploys.db"),
    ("pass-env", []),
    ("pass-env", ["PROFILE", "APP_*", "*"]),
    ("deploy", {}),  # tables of environments: tests/unit/test_deploy_spec.py
]


@pytest.mark.parametrize(("key", "value"), GOOD)
def test_valid_values_are_kept_as_given(tmp_path: Path, key: str, value: Any) -> None:
    assert validate({key: value}, tmp_path / "tagkeeper.toml") == {key: value}


def test_every_key_has_a_valid_example() -> None:
    assert {key for key, _ in GOOD} == set(SCHEMA)


# (key, bad value, a phrase of the reason or of what is allowed)
BAD: list[tuple[str, Any, str]] = [
    ("image", "NOT VALID", "not a valid repository path"),
    ("image", "ghcr.io/o/app:v1", "names a tag or digest"),
    ("image", "ghcr.io/o/app@sha256:" + "a" * 64, "names a tag or digest"),
    ("image", [], "the list is empty"),
    ("image", ["ghcr.io/o/app", 3], "an image repository"),
    ("image", 3, "an image repository"),
    ("sha-length", 3, "from 4 to 40"),
    ("sha-length", 41, "from 4 to 40"),
    ("sha-length", "7", "from 4 to 40"),
    ("bare-version", "yes", "true"),
    ("aliases", 1, "true or false"),
    ("dev-pointer", "latest", "'latest' is never produced"),
    ("dev-pointer", "v1.2.3", "looks like a release version"),
    ("dev-pointer", "dev-3f2a9c1", "immutable build tag"),
    ("dev-pointer", "bad tag", "not a valid image tag"),
    ("pr-sha", "tip", "'head' or 'merge'"),
    ("env", "", "the environment name is empty"),
    ("env", "   ", "the environment name is empty"),
    ("env", " prod", "not an environment name"),
    ("env", "prod ", "not an environment name"),
    ("env", "prod\n", "not an environment name"),
    ("env", "-x", "not an environment name"),
    ("env", "x" * 256, "at most 255 characters"),
    ("allow-prerelease", "true", "true or false"),
    ("fail-dirty", "yes", "true or false"),
    ("keep", -1, "non-negative"),
    ("keep", True, "non-negative"),
    ("keep-dev", -2, "non-negative"),
    ("keep-pr", 1.5, "non-negative"),
    ("keep-release", -1, "non-negative"),
    ("keep-prerelease", "3", "non-negative"),
    ("keep-deploys", -1, "non-negative"),
    ("keep-deploys", 2.5, "non-negative"),
    ("protect", "v*", "a list of non-empty glob patterns"),
    ("protect", ["v*", ""], "an empty pattern protects nothing"),
    ("protect", [" "], "an empty pattern protects nothing"),
    ("min-age", "99999999999999999999d", "longer than 100 years"),
    ("min-age", "36501d", "longer than 100 years"),
    ("min-age", "1.5h", "is not a duration"),
    ("min-age", 3600, "a duration such as"),
    ("older-than", "1 month", "is not a duration"),
    ("older-than", "36501d", "longer than 100 years"),
    ("protect-regex", "v.*", "a list of Python regular expressions"),
    ("protect-regex", ["v1.("], "'v1.(' is not a valid regular expression"),
    ("protect-regex", [""], "protects nothing"),
    ("untagged", "remove", "'keep' or 'delete'"),
    ("version-scheme", "calver", "'semver' (SemVer 2.0.0, the default) or 'pep440'"),
    ("unmatched", "", "'keep' or 'delete'"),
    ("max-delete", -1, "non-negative"),
    ("api-url", "api.github.com", "not an http(s) URL"),
    ("api-url", "http://api.example.com", "plain http:// on a non-loopback host"),
    ("registry-url", "ftp://ghcr.io", "not an http(s) URL"),
    ("ledger", "", "an empty path"),
    ("pass-env", "PROFILE", "a list of variable names"),
    ("pass-env", ["PROFILE", "9LIVES"], "'9LIVES' is not a variable name"),
    ("pass-env", ["APP_*_X"], "NAME* prefix"),
    ("deploy", "recreate", "a table of environments"),
]


@pytest.mark.parametrize(("key", "value", "phrase"), BAD)
def test_bad_values_name_the_file_the_key_and_what_is_allowed(
    tmp_path: Path, key: str, value: Any, phrase: str
) -> None:
    path = tmp_path / "pyproject.toml"
    with pytest.raises(ConfigError) as info:
        validate({key: value}, path, "tool.tagkeeper")
    message = info.value.message
    assert message.startswith(f"{path} [tool.tagkeeper]: key {key!r} has value ")
    assert phrase in info.value.diagnostics()
    assert f"it must be {SCHEMA[key][1]}" in message


def test_every_key_has_a_refused_example() -> None:
    assert {key for key, _, _ in BAD} == set(SCHEMA)


def test_unknown_keys_list_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "tagkeeper.toml", "keep = 2\nkeep_dev = 1\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.message == f"{path}: unknown key 'keep_dev'"
    assert info.value.hint is not None
    assert "keep-dev" in info.value.hint


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate({"min-age": "9" * 5000 + "d"}, tmp_path / "t.toml")
    assert len(info.value.diagnostics()) < 500


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("90s", 90.0), ("30m", 1800.0), (" 1h ", 3600.0), ("2d", 172800.0),
     ("1w", 604800.0), ("007m", 420.0), ("0d", 0.0), ("500ms", 0.5), ("0s", 0.0),
     ("2500ms", 2.5)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "1", "1.5h", "-1h", "1y", "\uff11h", "1 h", "1hh", "ms", "1.5ms", "1mms"]
)
def test_non_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="is not a duration"):
        parse_duration(text)


def test_durations_are_bounded_at_100_years() -> None:
    assert MAX_DURATION_SECONDS == 100 * 365 * 24 * 3600
    assert parse_duration("5214w") <= MAX_DURATION_SECONDS
    for text in ("5215w", "3153600001s", "99999999999999999999d", "9" * 5000 + "s"):
        with pytest.raises(UsageError, match="longer than 100 years"):
            parse_duration(text)


# ------------------------------------------------------------- the same rules in the CLI


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ACTIONS", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_a_huge_min_age_flag_is_a_usage_error(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(in_tmp / "tagkeeper.toml", "")
    code = main(["prune", "-i", "ghcr.io/o/app", "--min-age", "99999999999999999999d",
                 "--dry-run"])  # fmt: skip
    assert code == ExitCode.USAGE
    assert "longer than 100 years" in capsys.readouterr().err


def test_a_huge_min_age_in_the_file_is_a_config_error_naming_file_and_key(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(in_tmp / "tagkeeper.toml", 'min-age = "99999999999999999999d"\n')
    assert main(["prune", "-i", "ghcr.io/o/app", "--dry-run"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert f"{path}: key 'min-age'" in err
    assert "longer than 100 years" in err


def test_a_negative_keep_names_the_keep_flag(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(in_tmp / "tagkeeper.toml", "")
    assert main(["prune", "-i", "ghcr.io/o/app", "--keep", "-1", "--dry-run"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "'--keep'" in err
    assert "--keep-dev" not in err


@pytest.mark.parametrize(
    ("text", "key"),
    [('image = "NOT VALID"\n', "image"), ('env = ""\n', "env"),
     ('dev-pointer = "latest"\n', "dev-pointer")],
)  # fmt: skip
def test_bad_values_stop_commands_with_the_config_exit_code(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = write(in_tmp / "tagkeeper.toml", text)
    assert main(["check", "app:v1.0.0"]) == ExitCode.CONFIG
    assert f"{path}: key {key!r}" in capsys.readouterr().err


def test_every_key_has_a_typed_field_and_every_field_a_key() -> None:
    from dataclasses import fields

    from tagkeeper.config import SCHEMA, field_name

    names = {f.name for f in fields(Config)} - {"source"}
    assert {field_name(key) for key in SCHEMA} == names
