"""``--debug`` and ``TAGKEEPER_DEBUG=1``: an error's cause chain, with every token masked.

The failure is staged where the library opens GitHub Deployments: an error whose hidden
cause (raised ``from None``) quotes the token, as an HTTP library quoting a header would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.cli.debug import chain, mask, wanted
from tagkeeper.errors import ExitCode, RegistryError
from tagkeeper.rollback import github as github_module
from tagkeeper.secret import Secret

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "ghp_debugChainToken0123456789abcdef"
OTHER = "registry-password-Zq81"  # not token-shaped: only known as a Secret


def send(token: Secret) -> None:
    raise OSError(f"connect failed while sending 'Authorization: token {token.reveal()}'")


def retry(token: Secret) -> None:
    try:
        send(token)
    except OSError as low:
        raise ValueError(f"retry gave up ({OTHER} rejected)") from low


def broken_connect(repository: str, token: Secret, **_kw: Any) -> Any:
    Secret(OTHER)  # a credential learnt during the run
    try:
        retry(token)
    except ValueError:
        raise RegistryError("GitHub could not be reached", hint="check --api-url") from None


@pytest.fixture
def staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_ACTIONS", "TAGKEEPER_DEBUG", "RUNNER_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(github_module, "connect", broken_connect)


ARGS = ["previous", "--image", "ghcr.io/acme/app", "--source", "github", "--repo", "acme/app",
        "--token", TOKEN]  # fmt: skip


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_debug_shows_the_cause_chain_with_tokens_masked(
    staged: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    if how == "variable":
        monkeypatch.setenv("TAGKEEPER_DEBUG", "1")
    code = main(["--debug", *ARGS] if how == "flag" else ARGS)
    err = capsys.readouterr().err
    assert code == ExitCode.REGISTRY
    assert "GitHub could not be reached" in err
    assert "debug: the cause chain" in err
    assert "caused by ValueError: retry gave up (*** rejected)" in err
    assert "caused by OSError: connect failed while sending 'Authorization: token ***'" in err
    assert "in send" in err  # where it was raised
    assert TOKEN not in err
    assert OTHER not in err


def test_without_debug_only_the_message_and_hint(
    staged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(ARGS) == ExitCode.REGISTRY
    err = capsys.readouterr().err
    assert err == "tagkeeper: GitHub could not be reached\n  hint: check --api-url\n"


def test_debug_is_a_root_option_only() -> None:
    assert wanted(["--debug", "prune"], {})
    assert wanted(["--config=x.toml", "--debug", "prune"], {})
    assert not wanted(["prune", "--debug"], {})  # a command's argument, not the root's
    assert wanted(["prune"], {"TAGKEEPER_DEBUG": "1"})
    assert not wanted(["prune"], {"TAGKEEPER_DEBUG": "0"})
    assert wanted(["prune"], {"RUNNER_DEBUG": "1"})  # an Actions re-run with debug logging


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "header was 'Basic dGFnOmdocF9zZWNyZXQ='",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "ghs_0123456789abcdefghijABCDEFGHIJ",
    ],
)
def test_token_shapes_are_masked_even_when_unknown(text: str) -> None:
    shown = mask(text, {})
    assert "***" in shown
    secret_part = text.rsplit(maxsplit=1)[-1].strip("'")
    assert secret_part not in shown


def test_the_chain_follows_suppressed_context_and_stops_on_cycles() -> None:
    first = ValueError("one")
    second = KeyError("two")
    second.__context__ = first
    first.__context__ = second  # a cycle
    assert chain(second) == [second, first]
